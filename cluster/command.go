package cluster

import (
	"encoding/json"
	"fmt"
	"time"
)

// MessageType is the first byte of every Raft log entry Orloj writes. Values
// are append-only: never renumber or reuse one.
type MessageType uint8

// IgnoreUnknownFlag, set on a MessageType, tells an older node that does not
// know the type to skip the entry instead of stopping (rolling upgrades).
const IgnoreUnknownFlag MessageType = 0x80

const (
	MsgPutAgent MessageType = iota + 1
	MsgSubmitTask
	MsgClaimTask
	MsgRenewLease
	MsgExpireLease
	MsgExtendLeases
	MsgRecordIntent
	MsgRecordResult
	MsgCompleteTask
	MsgFailAttempt
	MsgRetryDLQ
	MsgDiscardDLQ
	MsgCancelTask
	MsgStageWrite
	MsgAppendJournal
	MsgMarkEffectDone
	MsgPutModuleChunk
	MsgSetMember
	MsgCompactTasks
	MsgResolveCall
	MsgClearIntent
	MsgPutTool
	MsgRemoveTool
	MsgPutSchedule
	MsgPauseSchedule
	MsgDeleteSchedule
	MsgFireSchedule
	MsgSuspend
	MsgWakeTask
	MsgSendSignal
	MsgDecideApproval
)

var msgNames = map[MessageType]string{
	MsgPutAgent: "put_agent", MsgSubmitTask: "submit_task", MsgClaimTask: "claim_task",
	MsgRenewLease: "renew_lease", MsgExpireLease: "expire_lease", MsgExtendLeases: "extend_leases",
	MsgRecordIntent: "record_intent", MsgRecordResult: "record_result", MsgCompleteTask: "complete_task",
	MsgFailAttempt: "fail_attempt", MsgRetryDLQ: "retry_dlq", MsgDiscardDLQ: "discard_dlq",
	MsgCancelTask: "cancel_task", MsgStageWrite: "stage_write", MsgAppendJournal: "append_journal",
	MsgMarkEffectDone: "mark_effect_done", MsgPutModuleChunk: "put_module_chunk", MsgSetMember: "set_member",
	MsgCompactTasks: "compact_tasks", MsgResolveCall: "resolve_call", MsgClearIntent: "clear_intent",
	MsgPutTool: "put_tool", MsgRemoveTool: "remove_tool",
	MsgPutSchedule: "put_schedule", MsgPauseSchedule: "pause_schedule", MsgDeleteSchedule: "delete_schedule",
	MsgFireSchedule: "fire_schedule",
	MsgSuspend:      "suspend", MsgWakeTask: "wake_task", MsgSendSignal: "send_signal", MsgDecideApproval: "decide_approval",
}

func (t MessageType) String() string {
	if n, ok := msgNames[t&^IgnoreUnknownFlag]; ok {
		return n
	}
	return fmt.Sprintf("message(%d)", uint8(t))
}

// Command is a typed change to the FSM. Every command carries the proposer's
// clock reading (Now, unix nanos) so Apply never reads a clock.
type Command interface {
	messageType() MessageType
	// Validate refuses what the FSM would refuse without reading state:
	// sizes over the limits in limits.go (ErrTooLarge) and malformed fields
	// (ErrInvalidCmd). See validate.go.
	Validate() error
}

// PutAgent registers a module version. Module holds the wasm bytes when they
// fit in one entry (MaxInlineModule); larger modules arrive first as
// PutModuleChunk entries and PutAgent names them by Agent.Digest and
// Agent.Size. ProposeAgent does the right thing.
type PutAgent struct {
	Agent  Agent  `json:"agent"`
	Module []byte `json:"module"`
	Now    int64  `json:"now"`
}

// PutModuleChunk stores the N-th chunk (ModuleChunkSize bytes, the last one
// shorter) of the module with the given digest.
type PutModuleChunk struct {
	Digest string `json:"digest"`
	N      int    `json:"n"`
	Data   []byte `json:"data"`
	Now    int64  `json:"now"`
}

// SetMember records where a member's API listens, so followers can point
// clients at the leader.
type SetMember struct {
	Member Member `json:"member"`
	Now    int64  `json:"now"`
}

// SubmitTask creates a task, or returns the existing one with the same
// idempotency key.
type SubmitTask struct {
	Task Task  `json:"task"` // ID, Agent, Version, Input, IdempotencyKey, Policy
	Now  int64 `json:"now"`
}

// ClaimTask grants the oldest runnable task (queued, or retry_pending with
// NextAt <= Now) to Node. The response is a *Claim, or nil if none is runnable.
type ClaimTask struct {
	Node string        `json:"node"`
	TTL  time.Duration `json:"ttl"`
	Now  int64         `json:"now"`
}

// RenewLease extends a held lease to Now+TTL.
type RenewLease struct {
	TaskID string        `json:"task_id"`
	Token  uint64        `json:"token"`
	TTL    time.Duration `json:"ttl"`
	Now    int64         `json:"now"`
}

// ExpireLease ends a lease that the leader saw expire. It is a no-op if the
// lease was renewed or replaced meanwhile. The attempt counts as failed.
type ExpireLease struct {
	TaskID string `json:"task_id"`
	Token  uint64 `json:"token"`
	Jitter uint64 `json:"jitter"` // uniform random, chosen by the proposer
	Now    int64  `json:"now"`
}

// ExtendLeases pushes every live lease to at least Now+its TTL. A new leader
// commits it before it expires any lease.
type ExtendLeases struct {
	Now int64 `json:"now"`
}

// RecordIntent commits that a tool call is about to be made.
type RecordIntent struct {
	TaskID string `json:"task_id"`
	Token  uint64 `json:"token"`
	CallID string `json:"call_id"`
	Tool   string `json:"tool"`
	Now    int64  `json:"now"`
}

// RecordResult commits a tool call's result (or permanent error). A call with
// no effect to be in doubt about (a clock reading) may skip the intent by
// naming its Tool here.
type RecordResult struct {
	TaskID string          `json:"task_id"`
	Token  uint64          `json:"token"`
	CallID string          `json:"call_id"`
	Tool   string          `json:"tool,omitempty"`
	Status string          `json:"status"`
	Result json.RawMessage `json:"result"`
	Usage  json.RawMessage `json:"usage,omitempty"`
	Event  *Event          `json:"event,omitempty"` // journal line for the call
	Now    int64           `json:"now"`
}

// ResolveCall is a person's answer about a call left in doubt (an INTENT
// without RESULT) of a dead-lettered task: it was applied, with this
// result, or it was not. A following RetryDLQ replays the result, or
// invokes the call again.
type ResolveCall struct {
	TaskID  string          `json:"task_id"`
	CallID  string          `json:"call_id"`
	Applied bool            `json:"applied"`
	Result  json.RawMessage `json:"result,omitempty"` // with Applied: what the call returned
	By      string          `json:"by"`               // who decided
	Note    string          `json:"note"`             // and why
	Now     int64           `json:"now"`
}

// ClearIntent records that a call whose INTENT is committed was not sent
// (the tool failed before a byte of the request left), so the next attempt
// may invoke it again even if the tool is unsafe. Fenced like RecordResult.
type ClearIntent struct {
	TaskID string `json:"task_id"`
	Token  uint64 `json:"token"`
	CallID string `json:"call_id"`
	Now    int64  `json:"now"`
}

// CompleteTask finishes a task: output, staged writes and the outbox become
// visible together.
type CompleteTask struct {
	TaskID  string          `json:"task_id"`
	Token   uint64          `json:"token"`
	Output  json.RawMessage `json:"output"`
	Outbox  []Effect        `json:"outbox,omitempty"`
	Journal []Event         `json:"journal,omitempty"` // events the worker saw (replays)
	Now     int64           `json:"now"`
}

// FailAttempt ends an attempt with a classified error.
type FailAttempt struct {
	TaskID  string    `json:"task_id"`
	Token   uint64    `json:"token"`
	Error   TaskError `json:"error"`
	Journal []Event   `json:"journal,omitempty"`
	Jitter  uint64    `json:"jitter"`
	Now     int64     `json:"now"`
}

// RetryDLQ requeues a dead-lettered task: attempts reset, ledger kept,
// optionally pinned to another version of its agent.
type RetryDLQ struct {
	TaskID  string `json:"task_id"`
	Version string `json:"version,omitempty"`
	// Budget, where a field is non-zero, replaces the task's (to grant
	// more after a budget ran out).
	Budget Budget `json:"budget,omitempty"`
	Now    int64  `json:"now"`
}

// DiscardDLQ drops a dead-lettered task, keeping it for audit.
type DiscardDLQ struct {
	TaskID string `json:"task_id"`
	Reason string `json:"reason"`
	Now    int64  `json:"now"`
}

// CancelTask stops a task that has not finished.
type CancelTask struct {
	TaskID string `json:"task_id"`
	Reason string `json:"reason,omitempty"`
	Now    int64  `json:"now"`
}

// StageWrite stages a kv write, applied when the task completes.
type StageWrite struct {
	TaskID string  `json:"task_id"`
	Token  uint64  `json:"token"`
	Write  KVWrite `json:"write"`
	Now    int64   `json:"now"`
}

// AppendJournal adds events to a task's journal. With a Token it is fenced
// like RecordResult: a worker flushing a long attempt's events in chunks (at
// most MaxEventsPerEntry each) cannot write after it lost the lease.
type AppendJournal struct {
	TaskID string  `json:"task_id"`
	Token  uint64  `json:"token,omitempty"` // when set, fenced like a ledger write
	Events []Event `json:"events"`
	Now    int64   `json:"now"`
}

// MarkEffectDone records that an outbox effect was dispatched, or failed
// permanently (Error). Writes are the kv writes a dispatched kv effect
// makes, applied in the same entry.
type MarkEffectDone struct {
	TaskID string    `json:"task_id"`
	N      int       `json:"n"`
	Error  string    `json:"error,omitempty"`
	Writes []KVWrite `json:"writes,omitempty"`
	Now    int64     `json:"now"`
}

func (PutAgent) messageType() MessageType       { return MsgPutAgent }
func (SubmitTask) messageType() MessageType     { return MsgSubmitTask }
func (ClaimTask) messageType() MessageType      { return MsgClaimTask }
func (RenewLease) messageType() MessageType     { return MsgRenewLease }
func (ExpireLease) messageType() MessageType    { return MsgExpireLease }
func (ExtendLeases) messageType() MessageType   { return MsgExtendLeases }
func (RecordIntent) messageType() MessageType   { return MsgRecordIntent }
func (RecordResult) messageType() MessageType   { return MsgRecordResult }
func (CompleteTask) messageType() MessageType   { return MsgCompleteTask }
func (FailAttempt) messageType() MessageType    { return MsgFailAttempt }
func (RetryDLQ) messageType() MessageType       { return MsgRetryDLQ }
func (DiscardDLQ) messageType() MessageType     { return MsgDiscardDLQ }
func (CancelTask) messageType() MessageType     { return MsgCancelTask }
func (StageWrite) messageType() MessageType     { return MsgStageWrite }
func (AppendJournal) messageType() MessageType  { return MsgAppendJournal }
func (MarkEffectDone) messageType() MessageType { return MsgMarkEffectDone }
func (PutModuleChunk) messageType() MessageType { return MsgPutModuleChunk }
func (SetMember) messageType() MessageType      { return MsgSetMember }
func (ResolveCall) messageType() MessageType    { return MsgResolveCall }
func (ClearIntent) messageType() MessageType    { return MsgClearIntent }

// Encode renders a command as a log entry: one type byte, then JSON. It
// refuses, before anything is proposed, a command Validate refuses
// (ErrTooLarge or ErrInvalidCmd) and one whose entry would exceed
// MaxCommandBytes (ErrTooLarge), naming the command type, its size and the
// limit.
func Encode(c Command) ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.messageType(), err)
	}
	b, err := marshal(c)
	if err != nil {
		return nil, err
	}
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%s: %w: command is %d bytes, limit %d", c.messageType(), ErrTooLarge, len(b), MaxCommandBytes)
	}
	return b, nil
}

// marshal is Encode without the checks: tests use it to build entries only
// Apply may refuse.
func marshal(c Command) ([]byte, error) {
	body, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", c.messageType(), err)
	}
	return append([]byte{byte(c.messageType())}, body...), nil
}

// decode parses a log entry. ok is false for an unknown type that carries
// IgnoreUnknownFlag; an unknown type without it is an error.
func decode(b []byte) (c Command, ok bool, err error) {
	if len(b) == 0 {
		return nil, false, fmt.Errorf("%w: empty entry", ErrInvalidCmd)
	}
	t := MessageType(b[0])
	var v Command
	switch t &^ IgnoreUnknownFlag {
	case MsgPutAgent:
		v = &PutAgent{}
	case MsgSubmitTask:
		v = &SubmitTask{}
	case MsgClaimTask:
		v = &ClaimTask{}
	case MsgRenewLease:
		v = &RenewLease{}
	case MsgExpireLease:
		v = &ExpireLease{}
	case MsgExtendLeases:
		v = &ExtendLeases{}
	case MsgRecordIntent:
		v = &RecordIntent{}
	case MsgRecordResult:
		v = &RecordResult{}
	case MsgCompleteTask:
		v = &CompleteTask{}
	case MsgFailAttempt:
		v = &FailAttempt{}
	case MsgRetryDLQ:
		v = &RetryDLQ{}
	case MsgDiscardDLQ:
		v = &DiscardDLQ{}
	case MsgCancelTask:
		v = &CancelTask{}
	case MsgStageWrite:
		v = &StageWrite{}
	case MsgAppendJournal:
		v = &AppendJournal{}
	case MsgMarkEffectDone:
		v = &MarkEffectDone{}
	case MsgPutModuleChunk:
		v = &PutModuleChunk{}
	case MsgSetMember:
		v = &SetMember{}
	case MsgCompactTasks:
		v = &CompactTasks{}
	case MsgResolveCall:
		v = &ResolveCall{}
	case MsgClearIntent:
		v = &ClearIntent{}
	case MsgPutTool:
		v = &PutTool{}
	case MsgRemoveTool:
		v = &RemoveTool{}
	case MsgPutSchedule:
		v = &PutSchedule{}
	case MsgPauseSchedule:
		v = &PauseSchedule{}
	case MsgDeleteSchedule:
		v = &DeleteSchedule{}
	case MsgFireSchedule:
		v = &FireSchedule{}
	case MsgSuspend:
		v = &Suspend{}
	case MsgWakeTask:
		v = &WakeTask{}
	case MsgSendSignal:
		v = &SendSignal{}
	case MsgDecideApproval:
		v = &DecideApproval{}
	default:
		if t&IgnoreUnknownFlag != 0 {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("%w: unknown type %d", ErrInvalidCmd, uint8(t))
	}
	if err := json.Unmarshal(b[1:], v); err != nil {
		return nil, false, fmt.Errorf("%w: %s: %v", ErrInvalidCmd, t, err)
	}
	return v, true, nil
}
