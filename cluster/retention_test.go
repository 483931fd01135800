package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
)

// finish runs task id through one attempt that records calls ledger
// entries and ends with complete (succeeded, with effects) or a permanent
// failure (a dead letter).
func (h *harness) finish(id string, calls int, effects []Effect, dead bool, now int64) {
	h.t.Helper()
	c := h.claim(now)
	if c == nil || c.Task.ID != id {
		h.t.Fatalf("claim for %s = %+v", id, c)
	}
	tok := c.Lease.Token
	for i := range calls {
		h.ok(&RecordResult{TaskID: id, Token: tok, CallID: fmt.Sprintf("c%d", i), Tool: "http", Status: "ok", Result: json.RawMessage(`1`),
			Event: &Event{Type: EventCall}, Now: now})
	}
	if dead {
		h.ok(&FailAttempt{TaskID: id, Token: tok, Error: TaskError{Class: ClassPermanent, Message: "no"}, Now: now})
		return
	}
	h.ok(&CompleteTask{TaskID: id, Token: tok, Output: json.RawMessage(`"ok"`), Outbox: effects, Now: now})
}

func (h *harness) gone(id string) bool {
	h.t.Helper()
	_, err := h.fsm.Task(id)
	calls, _ := h.fsm.Calls(id)
	journal, _ := h.fsm.Journal(id)
	outbox, _ := h.fsm.Outbox(id)
	if errors.Is(err, ErrNotFound) {
		if len(calls)+len(journal)+len(outbox) != 0 {
			h.t.Fatalf("task %s deleted but %d calls, %d events, %d effects left", id, len(calls), len(journal), len(outbox))
		}
		return true
	}
	if err != nil {
		h.t.Fatal(err)
	}
	return false
}

// TestCompactTasks: a finished task past retention goes with its ledger,
// journal, outbox and idempotency key; a dead letter, a running task, a
// task with an effect not yet dispatched and one that ended after the
// cut-off stay.
func TestCompactTasks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.ok(&SubmitTask{Task: Task{ID: "done", Agent: "doc", Version: "v1", IdempotencyKey: "order-1"}, Now: 1 * sec})
	h.finish("done", 3, []Effect{{Tool: "notify", Params: json.RawMessage(`{}`), Key: "e1"}}, false, 2*sec)
	h.ok(&MarkEffectDone{TaskID: "done", N: 0, Now: 3 * sec})
	h.submit("pending-effect", RetryPolicy{}, 4*sec)
	h.finish("pending-effect", 1, []Effect{{Tool: "notify", Params: json.RawMessage(`{}`), Key: "e2"}}, false, 5*sec)
	h.submit("dead", RetryPolicy{MaxAttempts: 1}, 6*sec)
	h.finish("dead", 1, nil, true, 7*sec)
	h.submit("cancelled", RetryPolicy{}, 8*sec)
	h.ok(&CancelTask{TaskID: "cancelled", Reason: "no", Now: 9 * sec})
	h.submit("running", RetryPolicy{}, 10*sec)
	if c := h.claim(11 * sec); c == nil || c.Task.ID != "running" {
		t.Fatalf("claim = %+v", c)
	}
	h.submit("late", RetryPolicy{}, 12*sec)
	h.ok(&CancelTask{TaskID: "late", Reason: "no", Now: 30 * sec})

	ids, err := h.fsm.ExpiredFinished(20*sec, 100)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids) != "[cancelled done]" {
		t.Fatalf("ExpiredFinished = %v", ids)
	}
	all := []string{"done", "pending-effect", "dead", "cancelled", "running", "late", "missing"}
	res := h.ok(&CompactTasks{IDs: all, Before: 20 * sec, Now: 40 * sec}).(CompactResult)
	if fmt.Sprint(res.Compacted) != "[done cancelled]" || res.Partial != "" {
		t.Fatalf("compacted %v, partial %q", res.Compacted, res.Partial)
	}
	for id, want := range map[string]bool{"done": true, "cancelled": true, "pending-effect": false, "dead": false, "running": false, "late": false} {
		if got := h.gone(id); got != want {
			t.Errorf("task %s gone = %v, want %v", id, got, want)
		}
	}
	// The idempotency key went with its task: the same key submits anew.
	r := h.ok(&SubmitTask{Task: Task{ID: "again", Agent: "doc", Version: "v1", IdempotencyKey: "order-1"}, Now: 41 * sec}).(SubmitResult)
	if r.Existing || r.Task.ID != "again" {
		t.Fatalf("resubmit with a compacted task's key = %+v", r)
	}
	// Once its effect is dispatched, the other task goes too.
	h.ok(&MarkEffectDone{TaskID: "pending-effect", N: 0, Now: 42 * sec})
	res = h.ok(&CompactTasks{IDs: []string{"pending-effect"}, Before: 20 * sec, Now: 43 * sec}).(CompactResult)
	if fmt.Sprint(res.Compacted) != "[pending-effect]" || !h.gone("pending-effect") {
		t.Fatalf("after the effect: %+v", res)
	}
	// The running counts followed every change, deletions included.
	indexesAgree(t, h.fsm)
	want := map[TaskState]int{StateDeadLetter: 1, StateRunning: 1, StateCancelled: 1, StateQueued: 1}
	if got := h.fsm.TaskCounts(""); !maps.Equal(got, want) {
		t.Errorf("TaskCounts = %v, want %v", got, want)
	}
	if got := h.fsm.TaskCounts("doc"); !maps.Equal(got, want) {
		t.Errorf("TaskCounts(doc) = %v, want %v", got, want)
	}
	if got := h.fsm.TaskCounts("other"); len(got) != 0 {
		t.Errorf("TaskCounts(other) = %v, want none", got)
	}
}

// TestCompactLongTaskOverSeveralEntries: a task with more records than one
// entry may delete is compacted over several, its record last, so it is
// found (and finished) by the next pass.
func TestCompactLongTaskOverSeveralEntries(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fsm.lim.compactOps = 10
	h.agent("doc", "v1", "\x00asm")
	h.submit("long", RetryPolicy{}, sec)
	h.finish("long", 25, nil, false, 2*sec)
	entries := 0
	for !h.gone("long") {
		entries++
		if entries > 10 {
			t.Fatal("compaction does not progress")
		}
		res := h.ok(&CompactTasks{IDs: []string{"long"}, Before: 10 * sec, Now: 11 * sec}).(CompactResult)
		if res.Partial == "" && len(res.Compacted) == 0 {
			t.Fatalf("entry %d did nothing", entries)
		}
		if !h.gone("long") {
			if res.Partial != "long" {
				t.Fatalf("entry %d: partial %q while the task remains", entries, res.Partial)
			}
			if ids, _ := h.fsm.ExpiredFinished(10*sec, 10); len(ids) != 1 {
				t.Fatalf("a partly compacted task is not found again: %v", ids)
			}
		}
	}
	// 25 results + 27 journal lines (claim, 25 calls, succeeded), 8 per entry.
	if entries < 4 {
		t.Fatalf("compacted in %d entries with a budget of 10 deletes each", entries)
	}
}

// TestCompactTasksRefusesBadLists: an empty or oversized list, or a bad
// ID, is refused before anything is deleted.
func TestCompactTasksRefusesBadLists(t *testing.T) {
	t.Parallel()
	long := make([]string, MaxCompactIDs+1)
	for i := range long {
		long[i] = fmt.Sprint(i)
	}
	for _, c := range []*CompactTasks{{}, {IDs: long}, {IDs: []string{""}}, {IDs: []string{strings.Repeat("x", 2000)}}} {
		if _, err := Encode(c); !errors.Is(err, ErrInvalidCmd) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("Encode(%d ids) = %v, want ErrInvalidCmd or ErrTooLarge", len(c.IDs), err)
		}
	}
}

// TestLeaderCompactsPastRetention: the leader's pass finds what ended
// before now - Retention on a real node and compacts it through Raft.
func TestLeaderCompactsPastRetention(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Now())
	cfg := testConfig(t, t.TempDir(), clock)
	cfg.Retention = time.Hour
	n := openLeader(t, cfg)
	ctx := context.Background()
	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("\x00asm"), Now: 1}); err != nil {
		t.Fatal(err)
	}
	for i := range 300 { // more than one CompactTasks holds
		id := fmt.Sprintf("t%03d", i)
		if _, err := n.Apply(ctx, &SubmitTask{Task: Task{ID: id, Agent: "doc", Version: "v1"}, Now: clock.Now().UnixNano()}); err != nil {
			t.Fatal(err)
		}
		if _, err := n.Apply(ctx, &CancelTask{TaskID: id, Reason: "test", Now: clock.Now().UnixNano()}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.compactExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if ts, _ := n.FSM().Tasks(TaskFilter{}); len(ts) != 300 {
		t.Fatalf("compacted before retention passed: %d tasks left", len(ts))
	}
	clock.Add(time.Hour + time.Second)
	if err := n.compactExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if ts, _ := n.FSM().Tasks(TaskFilter{}); len(ts) != 0 {
		t.Fatalf("%d tasks left after retention", len(ts))
	}
}
