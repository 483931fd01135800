package cluster

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"testing"
)

// Tasks answers from the order index exactly what a scan of every task
// record answers, for every filter and order, through submissions, state
// changes and compaction (which deletes records, and shrinks the index).
func TestTaskListMatchesScan(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	h.runThrough("done", 0, 40)
	for i := range 2 { // two dead letters, for the class filter
		id := fmt.Sprintf("bad-%d", i)
		h.submit(id, RetryPolicy{}, int64(50+i))
		c := h.claim(int64(50 + i))
		h.ok(&FailAttempt{TaskID: id, Token: c.Lease.Token, Now: int64(50 + i), Error: TaskError{Class: ClassPermanent, Message: "bad"}})
	}
	for i := range 5 {
		h.submit(fmt.Sprintf("queued-%d", i), RetryPolicy{}, int64(100+i))
	}
	h.claim(200) // queued-0 runs
	scan := func(fl TaskFilter) []string {
		ts, err := decodeAll(h.fsm, []byte("t/"), fl.match)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(ts, func(a, b Task) int { return cmp.Compare(a.Seq, b.Seq) })
		if fl.Newest {
			slices.Reverse(ts)
		}
		if fl.Limit > 0 && len(ts) > fl.Limit {
			ts = ts[:fl.Limit]
		}
		return ids(ts)
	}
	check := func(when string, wantTotal int) {
		t.Helper()
		for _, fl := range []TaskFilter{
			{}, {Newest: true}, {Limit: 7}, {Newest: true, Limit: 7},
			{State: StateQueued}, {State: StateRunning, Newest: true}, {State: StateSucceeded, Limit: 3},
			{Agent: "doc", Since: 10, Until: 102}, {Agent: "other"}, {Since: 1000},
			{Class: ClassPermanent}, {Class: ClassPermanent, Newest: true, Limit: 1},
			{UpdatedSince: 51}, {State: StateDeadLetter, UpdatedUntil: 51, Limit: 1}, {UpdatedSince: 100, UpdatedUntil: 101},
		} {
			got, err := h.fsm.Tasks(fl)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := ids(got), scan(fl); !slices.Equal(g, w) {
				t.Errorf("%s: Tasks(%+v) = %v, scan %v", when, fl, g, w)
			}
		}
		for _, fl := range []TaskFilter{{}, {Limit: 1}, {Class: ClassPermanent, UpdatedSince: 51}, {Agent: "other"}} {
			got, err := h.fsm.DeadLetters(fl)
			if err != nil {
				t.Fatal(err)
			}
			fl.State = StateDeadLetter
			if g, w := ids(got), scan(fl); !slices.Equal(g, w) {
				t.Errorf("%s: DeadLetters(%+v) = %v, scan %v", when, fl, g, w)
			}
		}
		if all, _ := h.fsm.Tasks(TaskFilter{}); len(all) != wantTotal {
			t.Errorf("%s: %d tasks listed, want %d", when, len(all), wantTotal)
		}
		indexesAgree(t, h.fsm)
	}
	check("after submissions", 47)
	var old []string
	for i := range 30 {
		old = append(old, fmt.Sprintf("done-%d", i))
	}
	if res := h.ok(&CompactTasks{IDs: old, Before: 1 << 40, Now: 300}).(CompactResult); len(res.Compacted) != 30 {
		t.Fatalf("compacted %d of 30: %+v", len(res.Compacted), res)
	}
	check("after compaction", 17)
	if n := len(h.fsm.idx.order.bySeq); n > 2*17 {
		t.Errorf("the order keeps %d entries for 17 tasks: deletions are never dropped", n)
	}
}

func ids(ts []Task) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.ID)
	}
	return out
}

// LeaseToken follows the task's lease as entries apply: the claim's token
// while it runs, 0 once it is done, and a new token for a new claim.
func TestLeaseTokenFollowsClaims(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	if _, ok := h.fsm.LeaseToken("nope"); ok {
		t.Fatal("an unknown task has a lease token")
	}
	h.submit("a", RetryPolicy{MaxAttempts: 3}, 1)
	if tok, ok := h.fsm.LeaseToken("a"); !ok || tok != 0 {
		t.Fatalf("queued: token %d, %v; want 0, true", tok, ok)
	}
	c := h.claim(2)
	if tok, _ := h.fsm.LeaseToken("a"); tok != c.Lease.Token || tok == 0 {
		t.Fatalf("running: token %d, want the claim's %d", tok, c.Lease.Token)
	}
	h.ok(&RenewLease{TaskID: "a", Token: c.Lease.Token, TTL: c.Lease.TTL, Now: 3})
	if tok, _ := h.fsm.LeaseToken("a"); tok != c.Lease.Token {
		t.Fatalf("after a renewal: token %d, want %d", tok, c.Lease.Token)
	}
	h.ok(&ExpireLease{TaskID: "a", Token: c.Lease.Token, Now: 1 << 50})
	if tok, _ := h.fsm.LeaseToken("a"); tok != 0 {
		t.Fatalf("after expiry: token %d, want 0", tok)
	}
	indexesAgree(t, h.fsm)
}

// RunnableCount counts what a claim at now could take: queued tasks and
// retries that are due, not retries still backing off nor running tasks.
func TestRunnableCount(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	for i := range 3 {
		h.submit(fmt.Sprintf("t%d", i), RetryPolicy{MaxAttempts: 3}, int64(i+1))
	}
	if n := h.fsm.RunnableCount(10); n != 3 {
		t.Fatalf("3 queued: RunnableCount = %d", n)
	}
	if n := h.fsm.RunnableCount(1); n != 1 {
		t.Fatalf("at the first submission: RunnableCount = %d, want 1", n)
	}
	c := h.claim(10)
	if n := h.fsm.RunnableCount(10); n != 2 {
		t.Fatalf("one running: RunnableCount = %d, want 2", n)
	}
	h.ok(&FailAttempt{TaskID: c.Task.ID, Token: c.Lease.Token, Error: TaskError{Class: ClassTransient, Message: "later"}, Jitter: math.MaxUint64, Now: 10 * sec})
	next := h.task(c.Task.ID).NextAt
	if n := h.fsm.RunnableCount(next - 1); n != 2 {
		t.Fatalf("one backing off: RunnableCount = %d, want 2", n)
	}
	if n := h.fsm.RunnableCount(next); n != 3 {
		t.Fatalf("the retry due: RunnableCount = %d, want 3", n)
	}
	if at, ok := h.fsm.NextRunnableAt(); !ok || h.fsm.RunnableCount(at) < 1 {
		t.Fatalf("NextRunnableAt %d, %v: RunnableCount there must count it", at, ok)
	}
}
