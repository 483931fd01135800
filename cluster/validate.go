package cluster

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"
)

// Validate checks what a command carries against the limits in limits.go and
// the rules that need no state. Encode calls it before a command is
// proposed and Apply calls it again on every replica, so the proposer's
// check and the FSM's refusal cannot disagree. Size rules fail with
// ErrTooLarge, the rest with ErrInvalidCmd.
//
// Each rule is one function below; the Validate methods only list which
// rules a command is subject to.

// tooLarge reports what, of n bytes (or items), over limit.
func tooLarge(what string, n, limit int, unit string) error {
	return fmt.Errorf("%w: %s is %d %s, limit %d", ErrTooLarge, what, n, unit, limit)
}

func checkBytes(what string, n, limit int) error {
	if n > limit {
		return tooLarge(what, n, limit, "bytes")
	}
	return nil
}

// checkName bounds an identifier; required ones may not be empty.
func checkName(what, s string, required bool) error {
	if required && s == "" {
		return fmt.Errorf("%w: %s is empty", ErrInvalidCmd, what)
	}
	return checkBytes(what, len(s), MaxNameBytes)
}

func checkNames(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := checkName(pairs[i], pairs[i+1], false); err != nil {
			return err
		}
	}
	return nil
}

func required(pairs ...string) error {
	for i := 0; i+1 < len(pairs); i += 2 {
		if err := checkName(pairs[i], pairs[i+1], true); err != nil {
			return err
		}
	}
	return nil
}

func validateEvent(what string, e *Event) error {
	if err := checkNames(what+" type", string(e.Type), what+" call_id", e.CallID, what+" tool", e.Tool); err != nil {
		return err
	}
	if err := checkBytes(what+" message", len(e.Message), MaxEventMessageBytes); err != nil {
		return err
	}
	return checkBytes(what+" detail", len(e.Detail), MaxEventDetailBytes)
}

func validateEvents(evs []Event) error {
	if len(evs) > MaxEventsPerEntry {
		return tooLarge("journal", len(evs), MaxEventsPerEntry, "events")
	}
	for i := range evs {
		if err := validateEvent(fmt.Sprintf("journal event %d", i), &evs[i]); err != nil {
			return err
		}
	}
	return nil
}

func validateOutbox(effs []Effect) error {
	if len(effs) > MaxEffectsPerTask {
		return tooLarge("outbox", len(effs), MaxEffectsPerTask, "effects")
	}
	for i := range effs {
		e := &effs[i]
		if err := checkName(fmt.Sprintf("effect %d tool", i), e.Tool, true); err != nil {
			return err
		}
		if err := checkName(fmt.Sprintf("effect %d key", i), e.Key, false); err != nil {
			return err
		}
	}
	return nil
}

func validateTaskError(e *TaskError) error {
	switch e.Class {
	case ClassTransient, ClassPermanent, ClassPolicy, ClassBudget, ClassInDoubt:
	default:
		return fmt.Errorf("%w: error class %q", ErrInvalidCmd, e.Class)
	}
	if err := checkBytes("error message", len(e.Message), MaxErrorMessageBytes); err != nil {
		return err
	}
	return checkBytes("stderr tail", len(e.StderrTail), MaxStderrTailBytes)
}

func validateBudget(what string, b Budget) error {
	if err := b.Validate(); err != nil {
		return fmt.Errorf("%w: %s %w", ErrInvalidCmd, what, err)
	}
	return nil
}

func validateReason(what, s string, needed bool) error {
	if needed && strings.TrimSpace(s) == "" {
		return fmt.Errorf("%w: %s needs a reason", ErrInvalidCmd, what)
	}
	return checkBytes(what+" reason", len(s), MaxErrorMessageBytes)
}

func (c *PutAgent) Validate() error {
	ag := &c.Agent
	if ag.Name == "" || ag.Version == "" {
		return fmt.Errorf("%w: agent name and version are required", ErrInvalidCmd)
	}
	if err := checkNames("agent name", ag.Name, "agent version", ag.Version, "agent digest", ag.Digest); err != nil {
		return err
	}
	if len(c.Module) > MaxInlineModule {
		return fmt.Errorf("%w: %w: inline module is %d bytes, limit %d; send it in chunks", ErrInvalidCmd, ErrTooLarge, len(c.Module), MaxInlineModule)
	}
	if ag.Manifest.MaxAttempts > MaxAttemptsPerTask {
		return fmt.Errorf("%w: manifest max_attempts %d: want at most %d", ErrInvalidCmd, ag.Manifest.MaxAttempts, MaxAttemptsPerTask)
	}
	for i, tool := range ag.Manifest.Tools {
		if err := checkName(fmt.Sprintf("manifest tool %d", i), tool, true); err != nil {
			return err
		}
	}
	for _, tool := range ag.Manifest.Approve {
		if !slices.Contains(ag.Manifest.Tools, tool) {
			return fmt.Errorf("%w: manifest approve: %q is not one of the agent's tools", ErrInvalidCmd, tool)
		}
	}
	return validateBudget("manifest", ag.Manifest.Budget)
}

func (c *PutModuleChunk) Validate() error {
	if len(c.Digest) != 64 || c.N < 0 || len(c.Data) == 0 || len(c.Data) > moduleChunk {
		return fmt.Errorf("%w: module chunk %d of %.12s: bad digest, index or size (%d bytes)", ErrInvalidCmd, c.N, c.Digest, len(c.Data))
	}
	return nil
}

func (c *SetMember) Validate() error {
	if err := required("member id", c.Member.ID); err != nil {
		return err
	}
	return checkNames("member api_addr", c.Member.APIAddr, "member raft_addr", c.Member.RaftAddr)
}

func (c *SubmitTask) Validate() error {
	t := &c.Task
	if t.ID == "" || t.Agent == "" || t.Version == "" {
		return fmt.Errorf("%w: task id, agent and version are required", ErrInvalidCmd)
	}
	if err := checkNames("task id", t.ID, "task agent", t.Agent, "task version", t.Version, "task idempotency_key", t.IdempotencyKey); err != nil {
		return err
	}
	if err := checkBytes("task input", len(t.Input), MaxInputBytes); err != nil {
		return err
	}
	if t.Policy.MaxAttempts > MaxAttemptsPerTask {
		return fmt.Errorf("%w: policy max_attempts %d: want at most %d", ErrInvalidCmd, t.Policy.MaxAttempts, MaxAttemptsPerTask)
	}
	return validateBudget("task", t.Budget)
}

func (c *ClaimTask) Validate() error {
	if c.Node == "" || c.TTL <= 0 {
		return fmt.Errorf("%w: claim needs a node and a positive TTL", ErrInvalidCmd)
	}
	return checkNames("claim node", c.Node)
}

func (c *RenewLease) Validate() error {
	if c.TTL <= 0 {
		return fmt.Errorf("%w: renew needs a positive TTL", ErrInvalidCmd)
	}
	return checkNames("task id", c.TaskID)
}

func (c *ExpireLease) Validate() error  { return checkNames("task id", c.TaskID) }
func (c *ExtendLeases) Validate() error { return nil }

func (c *RecordIntent) Validate() error {
	return checkNames("task id", c.TaskID, "call id", c.CallID, "tool", c.Tool)
}

func (c *RecordResult) Validate() error {
	if err := checkNames("task id", c.TaskID, "call id", c.CallID, "tool", c.Tool, "status", c.Status); err != nil {
		return err
	}
	if c.Event != nil {
		return validateEvent("call event", c.Event)
	}
	return nil
}

func (c *CompleteTask) Validate() error {
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	if err := checkBytes("output", len(c.Output), MaxOutputBytes); err != nil {
		return err
	}
	if err := validateOutbox(c.Outbox); err != nil {
		return err
	}
	return validateEvents(c.Journal)
}

func (c *FailAttempt) Validate() error {
	if err := validateTaskError(&c.Error); err != nil {
		return err
	}
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	return validateEvents(c.Journal)
}

func (c *RetryDLQ) Validate() error {
	if err := checkNames("task id", c.TaskID, "version", c.Version); err != nil {
		return err
	}
	return validateBudget("retry", c.Budget)
}

func (c *DiscardDLQ) Validate() error {
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	return validateReason("discard", c.Reason, true)
}

func (c *CancelTask) Validate() error {
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	return validateReason("cancel", c.Reason, false)
}

func (c *StageWrite) Validate() error {
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	if err := checkName("kv key", c.Write.Key, true); err != nil {
		return err
	}
	return checkBytes("kv value", stagedBytes(c.Write), MaxStagedBytes)
}

// stagedBytes is what one staged write counts against MaxStagedBytes.
func stagedBytes(w KVWrite) int { return len(w.Key) + len(w.Value) }

func (c *AppendJournal) Validate() error {
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	return validateEvents(c.Events)
}

func (c *MarkEffectDone) Validate() error {
	if c.N < 0 {
		return fmt.Errorf("%w: effect number %d is negative", ErrInvalidCmd, c.N)
	}
	if err := checkNames("task id", c.TaskID); err != nil {
		return err
	}
	if err := checkEffectWrites(c); err != nil {
		return err
	}
	return checkBytes("effect error", len(c.Error), MaxErrorMessageBytes)
}

// Bounded returns e cut to the event limits, for proposers that record what
// a guest or a tool said: names and the message are cut on a rune boundary,
// and a detail over the limit is replaced by a note of its size (cutting
// JSON would break it).
func (e Event) Bounded() Event {
	e.Type, e.CallID, e.Tool = EventType(truncate(string(e.Type), MaxNameBytes)), truncate(e.CallID, MaxNameBytes), truncate(e.Tool, MaxNameBytes)
	e.Message = truncate(e.Message, MaxEventMessageBytes)
	if len(e.Detail) > MaxEventDetailBytes {
		e.Detail = []byte(fmt.Sprintf(`{"truncated_bytes":%d}`, len(e.Detail)))
	}
	return e
}

// Bounded returns e cut to the failure limits: the message keeps its start,
// the stderr tail its end (where a panic's last lines are).
func (e TaskError) Bounded() TaskError {
	e.Message = truncate(e.Message, MaxErrorMessageBytes)
	e.StderrTail = tail(e.StderrTail, MaxStderrTailBytes)
	return e
}

// tail keeps at most the last n bytes of s, from a rune boundary.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return s[i:]
}

func (c *ResolveCall) Validate() error {
	if err := checkNames("task id", c.TaskID, "call id", c.CallID, "resolved by", c.By); err != nil {
		return err
	}
	if err := validateReason("resolve", c.Note, true); err != nil {
		return err
	}
	switch {
	case c.Applied && len(c.Result) == 0:
		return fmt.Errorf("%w: a call resolved as applied needs the result it returned", ErrInvalidCmd)
	case !c.Applied && len(c.Result) != 0:
		return fmt.Errorf("%w: a call resolved as not applied has no result", ErrInvalidCmd)
	case len(c.Result) != 0 && !json.Valid(c.Result):
		return fmt.Errorf("%w: the result is not JSON", ErrInvalidCmd)
	}
	return checkBytes("result", len(c.Result), MaxOutputBytes)
}

func (c *ClearIntent) Validate() error {
	return checkNames("task id", c.TaskID, "call id", c.CallID)
}
