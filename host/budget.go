package host

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orloj/orloj/cluster"
)

// ClockTool names the ledger entries that record the guest's clock
// readings: they are not tool calls, and no budget counts them.
const ClockTool = nowTool

// IsHostCall reports whether a ledger record names a host call (a clock
// reading, a wait) rather than a tool call: no budget counts it.
func IsHostCall(tool string) bool { return tool == nowTool || isWaitTool(tool) }

// ErrBudgetExceeded is what a BudgetError unwraps to.
var ErrBudgetExceeded = errors.New("budget exceeded")

// BudgetError says which of a task's budgets ran out, and by how much.
type BudgetError struct {
	Kind  cluster.BudgetKind
	Limit int64 // the budget: a count, or nanoseconds for BudgetDuration
	Used  int64 // what the refused call or effect would have made it
}

func (e *BudgetError) Error() string {
	switch e.Kind {
	case cluster.BudgetDuration:
		return fmt.Sprintf("budget exceeded: attempts have run %s of max_duration %s (over by %s)",
			time.Duration(e.Used).Round(time.Millisecond), time.Duration(e.Limit), time.Duration(e.Used-e.Limit).Round(time.Millisecond))
	case cluster.BudgetTokens:
		return fmt.Sprintf("budget exceeded: %d model tokens used of max_tokens %d (over by %d)", e.Used, e.Limit, e.Used-e.Limit)
	case cluster.BudgetEffects:
		return fmt.Sprintf("budget exceeded: effect %d would exceed max_effects %d", e.Used, e.Limit)
	default:
		return fmt.Sprintf("budget exceeded: call %d would exceed max_calls %d", e.Used, e.Limit)
	}
}

func (e *BudgetError) Unwrap() error { return ErrBudgetExceeded }

// spend tracks one task's use of its budget during an attempt. What earlier
// attempts used comes from the ledger, so a replayed call and the tokens it
// recorded count once however often the task is retried. Not safe for
// concurrent use: the dispatcher holds its lock.
type spend struct {
	limit   cluster.Budget
	calls   int64               // distinct calls: the ledger's, then this attempt's new ones
	known   map[string]struct{} // call IDs already counted
	tokens  int64
	effects int64 // emitted in this attempt (the outbox is written once, at success)
	// ranBefore is the time earlier attempts ran; started is when this
	// one did.
	ranBefore time.Duration
	started   time.Time
	now       func() time.Time
	tripped   *BudgetError // the first budget that ran out; the attempt cannot succeed
}

func newSpend(t cluster.Task, recs []cluster.LedgerRecord, now func() time.Time) *spend {
	s := &spend{limit: t.Budget.WithDefaults(), known: make(map[string]struct{}, len(recs)), now: now, started: now()}
	for _, r := range recs {
		if IsHostCall(r.Tool) {
			continue
		}
		s.known[r.CallID] = struct{}{}
		s.calls++
		s.tokens += UsageTokens(r.Usage)
	}
	for _, h := range t.History {
		if h.EndedAt > h.StartedAt {
			s.ranBefore += time.Duration(h.EndedAt - h.StartedAt)
		}
	}
	return s
}

// UsageTokens reads a recorded plugins.Usage (prompt plus completion
// tokens); what cannot be read counts 0.
func UsageTokens(raw json.RawMessage) int64 {
	if len(raw) == 0 {
		return 0
	}
	var u struct {
		Prompt     int64 `json:"prompt_tokens"`
		Completion int64 `json:"completion_tokens"`
	}
	if json.Unmarshal(raw, &u) != nil || u.Prompt < 0 || u.Completion < 0 {
		return 0
	}
	return u.Prompt + u.Completion
}

// remaining is how long this attempt may run before the duration budget
// runs out, and whether there is such a budget.
func (s *spend) remaining() (time.Duration, bool) {
	if s.limit.MaxDuration <= 0 {
		return 0, false
	}
	return s.limit.MaxDuration - s.ranBefore - s.now().Sub(s.started), true
}

// call charges a call the ledger has not seen. A call already counted
// (recorded by an earlier attempt, or made earlier in this one under a
// guest-supplied key) costs nothing again.
func (s *spend) call(id string) *BudgetError {
	if _, ok := s.known[id]; ok {
		return nil
	}
	if s.tripped != nil {
		return s.tripped
	}
	switch {
	case s.calls+1 > s.limit.MaxCalls:
		s.tripped = &BudgetError{Kind: cluster.BudgetCalls, Limit: s.limit.MaxCalls, Used: s.calls + 1}
	case s.limit.MaxTokens > 0 && s.tokens >= s.limit.MaxTokens:
		s.tripped = &BudgetError{Kind: cluster.BudgetTokens, Limit: s.limit.MaxTokens, Used: s.tokens}
	default:
		if left, ok := s.remaining(); ok && left <= 0 {
			s.tripped = &BudgetError{Kind: cluster.BudgetDuration, Limit: int64(s.limit.MaxDuration), Used: int64(s.limit.MaxDuration - left)}
		}
	}
	if s.tripped != nil {
		return s.tripped
	}
	s.known[id] = struct{}{}
	s.calls++
	return nil
}

// effect charges one emitted effect.
func (s *spend) effect() *BudgetError {
	if s.tripped != nil {
		return s.tripped
	}
	if s.effects+1 > s.limit.MaxEffects {
		s.tripped = &BudgetError{Kind: cluster.BudgetEffects, Limit: s.limit.MaxEffects, Used: s.effects + 1}
		return s.tripped
	}
	s.effects++
	return nil
}

// deadline records that the attempt ran out of its duration budget (the
// sandbox stopped it).
func (s *spend) deadline() *BudgetError {
	if s.tripped == nil {
		left, _ := s.remaining()
		s.tripped = &BudgetError{Kind: cluster.BudgetDuration, Limit: int64(s.limit.MaxDuration), Used: int64(s.limit.MaxDuration - left)}
	}
	return s.tripped
}
