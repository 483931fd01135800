package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// harness feeds commands to an FSM as a Raft log would, without Raft.
type harness struct {
	t   testing.TB
	fsm *FSM
	idx uint64
	log []*raft.Log // everything applied, for replaying into another FSM
}

func newFSM(t testing.TB) *FSM {
	t.Helper()
	// The smallest memtable Open allows: the cheapest, and the tightest
	// Badger transaction the FSM must stay under.
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).WithMemTableSize(MinBadgerMemTableSize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f, err := NewFSM(db, nil)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func newHarness(t testing.TB) *harness {
	return &harness{t: t, fsm: newFSM(t)}
}

// apply feeds c to the FSM unchecked (marshal, not Encode), so Apply's own
// refusals are what tests see.
func (h *harness) apply(c Command) any {
	h.t.Helper()
	data, err := marshal(c)
	if err != nil {
		h.t.Fatal(err)
	}
	h.idx++
	l := &raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: data}
	h.log = append(h.log, l)
	return h.fsm.Apply(l)
}

func (h *harness) ok(c Command) any {
	h.t.Helper()
	resp := h.apply(c)
	if err, isErr := resp.(error); isErr {
		h.t.Fatalf("%T: %v", c, err)
	}
	return resp
}

func (h *harness) task(id string) Task {
	h.t.Helper()
	tk, err := h.fsm.Task(id)
	if err != nil {
		h.t.Fatal(err)
	}
	return tk
}

const sec = int64(time.Second)

func (h *harness) agent(name, version string, module string) {
	h.t.Helper()
	h.ok(&PutAgent{Agent: Agent{Name: name, Version: version, Manifest: AgentManifest{Tools: []string{"http"}}}, Module: []byte(module), Now: 1})
}

func (h *harness) submit(id string, p RetryPolicy, now int64) Task {
	h.t.Helper()
	r := h.ok(&SubmitTask{Task: Task{ID: id, Agent: "doc", Version: "v1", Input: json.RawMessage(`{"n":1}`), Policy: p}, Now: now})
	return r.(SubmitResult).Task
}

func (h *harness) claim(now int64) *Claim {
	h.t.Helper()
	r := h.ok(&ClaimTask{Node: "n1", TTL: 30 * time.Second, Now: now})
	if r == nil {
		return nil
	}
	return r.(*Claim)
}

func TestLifecycleRetryThenSucceed(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{MaxAttempts: 3}, 10*sec)

	c := h.claim(10 * sec)
	if c == nil || c.Task.ID != "t1" || c.Lease.Token != h.idx || c.Task.Attempts != 1 {
		t.Fatalf("claim = %+v", c)
	}
	if h.claim(10*sec) != nil {
		t.Fatal("a running task was claimed twice")
	}
	h.ok(&FailAttempt{TaskID: "t1", Token: c.Lease.Token, Error: TaskError{Class: ClassTransient, Message: "records: 503"}, Jitter: math.MaxUint64, Now: 11 * sec})
	tk := h.task("t1")
	if tk.State != StateRetryPending || tk.NextAt != 12*sec {
		// Jitter at its maximum gives the full first ceiling: 1 s.
		t.Fatalf("after transient failure: state %s next_at %d", tk.State, tk.NextAt)
	}
	if h.claim(12*sec-1) != nil {
		t.Fatal("claimed before next_at")
	}
	c2 := h.claim(12 * sec)
	if c2 == nil || c2.Task.Attempts != 2 || c2.Lease.Token <= c.Lease.Token {
		t.Fatalf("second claim = %+v", c2)
	}
	// The first worker wakes up and tries to write: fenced out.
	for _, cmd := range []Command{
		&RenewLease{TaskID: "t1", Token: c.Lease.Token, TTL: time.Second, Now: 13 * sec},
		&RecordIntent{TaskID: "t1", Token: c.Lease.Token, CallID: "x", Tool: "http", Now: 13 * sec},
		&CompleteTask{TaskID: "t1", Token: c.Lease.Token, Output: json.RawMessage(`"stale"`), Now: 13 * sec},
		// These read only the task's head (fencedHead).
		&RecordResult{TaskID: "t1", Token: c.Lease.Token, CallID: "y", Tool: "http", Status: "ok", Result: json.RawMessage(`1`), Now: 13 * sec},
		&ClearIntent{TaskID: "t1", Token: c.Lease.Token, CallID: "x", Now: 13 * sec},
		&StageWrite{TaskID: "t1", Token: c.Lease.Token, Write: KVWrite{Key: "k", Value: json.RawMessage(`1`)}, Now: 13 * sec},
		&AppendJournal{TaskID: "t1", Token: c.Lease.Token, Events: []Event{{Type: EventCall}}, Now: 13 * sec},
	} {
		if err, _ := h.apply(cmd).(error); !errors.Is(err, ErrStaleToken) {
			t.Fatalf("%T with a stale token: %v, want ErrStaleToken", cmd, err)
		}
	}
	if n := h.fsm.FenceRejections(); n != 7 {
		t.Fatalf("fence rejections = %d, want 7", n)
	}
	if err, _ := h.apply(&RecordResult{TaskID: "nope", Token: 1, CallID: "y", Tool: "http", Status: "ok", Result: json.RawMessage(`1`), Now: 13 * sec}).(error); !errors.Is(err, ErrNotFound) {
		t.Fatalf("RecordResult for no task: %v, want ErrNotFound", err)
	}
	// The current holder's result is recorded with the attempt it read.
	if rec, ok := h.ok(&RecordResult{TaskID: "t1", Token: c2.Lease.Token, CallID: "y", Tool: "http", Status: "ok", Result: json.RawMessage(`1`), Now: 13 * sec}).(LedgerRecord); !ok || rec.Attempt != 2 || rec.Token != c2.Lease.Token {
		t.Fatalf("RecordResult by the holder = %+v", rec)
	}
	h.ok(&StageWrite{TaskID: "t1", Token: c2.Lease.Token, Write: KVWrite{Key: "invoice/7", Value: json.RawMessage(`{"total":3}`)}, Now: 13 * sec})
	if _, ok, _ := h.fsm.KV("invoice/7"); ok {
		t.Fatal("staged write visible before completion")
	}
	h.ok(&CompleteTask{TaskID: "t1", Token: c2.Lease.Token, Output: json.RawMessage(`{"ok":true}`),
		Outbox: []Effect{{Tool: "notify", Params: json.RawMessage(`{}`), Key: "k"}}, Now: 14 * sec})
	tk = h.task("t1")
	if tk.State != StateSucceeded || string(tk.Output) != `{"ok":true}` || tk.Lease != nil || len(tk.History) != 2 {
		t.Fatalf("after complete: %+v", tk)
	}
	if v, ok, _ := h.fsm.KV("invoice/7"); !ok || string(v) != `{"total":3}` {
		t.Fatalf("staged write after completion: %s %v", v, ok)
	}
	if eff, _ := h.fsm.PendingEffects(); len(eff) != 1 || eff[0].Tool != "notify" {
		t.Fatalf("outbox = %+v", eff)
	}
	if ls, _ := h.fsm.Leases(); len(ls) != 0 {
		t.Fatalf("leases left after completion: %+v", ls)
	}
	ev, _ := h.fsm.Journal("t1")
	var types []string
	for _, e := range ev {
		types = append(types, string(e.Type))
	}
	want := []string{"submitted", "leased", "attempt_failed", "retry_scheduled", "leased", "succeeded"}
	if !equal(types, want) {
		t.Fatalf("journal = %v, want %v", types, want)
	}
}

func TestDeadLetterPaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		class     ErrorClass
		attempts  int // failures before the DLQ
		wantClass ErrorClass
	}{
		{"permanent at once", ClassPermanent, 1, ClassPermanent},
		{"policy at once", ClassPolicy, 1, ClassPolicy},
		{"in doubt at once", ClassInDoubt, 1, ClassInDoubt},
		{"transient until exhausted", ClassTransient, 3, ClassExhausted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			h.agent("doc", "v1", "m1")
			h.submit("t", RetryPolicy{MaxAttempts: 3, Base: time.Second}, 0)
			now := int64(0)
			for i := 0; i < tt.attempts; i++ {
				now += 10 * time.Minute.Nanoseconds()
				c := h.claim(now)
				if c == nil {
					t.Fatalf("attempt %d: nothing to claim", i+1)
				}
				h.ok(&FailAttempt{TaskID: "t", Token: c.Lease.Token, Error: TaskError{Class: tt.class, Message: "boom", StderrTail: "panic: boom"}, Jitter: 1 << 63, Now: now})
			}
			tk := h.task("t")
			if tk.State != StateDeadLetter || tk.Error == nil || tk.Error.Class != tt.wantClass || tk.Attempts != tt.attempts {
				t.Fatalf("task = %s, %+v, attempts %d", tk.State, tk.Error, tk.Attempts)
			}
			if tk.Error.StderrTail != "panic: boom" {
				t.Fatalf("stderr tail lost: %+v", tk.Error)
			}
			if dl, _ := h.fsm.DeadLetters(TaskFilter{}); len(dl) != 1 {
				t.Fatalf("DLQ = %d entries", len(dl))
			}
			if h.claim(now+int64(time.Hour)) != nil {
				t.Fatal("a dead-lettered task was claimed")
			}
			// Retry from the DLQ onto a new version: attempts reset, ledger kept.
			if err, _ := h.apply(&RetryDLQ{TaskID: "t", Version: "v9"}).(error); !errors.Is(err, ErrUnknownAgent) {
				t.Fatalf("retry onto a missing version: %v", err)
			}
			h.agent("doc", "v2", "m2")
			h.ok(&RetryDLQ{TaskID: "t", Version: "v2", Now: now})
			tk = h.task("t")
			if tk.State != StateQueued || tk.Attempts != 0 || tk.Version != "v2" {
				t.Fatalf("after DLQ retry: %+v", tk)
			}
			if dl, _ := h.fsm.DeadLetters(TaskFilter{}); len(dl) != 0 {
				t.Fatalf("DLQ after retry = %d entries", len(dl))
			}
		})
	}
}

func TestLeaseExpiryCountsAsAttempt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{MaxAttempts: 2}, 0)
	c := h.claim(0)
	// Not yet expired: a no-op.
	if r := h.ok(&ExpireLease{TaskID: "t", Token: c.Lease.Token, Now: 29 * sec}); r != nil {
		t.Fatalf("early expiry applied: %+v", r)
	}
	// A renewal moves the expiry, so an expiry computed from the old one is a no-op.
	h.ok(&RenewLease{TaskID: "t", Token: c.Lease.Token, TTL: 30 * time.Second, Now: 20 * sec})
	if r := h.ok(&ExpireLease{TaskID: "t", Token: c.Lease.Token, Now: 31 * sec}); r != nil {
		t.Fatal("expiry applied to a renewed lease")
	}
	h.ok(&ExpireLease{TaskID: "t", Token: c.Lease.Token, Now: 50 * sec})
	if tk := h.task("t"); tk.State != StateRetryPending || tk.History[0].Outcome != string(ClassExpired) {
		t.Fatalf("after expiry: %+v", tk)
	}
	c2 := h.claim(int64(time.Hour))
	h.ok(&ExpireLease{TaskID: "t", Token: c2.Lease.Token, Now: 2 * int64(time.Hour)})
	if tk := h.task("t"); tk.State != StateDeadLetter || tk.Error.Class != ClassExhausted {
		t.Fatalf("a module that kills its worker must end in the DLQ: %+v", tk)
	}
}

func TestExtendLeases(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{}, 0)
	c := h.claim(0) // expires at 30 s
	if n := h.ok(&ExtendLeases{Now: 10 * sec}); n != 1 {
		t.Fatalf("extended %v leases", n)
	}
	ls, _ := h.fsm.Leases()
	if len(ls) != 1 || ls[0].ExpiresAt != 40*sec || ls[0].Token != c.Lease.Token {
		t.Fatalf("leases = %+v", ls)
	}
	if exp, _ := h.fsm.ExpiredLeases(39 * sec); len(exp) != 0 {
		t.Fatalf("expired before the extension ran out: %+v", exp)
	}
}

func TestSubmitIdempotencyKeyAndOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	if err, _ := h.apply(&SubmitTask{Task: Task{ID: "x", Agent: "nope", Version: "v1"}}).(error); !errors.Is(err, ErrUnknownAgent) {
		t.Fatalf("unknown agent: %v", err)
	}
	first := h.ok(&SubmitTask{Task: Task{ID: "a", Agent: "doc", Version: "v1", IdempotencyKey: "order-7"}, Now: 5}).(SubmitResult)
	again := h.ok(&SubmitTask{Task: Task{ID: "b", Agent: "doc", Version: "v1", IdempotencyKey: "order-7"}, Now: 6}).(SubmitResult)
	if !again.Existing || again.Task.ID != "a" || first.Existing {
		t.Fatalf("same key gave %+v", again)
	}
	if _, err := h.fsm.Task("b"); !errors.Is(err, ErrNotFound) {
		t.Fatal("a second task was created for the same key")
	}
	h.submit("c", RetryPolicy{}, 1) // earlier time, later submission
	if c := h.claim(10); c.Task.ID != "c" {
		t.Fatalf("oldest runnable first: got %s", c.Task.ID)
	}
	if c := h.claim(10); c.Task.ID != "a" {
		t.Fatalf("then: got %s", c.Task.ID)
	}
}

func TestLedgerIntentResult(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{}, 0)
	c := h.claim(0)
	if err, _ := h.apply(&RecordResult{TaskID: "t", Token: c.Lease.Token, CallID: "c1", Status: "ok"}).(error); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("result without intent: %v", err)
	}
	h.ok(&RecordIntent{TaskID: "t", Token: c.Lease.Token, CallID: "c1", Tool: "ocr", Now: 1})
	rec, ok, _ := h.fsm.LedgerRecord("t", "c1")
	if !ok || rec.HasResult || rec.Tool != "ocr" {
		t.Fatalf("intent = %+v", rec)
	}
	h.ok(&RecordResult{TaskID: "t", Token: c.Lease.Token, CallID: "c1", Status: "ok", Result: json.RawMessage(`"text"`), Now: 2})
	// A second result for the same call keeps the first.
	h.ok(&RecordResult{TaskID: "t", Token: c.Lease.Token, CallID: "c1", Status: "ok", Result: json.RawMessage(`"other"`), Now: 3})
	rec, _, _ = h.fsm.LedgerRecord("t", "c1")
	if !rec.HasResult || string(rec.Result) != `"text"` {
		t.Fatalf("result = %+v", rec)
	}
	// Intent for a call that has a result returns the result.
	r := h.ok(&RecordIntent{TaskID: "t", Token: c.Lease.Token, CallID: "c1", Tool: "ocr", Now: 4}).(LedgerRecord)
	if !r.HasResult {
		t.Fatal("intent over a recorded result did not return it")
	}
}

func TestReplaySkipsAppliedAndUnknown(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{}, 0)
	before, _ := h.fsm.Hash()
	// Re-deliver every entry (a restart replaying the log): nothing changes.
	for _, l := range h.log {
		h.fsm.Apply(l)
	}
	after, _ := h.fsm.Hash()
	if before != after {
		t.Fatal("re-applying old entries changed state")
	}
	h.idx++
	if r := h.fsm.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: []byte{byte(IgnoreUnknownFlag | 0x7f), '{', '}'}}); r != nil {
		t.Fatalf("ignorable unknown command: %v", r)
	}
	h.idx++
	if err, _ := h.fsm.Apply(&raft.Log{Index: h.idx, Type: raft.LogCommand, Data: []byte{0x7f}}).(error); !errors.Is(err, ErrInvalidCmd) {
		t.Fatalf("unknown command without the ignore bit: %v", err)
	}
	if h.fsm.AppliedIndex() != h.idx {
		t.Fatalf("applied index %d, want %d", h.fsm.AppliedIndex(), h.idx)
	}
}

// TestDeterminism: two FSMs fed the same log end byte-identical, and a
// snapshot restored into a third gives the same hash.
func TestDeterminism(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	if _, err := ProposeAgent(context.Background(), harnessProposer{h}, Agent{Name: "doc", Version: "v1"}, bytes.Repeat([]byte("w"), 3*moduleChunk+5), 1); err != nil {
		t.Fatal(err)
	}
	for i, id := range []string{"a", "b", "c", "d"} {
		h.submit(id, RetryPolicy{MaxAttempts: 2}, int64(i))
	}
	c := h.claim(10)
	h.ok(&RecordIntent{TaskID: c.Task.ID, Token: c.Lease.Token, CallID: "k", Tool: "ocr", Now: 11})
	h.ok(&RecordResult{TaskID: c.Task.ID, Token: c.Lease.Token, CallID: "k", Status: "ok", Result: json.RawMessage(`{"b":1}`), Now: 12})
	h.ok(&FailAttempt{TaskID: c.Task.ID, Token: c.Lease.Token, Error: TaskError{Class: ClassTransient, Message: "x"}, Jitter: 12345, Now: 13})
	c = h.claim(14)
	h.ok(&CompleteTask{TaskID: c.Task.ID, Token: c.Lease.Token, Output: json.RawMessage(`1`), Now: 15})
	c = h.claim(16)
	h.ok(&ExtendLeases{Now: 17})
	h.ok(&CancelTask{TaskID: "d", Now: 18})

	other := newFSM(t)
	other.ApplyBatch(h.log)
	want, _ := h.fsm.Hash()
	got, _ := other.Hash()
	if want != got {
		t.Fatalf("replicas diverged: %s vs %s", want, got)
	}

	snap, err := h.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	sink := &memSink{Buffer: &buf}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	snap.Release()
	restored := newFSM(t)
	restored.ApplyBatch(h.log[:3]) // state to be replaced
	if err := restored.Restore(nopCloser{bytes.NewReader(buf.Bytes())}); err != nil {
		t.Fatal(err)
	}
	if got, _ := restored.Hash(); got != want {
		t.Fatalf("restored hash %s, want %s", got, want)
	}
	if restored.AppliedIndex() != h.idx {
		t.Fatalf("restored applied index %d, want %d", restored.AppliedIndex(), h.idx)
	}
	mod, err := restored.Module(func() string { a, _ := restored.Agent("doc", "v1"); return a.Digest }())
	if err != nil || len(mod) != 3*moduleChunk+5 {
		t.Fatalf("module after restore: %d bytes, %v", len(mod), err)
	}
	// The in-memory indexes agree with Badger everywhere: as maintained by
	// Apply, rebuilt on open, and rebuilt after a restore.
	fresh := newIndexes()
	if err := fresh.rebuild(h.fsm.db); err != nil {
		t.Fatal(err)
	}
	for _, f := range []*FSM{h.fsm, other, restored} {
		indexesAgree(t, f)
	}
	if len(fresh.runq.all()) != 1 || len(fresh.leases.all()) != 1 {
		t.Fatalf("expected one runnable task and one lease, got %v %v", fresh.runq.all(), fresh.leases.all())
	}
	// A corrupted snapshot is refused.
	bad := bytes.Clone(buf.Bytes())
	bad[len(bad)/2] ^= 0xff
	if err := newFSM(t).Restore(nopCloser{bytes.NewReader(bad)}); err == nil {
		t.Fatal("corrupted snapshot restored")
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := DefaultRetryPolicy()
	wantCeil := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, 64 * time.Second, 128 * time.Second, 256 * time.Second, 5 * time.Minute, 5 * time.Minute}
	for i, w := range wantCeil {
		if got := BackoffCeiling(p, i+1); got != w {
			t.Errorf("ceiling(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := BackoffCeiling(p, 1000); got != 5*time.Minute {
		t.Errorf("ceiling(1000) = %s", got)
	}
	if Backoff(p, 3, 0) != 0 || Backoff(p, 3, math.MaxUint64) != 4*time.Second {
		t.Errorf("jitter bounds: %s %s", Backoff(p, 3, 0), Backoff(p, 3, math.MaxUint64))
	}
	if mid := Backoff(p, 3, 1<<63); mid < 1999*time.Millisecond || mid > 2001*time.Millisecond {
		t.Errorf("half jitter = %s, want ~2s", mid)
	}
}

type memSink struct{ *bytes.Buffer }

func (memSink) ID() string    { return "mem" }
func (memSink) Cancel() error { return nil }
func (memSink) Close() error  { return nil }

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLargeModuleInChunks: a 20 MiB module goes through Raft in chunks and
// comes back whole; missing chunks are refused, not stored half.
func TestLargeModuleInChunks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	module := bytes.Repeat([]byte("0123456789abcdef"), 20<<20/16)
	module[12345] = 'X'
	ag, err := ProposeAgent(context.Background(), harnessProposer{h}, Agent{Name: "big", Version: "v1"}, module, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := h.fsm.Module(ag.Digest)
	if err != nil || !bytes.Equal(got, module) {
		t.Fatalf("module round trip: %d bytes, %v", len(got), err)
	}
	if err, _ := h.apply(&PutAgent{Agent: Agent{Name: "big", Version: "v2", Digest: strings.Repeat("ab", 32), Size: 3 * ModuleChunkSize}}).(error); !errors.Is(err, ErrInvalidCmd) {
		t.Fatalf("agent over missing chunks: %v", err)
	}
	if err, _ := h.apply(&PutAgent{Agent: Agent{Name: "big", Version: "v3"}, Module: module[:MaxInlineModule+1]}).(error); !errors.Is(err, ErrInvalidCmd) || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized inline module: %v", err)
	}
	// An entry past MaxCommandBytes is refused whole, before it is decoded.
	if err, _ := h.apply(&PutAgent{Agent: Agent{Name: "big", Version: "v3"}, Module: module}).(error); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("entry over MaxCommandBytes: %v", err)
	}
}

type harnessProposer struct{ h *harness }

func (p harnessProposer) Apply(_ context.Context, c Command) (any, error) {
	r := p.h.apply(c)
	if err, ok := r.(error); ok {
		return nil, err
	}
	return r, nil
}
