package cluster

import (
	"encoding/json"
	"errors"
	"time"
)

// TaskState is where a task is in its lifecycle.
type TaskState string

const (
	// StateQueued: submitted (or retried from the DLQ) and waiting for a worker.
	// Leaves by a claim (running) or cancel.
	StateQueued TaskState = "queued"
	// StateRunning: a worker holds a lease. Leaves by complete (succeeded), a
	// failed attempt or lease expiry (retry_pending or dead_letter), or cancel.
	StateRunning TaskState = "running"
	// StateRetryPending: an attempt failed transiently; runnable again at
	// NextAt. Leaves like queued.
	StateRetryPending TaskState = "retry_pending"
	// StateSucceeded: final. Output and staged writes are visible.
	StateSucceeded TaskState = "succeeded"
	// StateDeadLetter: attempts exhausted, or a permanent, policy or in-doubt
	// failure. Leaves by DLQ retry (queued) or discard.
	StateDeadLetter TaskState = "dead_letter"
	// StateDiscarded: final; a person discarded it from the DLQ, with a reason.
	StateDiscarded TaskState = "discarded"
	// StateCancelled: final; cancelled before it finished.
	StateCancelled TaskState = "cancelled"
	// StateWaiting: an attempt suspended on a durable wait (Task.Wait): the
	// lease was released and no attempt was used up. Leaves by WakeTask
	// (the wake time or a signal's timeout came, decided by the leader),
	// by SendSignal naming the awaited signal (queued), or cancel.
	StateWaiting TaskState = "waiting"
)

// Final reports whether no transition leaves s.
func (s TaskState) Final() bool {
	return s == StateSucceeded || s == StateDiscarded || s == StateCancelled
}

// TaskStates lists every TaskState in lifecycle order. It is the one list
// the API's filters, the metrics and the CLI check against.
func TaskStates() []TaskState {
	return []TaskState{StateQueued, StateRunning, StateWaiting, StateRetryPending, StateSucceeded, StateDeadLetter, StateDiscarded, StateCancelled}
}

// ErrorClass classifies a failed attempt and decides what happens next.
type ErrorClass string

const (
	ClassTransient ErrorClass = "transient"          // retry with backoff
	ClassPermanent ErrorClass = "permanent"          // DLQ now
	ClassPolicy    ErrorClass = "policy"             // denied by the manifest: DLQ now
	ClassBudget    ErrorClass = "budget"             // a budget ran out: DLQ now; retry with more
	ClassInDoubt   ErrorClass = "in_doubt"           // DLQ now, a person resolves
	ClassExpired   ErrorClass = "lease_expired"      // the lease ran out: retry with backoff
	ClassExhausted ErrorClass = "attempts_exhausted" // a retryable failure with no attempts left: DLQ
)

// ErrorClasses lists every ErrorClass.
func ErrorClasses() []ErrorClass {
	return []ErrorClass{ClassTransient, ClassPermanent, ClassPolicy, ClassBudget, ClassInDoubt, ClassExpired, ClassExhausted}
}

// DeadLetter reports whether a dead-lettered task can carry class c: the
// retryable classes (transient, lease_expired) reach the DLQ only as
// attempts_exhausted.
func (c ErrorClass) DeadLetter() bool {
	return c != ClassTransient && c != ClassExpired
}

// Sentinel errors callers branch on.
var (
	ErrNotFound      = errors.New("not found")
	ErrStaleToken    = errors.New("stale fencing token")
	ErrInvalidState  = errors.New("invalid state for this operation")
	ErrNotLeader     = errors.New("not the leader")
	ErrUnknownAgent  = errors.New("unknown agent")
	ErrInvalidCmd    = errors.New("invalid command")
	ErrAlreadyExists = errors.New("already exists")
)

// RetryPolicy is capped exponential backoff with full jitter.
type RetryPolicy struct {
	MaxAttempts int           `json:"max_attempts"`
	Base        time.Duration `json:"base"`
	Factor      int           `json:"factor"`
	Cap         time.Duration `json:"cap"`
}

// DefaultRetryPolicy: base 1 s, factor 2, cap 5 min, 8 attempts.
func DefaultRetryPolicy() RetryPolicy {
	return RetryPolicy{MaxAttempts: 8, Base: time.Second, Factor: 2, Cap: 5 * time.Minute}
}

// Lease is a worker's time-bounded, fenced hold on a running task.
type Lease struct {
	TaskID    string        `json:"task_id"`
	Token     uint64        `json:"token"` // the Raft index of the grant
	Node      string        `json:"node"`
	Attempt   int           `json:"attempt"`
	GrantedAt int64         `json:"granted_at"` // unix nanos, from the proposer
	ExpiresAt int64         `json:"expires_at"`
	TTL       time.Duration `json:"ttl"`
}

// TaskError is the last failure of a task.
type TaskError struct {
	Class      ErrorClass `json:"class"`
	Message    string     `json:"message"`
	StderrTail string     `json:"stderr_tail,omitempty"`
}

// AttemptRecord is one attempt in a task's history.
type AttemptRecord struct {
	N         int    `json:"n"`
	Node      string `json:"node"`
	Token     uint64 `json:"token"`
	StartedAt int64  `json:"started_at"`
	EndedAt   int64  `json:"ended_at,omitempty"`
	Outcome   string `json:"outcome,omitempty"` // how it ended: succeeded, cancelled, waiting (it suspended), or the ErrorClass of its failure
	Error     string `json:"error,omitempty"`
	Delay     int64  `json:"retry_delay,omitempty"` // backoff chosen after it, nanos
}

// Task is the replicated record of one submitted unit of work.
type Task struct {
	ID             string          `json:"id"`
	Agent          string          `json:"agent"`
	Version        string          `json:"version"`
	Input          json.RawMessage `json:"input"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	State          TaskState       `json:"state"`
	Policy         RetryPolicy     `json:"policy"`
	Attempts       int             `json:"attempts"` // attempts started since the last (re)queue
	NextAt         int64           `json:"next_at,omitempty"`
	Lease          *Lease          `json:"lease,omitempty"`
	Output         json.RawMessage `json:"output,omitempty"`
	Error          *TaskError      `json:"error,omitempty"`
	History        []AttemptRecord `json:"history,omitempty"`
	DiscardReason  string          `json:"discard_reason,omitempty"`
	Seq            uint64          `json:"seq"` // Raft index of the submit: FIFO order
	CreatedAt      int64           `json:"created_at"`
	UpdatedAt      int64           `json:"updated_at"`
	LastToken      uint64          `json:"last_token,omitempty"` // highest fencing token granted
	// Budget is the manifest's budget with the submitter's (and later a
	// DLQ retry's) overrides and the defaults applied: what the executor
	// enforces.
	Budget Budget `json:"budget"`
	// Tools pins, for each declared tool the agent's manifest names, the
	// version the task uses: the newest when it was submitted.
	Tools map[string]uint64 `json:"tools,omitempty"`
	// Wait is what a waiting task waits for; nil in every other state.
	Wait *Wait `json:"wait,omitempty"`
}

// AgentManifest is what an agent may do and how it runs.
type AgentManifest struct {
	Tools []string `json:"tools"`
	// Approve lists tools of Tools whose every call waits for a person to
	// approve that call (approval.go) before it is invoked.
	Approve     []string      `json:"approve,omitempty"`
	MemoryLimit uint64        `json:"memory_limit,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	MaxAttempts int           `json:"max_attempts,omitempty"`
	Budget      Budget        `json:"budget,omitempty"`
}

// Agent is one registered version of an agent module.
type Agent struct {
	Name      string        `json:"name"`
	Version   string        `json:"version"`
	Digest    string        `json:"digest"` // hex sha256 of the module
	Size      int           `json:"size"`
	Manifest  AgentManifest `json:"manifest"`
	CreatedAt int64         `json:"created_at"`
}

// LedgerRecord is the ledger's entry for one tool call: INTENT, then RESULT.
type LedgerRecord struct {
	TaskID    string          `json:"task_id"`
	CallID    string          `json:"call_id"`
	Tool      string          `json:"tool"`
	Attempt   int             `json:"attempt"`
	Token     uint64          `json:"token"`
	IntentAt  int64           `json:"intent_at"`
	HasResult bool            `json:"has_result"`
	Status    string          `json:"status,omitempty"` // abi status name of the result
	Result    json.RawMessage `json:"result,omitempty"`
	Usage     json.RawMessage `json:"usage,omitempty"`
	ResultAt  int64           `json:"result_at,omitempty"`
	Seq       uint64          `json:"seq"` // Raft index of the intent: call order
	// NotApplied: the INTENT stands, but the call is known not to have
	// taken effect (ClearIntent, or ResolveCall by a person), so the next
	// attempt invokes it again whatever the tool's semantics.
	NotApplied bool `json:"not_applied,omitempty"`
}

// InDoubt reports whether the record is an INTENT whose call may have
// taken effect: no RESULT, and not known to be not applied.
func (r LedgerRecord) InDoubt() bool { return !r.HasResult && !r.NotApplied }

// Event is one line of a task's journal (its audit trail).
type Event struct {
	Seq     uint64          `json:"seq"` // Raft index, plus position for batched events
	At      int64           `json:"at"`
	Type    EventType       `json:"type"`
	Attempt int             `json:"attempt,omitempty"`
	CallID  string          `json:"call_id,omitempty"`
	Tool    string          `json:"tool,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
	Message string          `json:"message,omitempty"`
}

// Effect is an outbox entry: a tool call made only after its task succeeded.
type Effect struct {
	TaskID string          `json:"task_id"`
	N      int             `json:"n"`
	Tool   string          `json:"tool"`
	Params json.RawMessage `json:"params"`
	Key    string          `json:"key"` // idempotency key for the dispatch
	Done   bool            `json:"done"`
	Error  string          `json:"error,omitempty"` // a permanent failure that ended the dispatch
}

// KVWrite is one staged write of the kv tool, applied at completion.
type KVWrite struct {
	Key    string          `json:"key"`
	Value  json.RawMessage `json:"value,omitempty"`
	Delete bool            `json:"delete,omitempty"`
}

// Member is what the cluster knows of a node beyond Raft's configuration.
type Member struct {
	ID       string `json:"id"`
	APIAddr  string `json:"api_addr"`
	RaftAddr string `json:"raft_addr"`
	// Removed is set when the member is removed: it may not rejoin with
	// the data it has, and a node that finds itself removed stops.
	Removed bool `json:"removed,omitempty"`
}
