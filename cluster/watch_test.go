package cluster

import (
	"context"
	"sync"
	"testing"
	"time"
)

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// A watch of task A is woken by A's changes only, after they are readable.
func TestWatchTaskWakesOnlyItsTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	a, b := h.fsm.WatchTask("a"), h.fsm.WatchTask("b")
	defer a.Stop()
	defer b.Stop()

	chA, chB := a.Changed(), b.Changed()
	h.submit("b", RetryPolicy{}, 1*sec) // creates b: wakes b, not a
	if !closed(chB) {
		t.Fatal("b's watch not woken by b's submission")
	}
	if closed(chA) {
		t.Fatal("a's watch woken by a change of b")
	}
	h.ok(&AppendJournal{TaskID: "b", Events: []Event{{Type: EventLog, Message: "x"}}, Now: 2 * sec})
	if closed(chA) {
		t.Fatal("a's watch woken by a journal line of b")
	}

	h.submit("a", RetryPolicy{}, 3*sec) // a does not exist until now: a follower's wait needs that
	if !closed(chA) {
		t.Fatal("a's watch not woken by a's submission")
	}
	chA, chB = a.Changed(), b.Changed()
	if closed(chA) {
		t.Fatal("Changed after a wake-up returned a closed channel")
	}
	c := h.claim(4 * sec) // claims b (submitted first)
	if c.Task.ID != "b" || closed(chA) || !closed(chB) {
		t.Fatalf("claim of %s: a woken %v, b woken %v", c.Task.ID, closed(chA), closed(chB))
	}
	chA = a.Changed()
	c = h.claim(5 * sec)
	if c.Task.ID != "a" || !closed(chA) {
		t.Fatalf("claim of %s did not wake a's watch", c.Task.ID)
	}
	// The woken waiter reads the change that woke it.
	if tk := h.task("a"); tk.State != StateRunning {
		t.Fatalf("a is %s after the wake-up, want running", tk.State)
	}
	chA = a.Changed()
	h.ok(&CompleteTask{TaskID: "a", Token: c.Lease.Token, Output: []byte(`1`), Now: 6 * sec})
	if !closed(chA) || h.task("a").State != StateSucceeded {
		t.Fatal("a's completion did not wake its watch")
	}
}

// A refused entry is rolled back and wakes nobody.
func TestWatchTaskNotWokenByRefusedEntry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	h.submit("a", RetryPolicy{}, sec)
	w := h.fsm.WatchTask("a")
	defer w.Stop()
	ch := w.Changed()
	h.fsm.lim.entryOps = 1 // a claim writes several keys: refused
	if _, isErr := h.apply(&ClaimTask{Node: "n1", TTL: time.Minute, Now: 2 * sec}).(error); !isErr {
		t.Fatal("claim over the lowered write limit was not refused")
	}
	if closed(ch) {
		t.Fatal("a refused claim woke the task's watch")
	}
}

// Entries go when their last watch stops; a stopped watch's Changed is
// closed, so a loop that forgets it does not hang; Stop twice is safe.
func TestWatchTaskEntriesBounded(t *testing.T) {
	t.Parallel()
	f := newFSM(t)
	w1, w2 := f.WatchTask("x"), f.WatchTask("x")
	w3 := f.WatchTask("never-submitted")
	if n := f.watches.watched(); n != 2 {
		t.Fatalf("%d tasks watched, want 2", n)
	}
	w1.Stop()
	if n := f.watches.watched(); n != 2 {
		t.Fatalf("after one of two watches of x stopped: %d tasks watched, want 2", n)
	}
	w2.Stop()
	w2.Stop()
	w3.Stop()
	if n := f.watches.watched(); n != 0 {
		t.Fatalf("after every watch stopped: %d tasks watched, want 0", n)
	}
	if !closed(w1.Changed()) {
		t.Fatal("a stopped watch's Changed blocks")
	}
}

// Waiters whose contexts end return and leave nothing behind, while the
// FSM keeps applying.
func TestWatchTaskWaitersLeaveNoTrace(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	started := make(chan struct{}, 50)
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := h.fsm.WatchTask(string(rune('A' + i%5)))
			defer w.Stop()
			started <- struct{}{}
			for {
				select {
				case <-w.Changed():
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for range 50 {
		<-started
	}
	for i := range 5 {
		h.submit(string(rune('A'+i)), RetryPolicy{}, int64(i+1)*sec)
	}
	cancel()
	wg.Wait()
	if n := h.fsm.watches.watched(); n != 0 {
		t.Fatalf("%d tasks still watched after every waiter left", n)
	}
}
