package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// entries encodes commands as consecutive log entries from index first,
// unchecked (marshal), as a faulty or hostile proposer could have.
func entries(t testing.TB, first uint64, cmds ...Command) []*raft.Log {
	t.Helper()
	logs := make([]*raft.Log, len(cmds))
	for i, c := range cmds {
		data, err := marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: data}
	}
	return logs
}

// applyLogs feeds logs to h's FSM as one batch, keeping them for replays.
func (h *harness) applyLogs(logs []*raft.Log) []any {
	h.log = append(h.log, logs...)
	h.idx = logs[len(logs)-1].Index
	return h.fsm.ApplyBatch(logs)
}

func openDiskFSM(t testing.TB, dir string, memtable int64) (*FSM, *badger.DB) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "state")).WithLogger(nil).WithMemTableSize(memtable))
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFSM(db, nil)
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return f, db
}

func indexesAgree(t testing.TB, f *FSM) {
	t.Helper()
	fresh := newIndexes()
	if err := fresh.rebuild(f.db); err != nil {
		t.Fatal(err)
	}
	for i, x := range f.idx.mirrors() {
		if y := fresh.mirrors()[i]; !slices.Equal(x.all(), y.all()) {
			t.Fatalf("index drift in %s: %v vs Badger %v", x.prefix, x.all(), y.all())
		}
	}
	if got, want := countsOf(&f.idx.counts), countsOf(&fresh.counts); !reflect.DeepEqual(got, want) {
		t.Fatalf("task counts drift: %v vs Badger %v", got, want)
	}
	if got, want := orderOf(&f.idx.order), orderOf(&fresh.order); !slices.Equal(got, want) {
		t.Fatalf("task order drift: %v vs Badger %v", got, want)
	}
}

// orderOf is o's live entries, in order, as comparable values.
func orderOf(o *taskOrder) []string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []string
	for _, e := range o.bySeq {
		if !e.deleted {
			out = append(out, fmt.Sprintf("%s@%d %s %s %d lease %d", e.id, e.head.Seq, e.head.Agent, e.head.State, e.head.CreatedAt, e.head.LeaseToken))
		}
	}
	if len(out) != len(o.byID) {
		out = append(out, fmt.Sprintf("(%d live entries, %d by ID)", len(out), len(o.byID)))
	}
	return out
}

// countsOf is a copy of c's counts by agent, empty maps left out.
func countsOf(c *taskCounts) map[string]map[TaskState]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := map[string]map[TaskState]int{}
	for a, m := range c.byAgent {
		if len(m) > 0 {
			out[a] = maps.Clone(m)
		}
	}
	return out
}

// hugeCompletion passes every check a proposer can make (its encoding is
// under MaxCommandBytes, its outbox under MaxEffectsPerTask) yet writes far
// more than one entry may: each of its 10,000 effects is stored under, and
// with, the task's 1,000-byte ID. Only Apply can measure that.
func hugeCompletion(taskID string, token uint64, now int64) *CompleteTask {
	out := make([]Effect, MaxEffectsPerTask)
	for i := range out {
		out[i] = Effect{Tool: "notify", Params: json.RawMessage(`{}`)}
	}
	return &CompleteTask{TaskID: taskID, Token: token, Output: json.RawMessage(`1`), Outbox: out, Now: now}
}

// TestProposalRefusesTooLarge: what the FSM would refuse without reading
// state is refused before it is proposed, naming the limit; nothing reaches
// the log.
func TestProposalRefusesTooLarge(t *testing.T) {
	t.Parallel()
	events := make([]Event, 20_000)
	for i := range events {
		events[i] = Event{Type: "call_denied", Tool: "shell", Message: "tool shell is not in the manifest"}
	}
	tests := []struct {
		name string
		cmd  Command
		want []string
	}{
		{"20k journal events", &CompleteTask{TaskID: "t", Token: 3, Journal: events}, []string{"complete_task", "journal is 20000 events, limit 1024"}},
		{"entry over MaxCommandBytes", &RecordResult{TaskID: "t", Token: 3, CallID: "c", Status: "ok", Result: json.RawMessage(`"` + strings.Repeat("x", 3<<20) + `"`)},
			[]string{"record_result", "command is 3145", fmt.Sprint("limit ", MaxCommandBytes)}},
		{"output", &CompleteTask{TaskID: "t", Output: json.RawMessage(`"` + strings.Repeat("x", MaxOutputBytes) + `"`)}, []string{"output is"}},
		{"40k effects", &CompleteTask{TaskID: "t", Outbox: make([]Effect, 40_000)}, []string{"outbox is 40000 effects"}},
		{"stderr tail", &FailAttempt{TaskID: "t", Error: TaskError{Class: ClassPermanent, StderrTail: strings.Repeat("e", MaxStderrTailBytes+1)}}, []string{"stderr tail"}},
		{"error message", &FailAttempt{TaskID: "t", Error: TaskError{Class: ClassPermanent, Message: strings.Repeat("e", MaxErrorMessageBytes+1)}}, []string{"error message"}},
		{"event detail", &AppendJournal{TaskID: "t", Events: []Event{{Type: "x", Detail: json.RawMessage(`"` + strings.Repeat("d", MaxEventDetailBytes) + `"`)}}}, []string{"detail"}},
		{"kv key", &StageWrite{TaskID: "t", Write: KVWrite{Key: strings.Repeat("k", 70_000)}}, []string{"kv key"}},
		{"task id", &SubmitTask{Task: Task{ID: strings.Repeat("i", MaxNameBytes+1), Agent: "a", Version: "v"}}, []string{"task id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Encode(tt.cmd)
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Encode = %v, want ErrTooLarge", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			// The forward route refuses the same bytes.
			if raw, _ := marshal(tt.cmd); raw != nil {
				if _, err := DecodeCommand(raw); !errors.Is(err, ErrTooLarge) {
					t.Errorf("DecodeCommand = %v, want ErrTooLarge", err)
				}
			}
		})
	}
	// Budgets out of range are refused naming the field.
	_, err := Encode(&SubmitTask{Task: Task{ID: "t", Agent: "a", Version: "v", Budget: Budget{MaxEffects: MaxEffectsPerTask + 1}}})
	if !errors.Is(err, ErrInvalidCmd) || !strings.Contains(err.Error(), "max_effects") {
		t.Fatalf("budget over the ceiling: %v", err)
	}
	// The sentinel survives forwarding.
	rep, _ := NewReply(0, nil, fmt.Errorf("apply: %w", ErrTooLarge))
	if _, err := rep.Decode(); rep.Code != "too_large" || !errors.Is(err, ErrTooLarge) {
		t.Fatalf("forwarded too_large: code %q, %v", rep.Code, err)
	}

	// On a node: refused by Apply's proposer check, and no entry proposed.
	clock := newFakeClock(time.Unix(1000, 0))
	n := openLeader(t, testConfig(t, t.TempDir(), clock))
	defer n.Close()
	before := n.Raft().LastIndex()
	_, idx, err := n.ApplyIndexed(context.Background(), tests[0].cmd)
	if !errors.Is(err, ErrTooLarge) || idx != 0 || !strings.Contains(err.Error(), "apply complete_task") {
		t.Fatalf("ApplyIndexed = index %d, %v", idx, err)
	}
	if after := n.Raft().LastIndex(); after != before {
		t.Fatalf("a refused command was proposed: last index %d -> %d", before, after)
	}
}

// TestApplyRefusesEntryOverWriteLimit: an entry that passed the proposer's
// checks but writes more than an entry may is refused by Apply with
// ErrTooLarge; the entries before and after it in the same batch apply, the
// in-memory indexes match Badger, the observer hears each entry once, and a
// reopened FSM (and one fed the same log entry by entry) has the same state.
func TestApplyRefusesEntryOverWriteLimit(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	f, db := openDiskFSM(t, dir, MinBadgerMemTableSize)
	h := &harness{t: t, fsm: f}
	heard := map[MessageType]int{}
	var mu sync.Mutex
	f.SetObserver(func(typ MessageType, _ any) { mu.Lock(); heard[typ]++; mu.Unlock() })

	long := strings.Repeat("L", MaxNameBytes)
	h.agent("doc", "v1", "m")
	h.ok(&SubmitTask{Task: Task{ID: long, Agent: "doc", Version: "v1"}, Now: 1})
	c := h.claim(2)
	huge := hugeCompletion(long, c.Lease.Token, 5)
	if _, err := Encode(huge); err != nil {
		t.Fatalf("the crafted completion should pass the proposer's checks: %v", err)
	}
	batch := entries(t, h.idx+1,
		&SubmitTask{Task: Task{ID: "b", Agent: "doc", Version: "v1"}, Now: 3},
		&RecordIntent{TaskID: long, Token: c.Lease.Token, CallID: "k", Tool: "http", Now: 4},
		huge,
		&ClaimTask{Node: "n1", TTL: 30 * time.Second, Now: 6},
		&AppendJournal{TaskID: "b", Events: []Event{{Type: "note"}}, Now: 7},
	)
	heardBefore := map[MessageType]int{}
	for k, v := range heard {
		heardBefore[k] = v
	}
	resps := h.applyLogs(batch)

	err, _ := resps[2].(error)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), fmt.Sprintf("complete_task at index %d", batch[2].Index)) {
		t.Fatalf("huge completion: %v, want ErrTooLarge naming the type and index", err)
	}
	for _, i := range []int{0, 1, 4} {
		if err, isErr := resps[i].(error); isErr {
			t.Fatalf("entry %d of the batch: %v", i, err)
		}
	}
	// The claim after the refusal found b: the runnable index was rebuilt
	// and b's submit, rolled back with the transaction, applied again.
	if cl, _ := resps[3].(*Claim); cl == nil || cl.Task.ID != "b" {
		t.Fatalf("claim after the refusal = %+v", resps[3])
	}
	if tk := h.task(long); tk.State != StateRunning || tk.Lease == nil {
		t.Fatalf("the refused completion changed its task: %s", tk.State)
	}
	if out, _ := f.Outbox(long); len(out) != 0 {
		t.Fatalf("%d effects of the refused entry were stored", len(out))
	}
	if _, ok, _ := f.LedgerRecord(long, "k"); !ok {
		t.Fatal("the intent before the refused entry was lost")
	}
	if f.AppliedIndex() != batch[len(batch)-1].Index {
		t.Fatalf("applied index %d, want %d", f.AppliedIndex(), batch[len(batch)-1].Index)
	}
	indexesAgree(t, f)
	ls, _ := f.Leases()
	if len(ls) != 2 {
		t.Fatalf("leases = %+v, want the long task's and b's", ls)
	}
	mu.Lock()
	for _, typ := range []MessageType{MsgSubmitTask, MsgRecordIntent, MsgCompleteTask, MsgClaimTask, MsgAppendJournal} {
		if got := heard[typ] - heardBefore[typ]; got != 1 {
			t.Errorf("observer heard %s %d times, want once", typ, got)
		}
	}
	mu.Unlock()

	// The task's worker can still finish it properly.
	h.ok(&CompleteTask{TaskID: long, Token: c.Lease.Token, Output: json.RawMessage(`2`), Now: 8})
	want, _ := f.Hash()
	applied := f.AppliedIndex()

	// Every replica decides the same, however Raft batched the entries.
	other := newFSM(t)
	for _, l := range h.log {
		other.Apply(l)
	}
	if got, _ := other.Hash(); got != want {
		t.Fatal("a replica applying entry by entry diverged")
	}
	db.Close()
	f2, db2 := openDiskFSM(t, dir, MinBadgerMemTableSize)
	defer db2.Close()
	if got, _ := f2.Hash(); got != want || f2.AppliedIndex() != applied {
		t.Fatalf("after reopening: applied %d (want %d), same hash %v", f2.AppliedIndex(), applied, got == want)
	}
	// Replaying the log over it (a restart) is a no-op, not a panic.
	f2.ApplyBatch(h.log)
	if got, _ := f2.Hash(); got != want {
		t.Fatal("replaying the log changed state")
	}
	indexesAgree(t, f2)
}

// TestApplyBatchSplitsTransactions: a batch whose entries together exceed
// Badger's transaction limit, in bytes or in writes, applies whole.
func TestApplyBatchSplitsTransactions(t *testing.T) {
	t.Parallel()
	big := json.RawMessage(`"` + strings.Repeat("r", 100<<10) + `"`)
	evs := make([]Event, MaxEventsPerEntry)
	for i := range evs {
		evs[i] = Event{Type: "call_denied", Tool: "shell"}
	}
	tests := []struct {
		name    string
		opsOnly bool // commit on the op count alone
		n       int
		cmd     func(i int, token uint64) Command
	}{
		// ~6 MB in 60 results of 100 KiB; Badger takes 5 MB per transaction.
		{"bytes", false, 60, func(i int, token uint64) Command {
			return &RecordResult{TaskID: "t", Token: token, CallID: fmt.Sprint("big-", i), Tool: "http", Status: "ok", Result: big, Now: 2}
		}},
		// 56,320 small events in 55 entries; Badger takes 52,428 writes.
		{"writes", true, 55, func(i int, token uint64) Command {
			return &AppendJournal{TaskID: "t", Token: token, Events: evs, Now: 3}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, db := openDiskFSM(t, t.TempDir(), MinBadgerMemTableSize)
			defer db.Close()
			if tt.opsOnly {
				f.lim.commitBytes = 1 << 40
			}
			h := &harness{t: t, fsm: f}
			h.agent("doc", "v1", "m")
			h.submit("t", RetryPolicy{}, 0)
			c := h.claim(1)
			var cmds []Command
			for i := 0; i < tt.n; i++ {
				cmds = append(cmds, tt.cmd(i, c.Lease.Token))
			}
			for i, r := range h.applyLogs(entries(t, h.idx+1, cmds...)) {
				if err, ok := r.(error); ok {
					t.Fatalf("entry %d: %v", i, err)
				}
			}
			if f.AppliedIndex() != h.idx {
				t.Fatalf("applied %d, want %d", f.AppliedIndex(), h.idx)
			}
			if n := f.txnTooBig.Load(); n != 0 {
				t.Fatalf("Badger refused %d shared transactions: the FSM's count fell below Badger's", n)
			}
			calls, _ := f.Calls("t")
			ev, _ := f.Journal("t")
			if tt.name == "bytes" && len(calls) != tt.n || tt.name == "writes" && len(ev) < tt.n*MaxEventsPerEntry {
				t.Fatalf("%d results and %d events stored", len(calls), len(ev))
			}
		})
	}
}

// TestBadgerRefusalRetriesEntryAlone: should a shared transaction still
// reach Badger's own limit (here the FSM's commit threshold is lifted so it
// does), the entry that hit it is retried alone rather than refused, so
// the outcome does not depend on how the entries were batched.
func TestBadgerRefusalRetriesEntryAlone(t *testing.T) {
	t.Parallel()
	h := newHarness(t) // Badger takes 5 MB per transaction
	h.fsm.lim.commitBytes, h.fsm.lim.commitOps = 1<<40, 1<<40
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{}, 0)
	c := h.claim(1)
	big := json.RawMessage(`"` + strings.Repeat("r", 200<<10) + `"`)
	var cmds []Command
	for i := 0; i < 40; i++ { // 8 MB
		cmds = append(cmds, &RecordResult{TaskID: "t", Token: c.Lease.Token, CallID: fmt.Sprint("c", i), Tool: "http", Status: "ok", Result: big, Now: 2})
	}
	for i, r := range h.applyLogs(entries(t, h.idx+1, cmds...)) {
		if err, ok := r.(error); ok {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if h.fsm.txnTooBig.Load() == 0 {
		t.Fatal("the test did not reach Badger's limit")
	}
	if calls, _ := h.fsm.Calls("t"); len(calls) != 40 {
		t.Fatalf("%d results stored, want 40", len(calls))
	}
	indexesAgree(t, h.fsm)
}

// TestStagedWritesBounded: a task stages at most MaxStagedWrites writes and
// MaxStagedBytes bytes; completing (or cancelling) forgets the count.
func TestStagedWritesBounded(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{}, 0)
	c := h.claim(1)
	var batch []Command
	for i := 0; i < MaxStagedWrites; i++ {
		batch = append(batch, &StageWrite{TaskID: "t", Token: c.Lease.Token, Write: KVWrite{Key: fmt.Sprint("k", i), Value: json.RawMessage(`1`)}, Now: 2})
	}
	for i, r := range h.applyLogs(entries(t, h.idx+1, batch...)) {
		if err, ok := r.(error); ok {
			t.Fatalf("staged write %d: %v", i, err)
		}
	}
	if err, _ := h.apply(&StageWrite{TaskID: "t", Token: c.Lease.Token, Write: KVWrite{Key: "one-more", Value: json.RawMessage(`1`)}, Now: 3}).(error); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("write %d: %v, want ErrTooLarge", MaxStagedWrites+1, err)
	}
	h.ok(&CompleteTask{TaskID: "t", Token: c.Lease.Token, Now: 4})
	if v, ok, _ := h.fsm.KV(fmt.Sprint("k", MaxStagedWrites-1)); !ok || string(v) != "1" {
		t.Fatal("staged writes not applied at completion")
	}
	if _, ok, _ := h.fsm.KV("one-more"); ok {
		t.Fatal("the refused write was applied")
	}

	// Bytes: two writes of half the limit fit, a third byte does not.
	h.submit("u", RetryPolicy{}, 5)
	c = h.claim(5)
	half := json.RawMessage(`"` + strings.Repeat("v", MaxStagedBytes/2-4) + `"`)
	h.ok(&StageWrite{TaskID: "u", Token: c.Lease.Token, Write: KVWrite{Key: "a", Value: half}, Now: 6})
	h.ok(&StageWrite{TaskID: "u", Token: c.Lease.Token, Write: KVWrite{Key: "b", Value: half}, Now: 6})
	if err, _ := h.apply(&StageWrite{TaskID: "u", Token: c.Lease.Token, Write: KVWrite{Key: "c", Value: json.RawMessage(`1234`)}, Now: 6}).(error); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("past MaxStagedBytes: %v", err)
	}
	h.ok(&CancelTask{TaskID: "u", Now: 7})
	if b, _ := h.fsm.rawKey(stageCountKey("u")); b != nil {
		t.Fatal("the staged count outlived its task")
	}
}

// rawKey reads one raw key (tests only).
func (f *FSM) rawKey(key []byte) ([]byte, error) {
	var out []byte
	err := f.db.View(func(txn *badger.Txn) error {
		b, _, err := getRaw(txn, key)
		out = b
		return err
	})
	return out, err
}

// TestBudgetResolvedAtSubmitAndRetry: the task's budget is the manifest's,
// overridden by the submitter's, with defaults; a DLQ retry can grant more;
// an invalid sum is refused naming the field.
func TestBudgetResolvedAtSubmitAndRetry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(&PutAgent{Agent: Agent{Name: "doc", Version: "v1", Manifest: AgentManifest{Budget: Budget{MaxCalls: 50, MaxTokens: 1000}}}, Module: []byte("m"), Now: 1})
	r := h.ok(&SubmitTask{Task: Task{ID: "t", Agent: "doc", Version: "v1", Budget: Budget{MaxTokens: 200}}, Now: 1}).(SubmitResult)
	if b := r.Task.Budget; b.MaxCalls != 50 || b.MaxTokens != 200 || b.MaxEffects != DefaultMaxEffects {
		t.Fatalf("resolved budget = %+v", b)
	}
	if err, _ := h.apply(&SubmitTask{Task: Task{ID: "u", Agent: "doc", Version: "v1", Budget: Budget{MaxCalls: -1}}, Now: 1}).(error); !errors.Is(err, ErrInvalidCmd) || !strings.Contains(err.Error(), "max_calls") {
		t.Fatalf("negative budget: %v", err)
	}
	c := h.claim(2)
	h.ok(&FailAttempt{TaskID: "t", Token: c.Lease.Token, Error: TaskError{Class: ClassBudget, Message: "calls: 50 of 50"}, Now: 3})
	h.ok(&RetryDLQ{TaskID: "t", Budget: Budget{MaxCalls: 500}, Now: 4})
	if b := h.task("t").Budget; b.MaxCalls != 500 || b.MaxTokens != 200 {
		t.Fatalf("budget after a retry granting more = %+v", b)
	}
	// A long-running attempt's journal, flushed in fenced chunks.
	c = h.claim(5)
	h.ok(&AppendJournal{TaskID: "t", Token: c.Lease.Token, Events: []Event{{Type: "call_denied"}}, Now: 6})
	if err, _ := h.apply(&AppendJournal{TaskID: "t", Token: c.Lease.Token - 1, Events: []Event{{Type: "call_denied"}}, Now: 6}).(error); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("journal chunk with a stale token: %v", err)
	}
}

// TestConfigRefusesSmallMemTable: Badger's transactions are 15% of the
// memtable; below the minimum the FSM's largest entry would not fit.
func TestConfigRefusesSmallMemTable(t *testing.T) {
	t.Parallel()
	c := DefaultConfig()
	c.BadgerMemTableSize = 8 << 20
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "BadgerMemTableSize") {
		t.Fatalf("Validate() = %v", err)
	}
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil).WithMemTableSize(MinBadgerMemTableSize / 2))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := NewFSM(db, nil); err == nil || !strings.Contains(err.Error(), "MemTableSize") {
		t.Fatalf("NewFSM over a small Badger = %v", err)
	}
}

// TestClusterRefusesEntryAlike: on three nodes over loopback, an entry only
// Apply can refuse is refused by all three alike (same state hash), and
// they restart clean, one of them rebuilding its state from the Raft log
// alone (the restart that used to panic at the same index every time).
func TestClusterRefusesEntryAlike(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Unix(1000, 0))
	cfgs := make([]Config, 3)
	for i := range cfgs {
		cfgs[i] = testConfig(t, t.TempDir(), clock)
		cfgs[i].NodeID, cfgs[i].Bootstrap = fmt.Sprint("n", i+1), i == 0
		// The defaults' timeouts: three nodes under the race detector on a
		// loaded machine flap with the single-node tests' 100 ms.
		d := DefaultConfig()
		cfgs[i].HeartbeatTimeout, cfgs[i].ElectionTimeout, cfgs[i].LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
	}
	nodes := openNodes(t, cfgs)
	lead := nodes[0]
	if err := lead.WaitLeader(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, c := range cfgs[1:] {
		if err := lead.Raft().AddVoter(raft.ServerID(c.NodeID), raft.ServerAddress(c.RaftAddr), 0, 5*time.Second).Error(); err != nil {
			t.Fatal(err)
		}
	}
	ctx := ctxTimeout(t, 60*time.Second)
	must := func(cmd Command) any {
		t.Helper()
		r, _, err := applyOnLeader(ctx, t, nodes, cmd)
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		return r
	}
	now := func() int64 { return clock.Now().UnixNano() }
	long := strings.Repeat("L", MaxNameBytes)
	must(&PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: now()})
	must(&SubmitTask{Task: Task{ID: long, Agent: "doc", Version: "v1"}, Now: now()})
	c := must(&ClaimTask{Node: "n1", TTL: time.Hour, Now: now()}).(*Claim)
	_, idx, err := applyOnLeader(ctx, t, nodes, hugeCompletion(long, c.Lease.Token, now()))
	for i := 0; i < 5 && errors.Is(err, ErrOutcomeUnknown); i++ {
		// Leadership moved while the entry was in flight. Proposing it
		// again is safe: every replica refuses it, so either way the state
		// is as before, and this time the refusal is seen.
		_, idx, err = applyOnLeader(ctx, t, nodes, hugeCompletion(long, c.Lease.Token, now()))
	}
	if !errors.Is(err, ErrTooLarge) || idx == 0 {
		t.Fatalf("huge completion: index %d, %v; want it committed and refused", idx, err)
	}
	must(&SubmitTask{Task: Task{ID: "b", Agent: "doc", Version: "v1"}, Now: now()})
	cb := must(&ClaimTask{Node: "n1", TTL: time.Hour, Now: now()}).(*Claim)
	if cb.Task.ID != "b" {
		t.Fatalf("claim after the refusal got %s", cb.Task.ID)
	}
	must(&CompleteTask{TaskID: "b", Token: cb.Lease.Token, Output: json.RawMessage(`1`), Now: now()})
	hash := sameState(t, nodes, maxApplied(nodes))

	for _, n := range nodes {
		if err := n.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// n3 loses its state store: it must rebuild it from the log, refusal
	// included, and agree.
	if err := os.RemoveAll(filepath.Join(cfgs[2].DataDir, "state")); err != nil {
		t.Fatal(err)
	}
	nodes = openNodes(t, cfgs)
	// The new leader's first entry (lease extension) changes state: compare
	// the task, then all three hashes after one more command.
	_, idx, err = applyOnLeader(ctx, t, nodes, &CancelTask{TaskID: long, Now: now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.FSM().WaitApplied(ctx, idx); err != nil {
			t.Fatal(err)
		}
		if tk, _ := n.FSM().Task(long); tk.State != StateCancelled || len(tk.History) != 1 || tk.History[0].Outcome != string(StateCancelled) {
			t.Fatalf("%s: the refused completion's task after restart: %s %+v", n.ID(), tk.State, tk.History)
		}
	}
	if got := sameState(t, nodes, maxApplied(nodes)); got == hash {
		t.Fatal("state did not move after the cancel") // sanity: the hashes compare something
	}
}

// applyOnLeader proposes cmd through whichever node leads, trying again
// while no node does or a leader stepped down before enqueuing it.
func applyOnLeader(ctx context.Context, t *testing.T, nodes []*Node, cmd Command) (any, uint64, error) {
	t.Helper()
	for {
		for _, n := range nodes {
			if !n.IsLeader() {
				continue
			}
			r, idx, err := n.ApplyIndexed(ctx, cmd)
			if !errors.Is(err, ErrNotLeader) || errors.Is(err, ErrOutcomeUnknown) {
				return r, idx, err
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%T: no leader took it: %v", cmd, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func maxApplied(nodes []*Node) uint64 {
	var m uint64
	for _, n := range nodes {
		m = max(m, n.FSM().AppliedIndex())
	}
	return m
}

func openNodes(t *testing.T, cfgs []Config) []*Node {
	t.Helper()
	sharePKI(t, cfgs)
	nodes := make([]*Node, len(cfgs))
	for i, c := range cfgs {
		n, err := Open(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			// A Raft that does not stop is a bug to see, not a hang.
			if err := n.Close(); errors.Is(err, ErrShutdownStuck) {
				t.Error(err)
			}
		})
		nodes[i] = n
	}
	return nodes
}

// sameState waits until every node has applied index and checks they hold
// the same state.
func sameState(t *testing.T, nodes []*Node, index uint64) string {
	t.Helper()
	ctx := ctxTimeout(t, 20*time.Second)
	var first string
	for i, n := range nodes {
		if err := n.FSM().WaitApplied(ctx, index); err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		h, err := n.FSM().Hash()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = h
		} else if h != first {
			t.Fatalf("node %d's state differs at index %d", i+1, index)
		}
	}
	return first
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestBoundedFitsTheLimits: what a proposer cuts with Bounded passes Validate.
func TestBoundedFitsTheLimits(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("é", MaxErrorMessageBytes) // two bytes a rune: cut mid-rune
	ev := Event{Type: "call_denied", Tool: big, Message: big, Detail: json.RawMessage(`"` + big + `"`)}.Bounded()
	if err := (&AppendJournal{TaskID: "t", Events: []Event{ev}}).Validate(); err != nil {
		t.Fatalf("bounded event: %v", err)
	}
	if !json.Valid(ev.Detail) || !utf8ValidAll(ev.Tool, ev.Message) {
		t.Fatalf("bounded event is not valid text: %q", ev.Detail)
	}
	te := TaskError{Class: ClassPermanent, Message: big, StderrTail: "start" + big + "panic: end"}.Bounded()
	if err := (&FailAttempt{TaskID: "t", Error: te}).Validate(); err != nil {
		t.Fatalf("bounded error: %v", err)
	}
	if !strings.HasSuffix(te.StderrTail, "panic: end") || !utf8ValidAll(te.Message, te.StderrTail) {
		t.Fatal("the stderr tail must keep its end, on a rune boundary")
	}
}

func utf8ValidAll(ss ...string) bool {
	for _, s := range ss {
		if !utf8.ValidString(s) {
			return false
		}
	}
	return true
}

// sharePKI gives every node of cfgs a certificate from one cluster CA,
// created in the first one's data dir, as a join would (nodes that do not
// bootstrap refuse to start without one). Data dirs that already hold one
// keep it.
func sharePKI(t *testing.T, cfgs []Config) {
	t.Helper()
	ca, err := LoadPKI(cfgs[0].DataDir)
	if err != nil {
		if ca, err = BootstrapPKI(cfgs[0].DataDir, cfgs[0].NodeID, []string{"127.0.0.1"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range cfgs[1:] {
		if _, err := LoadPKI(c.DataDir); err == nil {
			continue
		}
		csr, key, err := NewCSR(c.NodeID)
		if err != nil {
			t.Fatal(err)
		}
		cert, err := ca.Sign(csr, c.NodeID, []string{"127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := InstallPKI(c.DataDir, cert, key, ca.CAPEM(), ca.CAKeyPEM(), ca.JoinToken().String()); err != nil {
			t.Fatal(err)
		}
	}
}
