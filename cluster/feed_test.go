package cluster

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// recorder collects what a state listener hears.
type recorder struct{ batches []StateBatch }

func (r *recorder) hear(b StateBatch) {
	b.Changes = append([]StateChange(nil), b.Changes...)
	r.batches = append(r.batches, b)
}

func (r *recorder) changes() []StateChange {
	var out []StateChange
	for _, b := range r.batches {
		out = append(out, b.Changes...)
	}
	return out
}

// Every state change is heard once, in order, with IDs that increase, and
// a renewal (a write of the record with the same state) is not a change.
func TestListenStatesHearsEveryChange(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	var r recorder
	stop := h.fsm.ListenStates(r.hear)
	defer stop()

	h.submit("t1", RetryPolicy{MaxAttempts: 2}, sec)
	c := h.claim(sec)
	h.ok(&RenewLease{TaskID: "t1", Token: c.Lease.Token, TTL: time.Minute, Now: 2 * sec})
	h.ok(&FailAttempt{TaskID: "t1", Token: c.Lease.Token, Error: TaskError{Class: ClassTransient, Message: "503"}, Jitter: math.MaxUint64, Now: 3 * sec})
	c = h.claim(10 * sec)
	h.ok(&FailAttempt{TaskID: "t1", Token: c.Lease.Token, Error: TaskError{Class: ClassPermanent, Message: "bad"}, Now: 11 * sec})
	h.ok(&RetryDLQ{TaskID: "t1", Now: 12 * sec})
	if _, isErr := h.apply(&DiscardDLQ{TaskID: "t1", Reason: "x", Now: 13 * sec}).(error); !isErr {
		t.Fatal("discard of a queued task was not refused")
	}
	h.ok(&CancelTask{TaskID: "t1", Reason: "enough", Now: 14 * sec})

	type step struct{ from, to TaskState }
	want := []step{{"", StateQueued}, {StateQueued, StateRunning}, {StateRunning, StateRetryPending},
		{StateRetryPending, StateRunning}, {StateRunning, StateDeadLetter}, {StateDeadLetter, StateQueued}, {StateQueued, StateCancelled}}
	got := r.changes()
	if len(got) != len(want) {
		t.Fatalf("heard %d changes, want %d: %+v", len(got), len(want), got)
	}
	var last uint64
	for i, c := range got {
		if c.From != want[i].from || c.To != want[i].to || c.TaskID != "t1" || c.Agent != "doc" || c.Version != "v1" {
			t.Errorf("change %d = %+v, want %s -> %s", i, c, want[i].from, want[i].to)
		}
		if c.ID <= last {
			t.Errorf("change %d ID %d not after %d", i, c.ID, last)
		}
		last = c.ID
	}
	if got[4].Class != ClassPermanent || got[4].Attempt != 2 {
		t.Errorf("dead-letter change = %+v, want class permanent, attempt 2", got[4])
	}
	stop()
	stop()
	h.submit("t2", RetryPolicy{}, 20*sec)
	if n := len(r.changes()); n != len(want) {
		t.Fatalf("a stopped listener heard more: %d changes", n)
	}
}

// Changes of several entries in one batch come in entry order; a refused
// entry's change is not heard, the others' are.
func TestListenStatesBatchAndRefusal(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	var r recorder
	defer h.fsm.ListenStates(r.hear)()
	var logs []*raft.Log
	for i, id := range []string{"a", "b", "c"} {
		data, err := marshal(&SubmitTask{Task: Task{ID: id, Agent: "doc", Version: "v1"}, Now: int64(i+1) * sec})
		if err != nil {
			t.Fatal(err)
		}
		h.idx++
		logs = append(logs, &raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data})
	}
	h.fsm.ApplyBatch(logs)
	got := r.changes()
	if len(got) != 3 || got[0].TaskID != "a" || got[1].TaskID != "b" || got[2].TaskID != "c" {
		t.Fatalf("batch changes = %+v", got)
	}
	if got[0].ID != logs[0].Index<<16 || got[2].ID != logs[2].Index<<16 {
		t.Fatalf("IDs %d, %d; want the entries' index << 16", got[0].ID, got[2].ID)
	}
	h.fsm.lim.entryOps = 1 // a claim writes several keys: refused
	if _, isErr := h.apply(&ClaimTask{Node: "n1", TTL: time.Minute, Now: 5 * sec}).(error); !isErr {
		t.Fatal("claim over the lowered write limit was not refused")
	}
	if n := len(r.changes()); n != 3 {
		t.Fatalf("a refused claim was heard: %+v", r.changes()[3:])
	}
}

// A restore is heard as a reset.
func TestListenStatesResetOnRestore(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	h.submit("a", RetryPolicy{}, sec)
	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := memSink{&bytes.Buffer{}}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	other := newHarness(t)
	var r recorder
	defer other.fsm.ListenStates(r.hear)()
	if err := other.fsm.Restore(nopCloser{bytes.NewReader(sink.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if len(r.batches) != 1 || !r.batches[0].Reset || r.batches[0].Applied != h.idx {
		t.Fatalf("after restore heard %+v, want one reset at %d", r.batches, h.idx)
	}
}

// A transaction begun before the first listener noted nothing: its
// commit is heard as a reset up to its index, never as silence.
func TestListenStatesTxBeforeListener(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "module")
	tx := h.fsm.newTx()
	var r recorder
	defer h.fsm.ListenStates(r.hear)()
	data, err := marshal(&SubmitTask{Task: Task{ID: "a", Agent: "doc", Version: "v1"}, Now: sec})
	if err != nil {
		t.Fatal(err)
	}
	h.idx++
	l := &raft.Log{Index: h.idx, Type: raft.LogCommand, Data: data}
	h.fsm.applyEntry(tx, l)
	tx.putApplied(l.Index)
	h.fsm.commit(tx, l.Index)
	if len(r.batches) != 1 || !r.batches[0].Reset || r.batches[0].Applied != l.Index || len(r.batches[0].Changes) != 0 {
		t.Fatalf("heard %+v, want one reset at %d", r.batches, l.Index)
	}
	h.submit("b", RetryPolicy{}, 2*sec)
	if c := r.changes(); len(c) != 1 || c[0].TaskID != "b" {
		t.Fatalf("after the reset heard %+v, want task b queued", c)
	}
}
