package api

import (
	"encoding/json"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/sandbox"
)

// The JSON shapes of the API. Times are RFC 3339 with nanoseconds, in UTC,
// or null when unset; durations are Go duration strings ("1.5s").

// AgentView is one registered agent version. memory_limit, timeout and
// max_attempts are the values in effect: defaults are filled in.
type AgentView struct {
	Name        string     `json:"name"`
	Version     string     `json:"version"`
	Digest      string     `json:"digest"`
	Size        int        `json:"size"`
	Tools       []string   `json:"tools"`
	Approve     []string   `json:"approve"` // tools whose calls need a person's approval
	MemoryLimit uint64     `json:"memory_limit"`
	Timeout     string     `json:"timeout"`
	MaxAttempts int        `json:"max_attempts"`
	Budget      BudgetView `json:"budget"`
	CreatedAt   *string    `json:"created_at"`
	// Warnings: only in a push's answer, what about the module will cost
	// every attempt (a reactor that cannot be pre-initialized).
	Warnings []string `json:"warnings,omitempty"`
}

// AgentDetail is GET /v1/agents/{name}.
type AgentDetail struct {
	Agent    AgentView   `json:"agent"`
	Versions []AgentView `json:"versions"`
}

// ErrorView is a task's last failure.
type ErrorView struct {
	Class      cluster.ErrorClass `json:"class"`
	Message    string             `json:"message"`
	StderrTail string             `json:"stderr_tail"`
}

// AttemptView is one attempt in a task's history.
type AttemptView struct {
	N          int     `json:"n"`
	Node       string  `json:"node"`
	Token      uint64  `json:"token"`
	StartedAt  *string `json:"started_at"`
	EndedAt    *string `json:"ended_at"`
	Outcome    string  `json:"outcome"`
	Error      string  `json:"error"`
	RetryDelay *string `json:"retry_delay"` // null when no retry was scheduled after it
}

// LeaseView is a live lease.
type LeaseView struct {
	TaskID    string  `json:"task_id"`
	Token     uint64  `json:"token"`
	Node      string  `json:"node"`
	Attempt   int     `json:"attempt"`
	GrantedAt *string `json:"granted_at"`
	ExpiresAt *string `json:"expires_at"`
	TTL       string  `json:"ttl"`
}

// TaskView is a task.
type TaskView struct {
	ID             string            `json:"id"`
	Agent          string            `json:"agent"`
	Version        string            `json:"version"`
	State          cluster.TaskState `json:"state"`
	Attempts       int               `json:"attempts"`
	MaxAttempts    int               `json:"max_attempts"`
	Input          json.RawMessage   `json:"input"`
	Output         json.RawMessage   `json:"output"`
	Error          *ErrorView        `json:"error"`
	History        []AttemptView     `json:"history"`
	Lease          *LeaseView        `json:"lease"`
	NextAt         *string           `json:"next_at"`
	CreatedAt      *string           `json:"created_at"`
	UpdatedAt      *string           `json:"updated_at"`
	IdempotencyKey string            `json:"idempotency_key"`
	DiscardReason  string            `json:"discard_reason"`
	// Existing is true when a submission's idempotency key matched this
	// earlier task; false everywhere else.
	Existing bool `json:"existing"`
	// Budget is what the task may spend (0 or "" for no limit).
	Budget BudgetView `json:"budget"`
	// Spent is what the task has spent, from its ledger; only GET
	// /v1/tasks/{id} and the DLQ's show fill it.
	Spent *SpentView `json:"spent,omitempty"`
	// Tools are the declared tool versions the task uses, pinned when it
	// was submitted.
	Tools map[string]uint64 `json:"tools,omitempty"`
	// Wait is what a waiting task waits for; null in every other state.
	Wait *WaitView `json:"wait"`
}

// WaitView is what a waiting task waits for.
type WaitView struct {
	Kind   cluster.WaitKind `json:"kind"`
	CallID string           `json:"call_id"`
	Until  *string          `json:"until"` // a sleep's wake time, a signal's deadline; null for none
	Signal string           `json:"signal,omitempty"`
	Since  *string          `json:"since"`
}

// SignalView answers POST /v1/tasks/{id}/signals/{name}.
type SignalView struct {
	Task TaskView `json:"task"`
	// Delivered: the task was waiting for this signal and is queued again.
	// Otherwise the signal is kept until the task awaits it.
	Delivered bool `json:"delivered"`
	// Duplicate: a signal with the same key was accepted before; nothing
	// changed.
	Duplicate bool `json:"duplicate"`
}

// BudgetView is a task's budget, defaults applied.
type BudgetView struct {
	MaxCalls    int64  `json:"max_calls"`
	MaxTokens   int64  `json:"max_tokens"`
	MaxEffects  int64  `json:"max_effects"`
	MaxDuration string `json:"max_duration"`
}

// SpentView is what a task spent, counted from its ledger: each recorded
// call once, however often it was replayed.
type SpentView struct {
	Calls     int64         `json:"calls"`
	Tokens    int64         `json:"tokens"`
	ByAttempt []AttemptCost `json:"by_attempt"`
}

// AttemptCost is what the calls one attempt recorded cost.
type AttemptCost struct {
	Attempt int   `json:"attempt"`
	Calls   int64 `json:"calls"`
	Tokens  int64 `json:"tokens"`
}

// EventView is one line of a task's journal.
type EventView struct {
	Seq     uint64            `json:"seq"`
	At      *string           `json:"at"`
	Type    cluster.EventType `json:"type"`
	Attempt int               `json:"attempt"`
	CallID  string            `json:"call_id"`
	Tool    string            `json:"tool"`
	Message string            `json:"message"`
	Detail  json.RawMessage   `json:"detail"`
}

// CallView is one tool call in one attempt, from the journal.
type CallView struct {
	ID         string           `json:"id"`
	Tool       string           `json:"tool"`
	Outcome    host.CallOutcome `json:"outcome"`
	Attempt    int              `json:"attempt"`
	Status     string           `json:"status"`
	DurationUS int64            `json:"duration_us"`
	At         *string          `json:"at"`
	Reason     string           `json:"reason,omitempty"` // why, for in_doubt, error and reconciled calls
	// Tokens are the model tokens the call spent, from its ledger record:
	// set on the attempt that recorded the result, 0 on replays.
	Tokens int64 `json:"tokens"`
}

// LedgerView is a task's ledger entry for one call.
type LedgerView struct {
	ID         string          `json:"id"`
	Tool       string          `json:"tool"`
	Attempt    int             `json:"attempt"`
	HasResult  bool            `json:"has_result"`
	NotApplied bool            `json:"not_applied,omitempty"` // an INTENT known not to have taken effect
	Status     string          `json:"status"`
	Result     json.RawMessage `json:"result"`
	Usage      json.RawMessage `json:"usage"`
}

// DLQEntry is GET /v1/dlq/{id}.
type DLQEntry struct {
	Task TaskView `json:"task"`
	// Calls and Events are the last dlqShowLast of each (the ones that
	// led here); CallsTotal and EventsTotal count them all. A recorded
	// result over dlqShowResult bytes shows as {"truncated":true,"bytes":N}.
	Calls       []LedgerView `json:"calls"`
	CallsTotal  int          `json:"calls_total"`
	Events      []EventView  `json:"events"`
	EventsTotal int          `json:"events_total"`
}

// What a DLQ entry shows of a task's ledger and journal: a task may have
// recorded 10,000 calls, and its dead letter must still answer quickly.
const (
	dlqShowLast   = 200
	dlqShowResult = 16 << 10
)

// BulkResult answers a bulk DLQ operation: the tasks it changed.
type BulkResult struct {
	Count int      `json:"count"`
	IDs   []string `json:"ids"`
	// Remaining is how many more dead letters matched than one request
	// acts on (MaxBulk): send it again for them.
	Remaining int `json:"remaining"`
}

// MemberView is one server in the Raft configuration. Role, last_contact
// and applied_index come from the member itself (GET /v1/cluster/self),
// asked with a short timeout; a member that does not answer shows the role
// the answering node infers ("unreachable" if it is not the leader) and null
// for the rest. last_contact is how long ago the member last heard from the
// leader ("0s" for the leader).
type MemberView struct {
	ID           string  `json:"id"`
	Address      string  `json:"address"`
	Role         string  `json:"role"`     // leader, follower, candidate, unknown
	Suffrage     string  `json:"suffrage"` // voter, nonvoter
	LastContact  *string `json:"last_contact"`
	AppliedIndex *uint64 `json:"applied_index"`
	// Term is the member's Raft term as it reports it; 0 when it did not
	// answer.
	Term uint64 `json:"term,omitempty"`
}

// TransferResult answers a leadership transfer with the new leader's ID
// ("" if it was not known before the answer was due).
type TransferResult struct {
	Leader string `json:"leader"`
}

// Request bodies.

// SubmitRequest is POST /v1/tasks.
type SubmitRequest struct {
	Agent          string          `json:"agent"`
	Version        string          `json:"version"`
	Input          json.RawMessage `json:"input"`
	IdempotencyKey string          `json:"idempotency_key"`
	MaxAttempts    int             `json:"max_attempts"`
	Retry          *RetryRequest   `json:"retry"`
	// Budget overrides the agent's budget for this task; fields left out
	// keep the agent's (or the default).
	Budget *BudgetRequest `json:"budget"`
}

// BudgetRequest sets a task's budgets; zero or absent fields keep what the
// task (or its agent) has. MaxDuration is a Go duration ("5m").
type BudgetRequest struct {
	MaxCalls    int64  `json:"max_calls"`
	MaxTokens   int64  `json:"max_tokens"`
	MaxEffects  int64  `json:"max_effects"`
	MaxDuration string `json:"max_duration"`
}

// RetryDLQRequest is the body of a single DLQ retry: optionally another
// version of the agent, and more budget.
type RetryDLQRequest struct {
	Version string         `json:"version"`
	Budget  *BudgetRequest `json:"budget"`
}

// RetryRequest overrides the backoff of one task; empty fields keep the
// defaults (base 1s, factor 2, cap 5m).
type RetryRequest struct {
	Base   string `json:"base"`
	Factor int    `json:"factor"`
	Cap    string `json:"cap"`
}

// ReasonRequest is the body of cancel and discard.
// ResolveRequest is POST /v1/dlq/{id}/resolve: a person's answer about a
// call left in doubt.
type ResolveRequest struct {
	CallID  string          `json:"call_id"`
	Applied bool            `json:"applied"`
	Result  json.RawMessage `json:"result"` // with applied: what the call returned
	By      string          `json:"by"`
	Note    string          `json:"note"`
}

type ReasonRequest struct {
	Reason string `json:"reason"`
}

// BulkRetryRequest is POST /v1/dlq/retry.
type BulkRetryRequest struct {
	Agent   string `json:"agent"`
	Class   string `json:"class"`
	Version string `json:"version"`
}

// BulkDiscardRequest is POST /v1/dlq/discard.
type BulkDiscardRequest struct {
	Agent  string `json:"agent"`
	Class  string `json:"class"`
	Reason string `json:"reason"`
}

// JoinRequest is POST /v1/cluster/join.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	// APIAddr is where the new node's API listens, so followers can send
	// clients to it when it leads.
	APIAddr string `json:"api_addr,omitempty"`
	// Fresh says the node has no Raft state: a member removed earlier may
	// rejoin only like this, with its data wiped.
	Fresh bool `json:"fresh,omitempty"`
	// Voter adds the node as a voter at once. Nodes join as non-voters
	// and ask for promotion once caught up (POST /v1/cluster/promote), so a
	// slow catch-up never counts toward quorum.
	Voter bool `json:"voter,omitempty"`
}

// StateView is GET /v1/cluster/state: this replica's applied index and a
// hash of its whole state. Replicas at the same index must agree.
type StateView struct {
	Node            string `json:"node"`
	AppliedIndex    uint64 `json:"applied_index"`
	Hash            string `json:"hash"`
	FenceRejections uint64 `json:"fence_rejections"`
	// Term is this node's current Raft term: how many elections it has
	// seen, which shows a cluster that flaps.
	Term uint64 `json:"term"`
}

// MemberRequest names a member (remove; transfer, where "" means any).
type MemberRequest struct {
	ID string `json:"id"`
}

// Conversions.

func timeView(ns int64) *string {
	if ns == 0 {
		return nil
	}
	s := time.Unix(0, ns).UTC().Format(time.RFC3339Nano)
	return &s
}

// rawView makes stored bytes safe to embed: null when empty, a JSON string
// when they are not JSON (a response must stay valid whatever was stored).
func rawView(b []byte) json.RawMessage {
	if len(b) == 0 {
		return json.RawMessage("null")
	}
	if !json.Valid(b) {
		s, _ := json.Marshal(string(b)) // a string always encodes
		return s
	}
	return json.RawMessage(b)
}

func agentView(a cluster.Agent) AgentView {
	v := AgentView{
		Name: a.Name, Version: a.Version, Digest: a.Digest, Size: a.Size,
		Tools:       append([]string{}, a.Manifest.Tools...),
		Approve:     append([]string{}, a.Manifest.Approve...),
		MemoryLimit: a.Manifest.MemoryLimit, MaxAttempts: a.Manifest.MaxAttempts,
		Timeout: a.Manifest.Timeout.String(), CreatedAt: timeView(a.CreatedAt),
		Budget: budgetView(a.Manifest.Budget.WithDefaults()),
	}
	if v.MemoryLimit == 0 {
		v.MemoryLimit = sandbox.DefaultMemoryLimit
	}
	if a.Manifest.Timeout == 0 {
		v.Timeout = sandbox.DefaultTimeout.String()
	}
	if v.MaxAttempts == 0 {
		v.MaxAttempts = cluster.DefaultRetryPolicy().MaxAttempts
	}
	return v
}

func agentViews(as []cluster.Agent) []AgentView {
	out := make([]AgentView, 0, len(as))
	for _, a := range as {
		out = append(out, agentView(a))
	}
	return out
}

func leaseView(l cluster.Lease) LeaseView {
	return LeaseView{TaskID: l.TaskID, Token: l.Token, Node: l.Node, Attempt: l.Attempt,
		GrantedAt: timeView(l.GrantedAt), ExpiresAt: timeView(l.ExpiresAt), TTL: l.TTL.String()}
}

func taskView(t cluster.Task) TaskView {
	v := TaskView{
		ID: t.ID, Agent: t.Agent, Version: t.Version, State: t.State,
		Attempts: t.Attempts, MaxAttempts: t.Policy.MaxAttempts,
		Input: rawView(t.Input), Output: rawView(t.Output),
		History: make([]AttemptView, 0, len(t.History)),
		NextAt:  timeView(t.NextAt), CreatedAt: timeView(t.CreatedAt), UpdatedAt: timeView(t.UpdatedAt),
		IdempotencyKey: t.IdempotencyKey, DiscardReason: t.DiscardReason,
		Budget: budgetView(t.Budget.WithDefaults()),
		Tools:  t.Tools,
	}
	if t.Error != nil {
		v.Error = &ErrorView{Class: t.Error.Class, Message: t.Error.Message, StderrTail: t.Error.StderrTail}
	}
	if t.Lease != nil {
		l := leaseView(*t.Lease)
		v.Lease = &l
	}
	if w := t.Wait; w != nil {
		v.Wait = &WaitView{Kind: w.Kind, CallID: w.CallID, Until: timeView(w.Until), Signal: w.Signal, Since: timeView(w.Since)}
	}
	for _, h := range t.History {
		a := AttemptView{N: h.N, Node: h.Node, Token: h.Token, StartedAt: timeView(h.StartedAt),
			EndedAt: timeView(h.EndedAt), Outcome: h.Outcome, Error: h.Error}
		// A zero delay means no retry was scheduled after this attempt (full
		// jitter picks exactly zero with negligible probability).
		if h.Delay > 0 {
			d := time.Duration(h.Delay).String()
			a.RetryDelay = &d
		}
		v.History = append(v.History, a)
	}
	return v
}

func taskViews(ts []cluster.Task) []TaskView {
	out := make([]TaskView, 0, len(ts))
	for _, t := range ts {
		out = append(out, taskView(t))
	}
	return out
}

func eventView(e cluster.Event) EventView {
	return EventView{Seq: e.Seq, At: timeView(e.At), Type: e.Type, Attempt: e.Attempt, CallID: e.CallID,
		Tool: e.Tool, Message: e.Message, Detail: rawView(e.Detail)}
}

func eventViews(es []cluster.Event) []EventView {
	out := make([]EventView, 0, len(es))
	for _, e := range es {
		out = append(out, eventView(e))
	}
	return out
}

// callViews lists the call events of a journal: one per call per attempt.
func callViews(es []cluster.Event) []CallView {
	out := []CallView{}
	for _, e := range es {
		if e.Type != cluster.EventCall {
			continue
		}
		var d host.CallDetail
		_ = json.Unmarshal(e.Detail, &d) // a malformed detail leaves the fields empty
		out = append(out, CallView{ID: e.CallID, Tool: e.Tool, Outcome: d.Outcome, Attempt: e.Attempt,
			Status: d.Status, DurationUS: d.Duration, At: timeView(e.At), Reason: d.Reason})
	}
	return out
}

// withTokens sets each invoked call's tokens from the ledger record its
// attempt wrote.
func withTokens(calls []CallView, recs []cluster.LedgerRecord) []CallView {
	byID := make(map[string]cluster.LedgerRecord, len(recs))
	for _, r := range recs {
		byID[r.CallID] = r
	}
	for i := range calls {
		c := &calls[i]
		if r, ok := byID[c.ID]; ok && c.Outcome == host.OutcomeInvoked && r.HasResult && r.Attempt == c.Attempt {
			c.Tokens = host.UsageTokens(r.Usage)
		}
	}
	return calls
}

func ledgerViews(rs []cluster.LedgerRecord) []LedgerView {
	out := make([]LedgerView, 0, len(rs))
	for _, r := range rs {
		out = append(out, ledgerView(r))
	}
	return out
}

func ledgerView(r cluster.LedgerRecord) LedgerView {
	return LedgerView{ID: r.CallID, Tool: r.Tool, Attempt: r.Attempt, HasResult: r.HasResult, NotApplied: r.NotApplied,
		Status: r.Status, Result: rawView(r.Result), Usage: rawView(r.Usage)}
}

func budgetView(b cluster.Budget) BudgetView {
	v := BudgetView{MaxCalls: b.MaxCalls, MaxTokens: b.MaxTokens, MaxEffects: b.MaxEffects}
	if b.MaxDuration > 0 {
		v.MaxDuration = b.MaxDuration.String()
	}
	return v
}

// spentView adds up a task's ledger: calls (clock readings are not calls)
// and model tokens, by the attempt that recorded them. Clock readings and
// waits are not calls.
func spentView(recs []cluster.LedgerRecord) *SpentView {
	v := &SpentView{ByAttempt: []AttemptCost{}}
	at := map[int]int{}
	for _, r := range recs {
		if host.IsHostCall(r.Tool) {
			continue
		}
		i, ok := at[r.Attempt]
		if !ok {
			i = len(v.ByAttempt)
			at[r.Attempt] = i
			v.ByAttempt = append(v.ByAttempt, AttemptCost{Attempt: r.Attempt})
		}
		n := host.UsageTokens(r.Usage)
		v.Calls++
		v.Tokens += n
		v.ByAttempt[i].Calls++
		v.ByAttempt[i].Tokens += n
	}
	return v
}
