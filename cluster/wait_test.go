package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

func sleepWait(call string, until int64) Wait {
	return Wait{Kind: WaitSleep, CallID: call, Tool: "orloj.sleep", Until: until}
}

func signalWait(call, name string, until int64) Wait {
	return Wait{Kind: WaitSignal, CallID: call, Tool: "orloj.signal", Signal: name, Until: until}
}

func (h *harness) suspend(id string, token uint64, w Wait, now int64) SuspendResult {
	h.t.Helper()
	return h.ok(&Suspend{TaskID: id, Token: token, Wait: w, Now: now}).(SuspendResult)
}

func (h *harness) record(task, call string) LedgerRecord {
	h.t.Helper()
	rec, ok, err := h.fsm.LedgerRecord(task, call)
	if err != nil || !ok {
		h.t.Fatalf("ledger record %s/%s: ok %v, err %v", task, call, ok, err)
	}
	return rec
}

func (h *harness) dueWakes(now int64) []DueWake {
	h.t.Helper()
	due, err := h.fsm.DueWakes(now, 100)
	if err != nil {
		h.t.Fatal(err)
	}
	return due
}

// TestSleepSuspendFencedAndWokenOnce: a sleep releases the lease at once,
// uses up no attempt, is refused for a stale token, wakes by the leader's
// command exactly once, and replays from the ledger on the next run.
func TestSleepSuspendFencedAndWokenOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{MaxAttempts: 1}, 10*sec)
	c := h.claim(10 * sec)

	// A stale token (an attempt that lost its lease) cannot suspend.
	err, _ := h.apply(&Suspend{TaskID: "t1", Token: c.Lease.Token + 7, Wait: sleepWait("s1", 20*sec), Now: 11 * sec}).(error)
	if !errors.Is(err, ErrStaleToken) {
		t.Fatalf("suspend with a stale token: %v", err)
	}
	res := h.suspend("t1", c.Lease.Token, sleepWait("s1", 20*sec), 11*sec)
	if res.Record != nil {
		t.Fatalf("a future sleep was answered at once: %+v", res.Record)
	}
	tk := h.task("t1")
	if tk.State != StateWaiting || tk.Lease != nil || tk.Attempts != 0 || tk.Wait == nil || tk.Wait.Until != 20*sec || tk.Wait.Token != c.Lease.Token {
		t.Fatalf("after suspend: %+v (wait %+v)", tk, tk.Wait)
	}
	if ls, _ := h.fsm.Leases(); len(ls) != 0 {
		t.Fatalf("leases after suspend: %+v", ls)
	}
	if h.claim(30*sec) != nil {
		t.Fatal("a waiting task was claimed")
	}
	// The old token is gone with the lease: its completion is refused.
	if err, _ := h.apply(&CompleteTask{TaskID: "t1", Token: c.Lease.Token, Now: 12 * sec}).(error); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("complete after suspend: %v", err)
	}
	if due := h.dueWakes(20*sec - 1); len(due) != 0 {
		t.Fatalf("due before the wake time: %+v", due)
	}
	due := h.dueWakes(20 * sec)
	if len(due) != 1 || due[0].TaskID != "t1" || due[0].Token != c.Lease.Token {
		t.Fatalf("due at the wake time: %+v", due)
	}
	// A wake for another wait, or before the time, changes nothing.
	if r := h.ok(&WakeTask{TaskID: "t1", Token: c.Lease.Token + 1, Now: 21 * sec}); r != nil {
		t.Fatalf("wake with another token: %+v", r)
	}
	if r := h.ok(&WakeTask{TaskID: "t1", Token: c.Lease.Token, Now: 19 * sec}); r != nil {
		t.Fatalf("wake before the time: %+v", r)
	}
	if h.task("t1").State != StateWaiting {
		t.Fatal("woken early")
	}
	h.ok(&WakeTask{TaskID: "t1", Token: c.Lease.Token, Now: 21 * sec})
	tk = h.task("t1")
	if tk.State != StateQueued || tk.Wait != nil {
		t.Fatalf("after wake: state %s wait %+v", tk.State, tk.Wait)
	}
	journalBefore, _ := h.fsm.Journal("t1")
	// The second wake (a new leader repeating the pass) is a no-op.
	if r := h.ok(&WakeTask{TaskID: "t1", Token: c.Lease.Token, Now: 22 * sec}); r != nil {
		t.Fatalf("second wake: %+v", r)
	}
	if j, _ := h.fsm.Journal("t1"); len(j) != len(journalBefore) {
		t.Fatalf("second wake journaled: %d events, then %d", len(journalBefore), len(j))
	}
	if due := h.dueWakes(100 * sec); len(due) != 0 {
		t.Fatalf("due after wake: %+v", due)
	}
	rec := h.record("t1", "s1")
	var wr abi.WaitResult
	if rec.Status != "ok" || json.Unmarshal(rec.Result, &wr) != nil || wr.Until != 20*sec || rec.Attempt != 1 || rec.Token != c.Lease.Token {
		t.Fatalf("sleep record: %+v", rec)
	}

	// The next run is the same attempt continued (max_attempts is 1) and
	// the sleep answers from the ledger without suspending.
	c2 := h.claim(22 * sec)
	if c2 == nil || c2.Lease.Attempt != 1 {
		t.Fatalf("claim after wake: %+v", c2)
	}
	res = h.suspend("t1", c2.Lease.Token, sleepWait("s1", 40*sec), 23*sec)
	if res.Record == nil || res.Record.Status != "ok" || h.task("t1").State != StateRunning {
		t.Fatalf("replayed sleep: %+v, state %s", res.Record, h.task("t1").State)
	}
	// A sleep whose time has passed answers at once, too.
	res = h.suspend("t1", c2.Lease.Token, sleepWait("s2", 5*sec), 23*sec)
	if res.Record == nil || h.task("t1").State != StateRunning {
		t.Fatalf("past sleep: %+v", res)
	}
	h.ok(&CompleteTask{TaskID: "t1", Token: c2.Lease.Token, Output: json.RawMessage(`1`), Now: 24 * sec})
	if tk := h.task("t1"); tk.State != StateSucceeded || len(tk.History) != 2 || tk.History[0].Outcome != string(StateWaiting) {
		t.Fatalf("final: %+v", tk)
	}
}

// TestWaitsDoNotUseAttempts: a task with one attempt suspends and wakes
// again and again, and a transient failure after that still gets no retry
// (it had its one attempt).
func TestWaitsDoNotUseAttempts(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{MaxAttempts: 2}, sec)
	now := 2 * sec
	for i := range 5 {
		c := h.claim(now)
		if c == nil || c.Lease.Attempt != 1 {
			t.Fatalf("run %d: claim %+v", i, c)
		}
		call := string(rune('a' + i))
		h.suspend("t1", c.Lease.Token, sleepWait(call, now+sec), now)
		now += sec
		h.ok(&WakeTask{TaskID: "t1", Token: c.Lease.Token, Now: now})
	}
	c := h.claim(now)
	h.ok(&FailAttempt{TaskID: "t1", Token: c.Lease.Token, Error: TaskError{Class: ClassTransient, Message: "503"}, Now: now})
	if tk := h.task("t1"); tk.State != StateRetryPending || tk.Attempts != 1 {
		t.Fatalf("after a failure: state %s attempts %d", tk.State, tk.Attempts)
	}
}

// TestSignalBeforeAndAfterAwait: a signal sent before the await is kept and
// answers the await at once; one sent while the task waits wakes it; both
// become ledger records.
func TestSignalBeforeAndAfterAwait(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)

	// Before: kept, while the task is only queued.
	r := h.ok(&SendSignal{TaskID: "t1", Name: "approved", Payload: json.RawMessage(`{"by":"ana"}`), Now: 2 * sec}).(SignalResult)
	if r.Delivered || r.Duplicate {
		t.Fatalf("early signal: %+v", r)
	}
	if sigs, _ := h.fsm.Signals("t1"); len(sigs) != 1 || sigs[0].Name != "approved" {
		t.Fatalf("kept signals: %+v", sigs)
	}
	c := h.claim(3 * sec)
	res := h.suspend("t1", c.Lease.Token, signalWait("a1", "approved", 0), 4*sec)
	if res.Record == nil || string(res.Record.Result) != `{"by":"ana"}` || h.task("t1").State != StateRunning {
		t.Fatalf("await of a kept signal: %+v", res)
	}
	if sigs, _ := h.fsm.Signals("t1"); len(sigs) != 0 {
		t.Fatalf("a delivered signal is still kept: %+v", sigs)
	}

	// After: the task waits (no deadline, so not in the wake index), and
	// the signal queues it with its payload recorded.
	res = h.suspend("t1", c.Lease.Token, signalWait("a2", "shipped", 0), 5*sec)
	if res.Record != nil || h.task("t1").State != StateWaiting {
		t.Fatalf("await with nothing kept: %+v", res)
	}
	if due := h.dueWakes(1 << 62); len(due) != 0 {
		t.Fatalf("a wait without deadline is due: %+v", due)
	}
	// Another name is kept, not delivered.
	if r := h.ok(&SendSignal{TaskID: "t1", Name: "other", Now: 6 * sec}).(SignalResult); r.Delivered {
		t.Fatal("a signal of another name woke the task")
	}
	r = h.ok(&SendSignal{TaskID: "t1", Name: "shipped", Payload: json.RawMessage(`[1,2]`), Now: 7 * sec}).(SignalResult)
	if !r.Delivered || r.Task.State != StateQueued {
		t.Fatalf("signal to a waiting task: %+v", r)
	}
	if rec := h.record("t1", "a2"); rec.Status != "ok" || string(rec.Result) != `[1,2]` {
		t.Fatalf("signal record: %+v", rec)
	}
	if sigs, _ := h.fsm.Signals("t1"); len(sigs) != 1 || sigs[0].Name != "other" {
		t.Fatalf("kept signals: %+v", sigs)
	}

	// Kept signals of one name are taken in the order they were sent.
	for i, name := range []string{"n", "m", "n"} {
		h.ok(&SendSignal{TaskID: "t1", Name: name, Payload: json.RawMessage(strconv.Itoa(i)), Now: int64(8+i) * sec})
	}
	c = h.claim(12 * sec)
	for i, want := range []string{"0", "2"} {
		res := h.suspend("t1", c.Lease.Token, signalWait("n"+strconv.Itoa(i), "n", 0), 12*sec)
		if res.Record == nil || string(res.Record.Result) != want {
			t.Fatalf("await %d of n: %+v, want %s", i, res.Record, want)
		}
	}
	if sigs, _ := h.fsm.Signals("t1"); len(sigs) != 2 || sigs[0].Name != "other" || sigs[1].Name != "m" {
		t.Fatalf("kept signals after taking both n: %+v", sigs)
	}
}

// TestSignalTimeout: the leader's wake at the deadline answers the await
// with abi.StatusTimeout; a signal after that is only kept.
func TestSignalTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	c := h.claim(2 * sec)
	h.suspend("t1", c.Lease.Token, signalWait("a1", "approved", 10*sec), 3*sec)
	due := h.dueWakes(10 * sec)
	if len(due) != 1 {
		t.Fatalf("due: %+v", due)
	}
	h.ok(&WakeTask{TaskID: "t1", Token: due[0].Token, Now: 10 * sec})
	rec := h.record("t1", "a1")
	if rec.Status != abi.StatusTimeout.String() {
		t.Fatalf("timeout record: %+v", rec)
	}
	if err := abi.DecodeErrorBody(abi.StatusTimeout, rec.Result); !errors.Is(err, abi.StatusTimeout) {
		t.Fatalf("timeout body %s", rec.Result)
	}
	if r := h.ok(&SendSignal{TaskID: "t1", Name: "approved", Now: 11 * sec}).(SignalResult); r.Delivered {
		t.Fatal("a late signal was delivered to a wait that timed out")
	}
	if rec := h.record("t1", "a1"); rec.Status != abi.StatusTimeout.String() {
		t.Fatalf("a late signal changed the answer: %+v", rec)
	}
	// A deadline already passed when the await is reached answers at once.
	h.ok(&CancelTask{TaskID: "t1", Now: 12 * sec})
	h.submit("t2", RetryPolicy{}, 13*sec)
	c = h.claim(13 * sec)
	res := h.suspend("t2", c.Lease.Token, signalWait("b1", "approved", 13*sec), 13*sec)
	if res.Record == nil || res.Record.Status != abi.StatusTimeout.String() {
		t.Fatalf("await past its deadline: %+v", res)
	}
}

// TestSignalKeyDedupe: a resent signal with the same key is delivered once,
// whether the first was kept or delivered.
func TestSignalKeyDedupe(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	send := func(name, key string, now int64) SignalResult {
		return h.ok(&SendSignal{TaskID: "t1", Name: name, Key: key, Payload: json.RawMessage(`1`), Now: now}).(SignalResult)
	}
	if r := send("paid", "evt-1", 2*sec); r.Duplicate {
		t.Fatal("first signal is a duplicate")
	}
	if r := send("paid", "evt-1", 3*sec); !r.Duplicate {
		t.Fatal("resent signal was not a duplicate")
	}
	if sigs, _ := h.fsm.Signals("t1"); len(sigs) != 1 {
		t.Fatalf("kept %d signals, want 1", len(sigs))
	}
	c := h.claim(4 * sec)
	h.suspend("t1", c.Lease.Token, signalWait("a1", "paid", 0), 4*sec) // takes the kept one
	h.suspend("t1", c.Lease.Token, signalWait("a2", "paid", 0), 5*sec) // waits
	if r := send("paid", "evt-1", 6*sec); !r.Duplicate || r.Delivered {
		t.Fatalf("resend to a waiting task: %+v", r)
	}
	if h.task("t1").State != StateWaiting {
		t.Fatal("a duplicate woke the task")
	}
	if r := send("paid", "evt-2", 7*sec); !r.Delivered {
		t.Fatalf("new key: %+v", r)
	}
	if r := send("paid", "evt-2", 8*sec); !r.Duplicate {
		t.Fatalf("resend after delivery: %+v", r)
	}
}

// TestCancelWaitingTask: cancel works on a waiting task and leaves nothing
// to wake; signals to it are then refused. A dead-lettered task keeps a
// signal for its retry.
func TestCancelWaitingTask(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	c := h.claim(2 * sec)
	h.suspend("t1", c.Lease.Token, sleepWait("s1", 10*sec), 3*sec)
	if err, _ := h.apply(&DiscardDLQ{TaskID: "t1", Reason: "x", Now: 4 * sec}).(error); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("discard of a waiting task: %v", err)
	}
	h.ok(&CancelTask{TaskID: "t1", Reason: "not needed", Now: 4 * sec})
	if tk := h.task("t1"); tk.State != StateCancelled || tk.Wait != nil {
		t.Fatalf("after cancel: %+v", tk)
	}
	if due := h.dueWakes(100 * sec); len(due) != 0 {
		t.Fatalf("due after cancel: %+v", due)
	}
	if r := h.ok(&WakeTask{TaskID: "t1", Token: c.Lease.Token, Now: 11 * sec}); r != nil {
		t.Fatalf("wake of a cancelled task: %+v", r)
	}
	if err, _ := h.apply(&SendSignal{TaskID: "t1", Name: "x", Now: 12 * sec}).(error); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("signal to a cancelled task: %v", err)
	}

	// Dead letter: the signal is kept, and the retried task's await takes it.
	h.submit("t2", RetryPolicy{}, 20*sec)
	c = h.claim(20 * sec)
	h.ok(&FailAttempt{TaskID: "t2", Token: c.Lease.Token, Error: TaskError{Class: ClassPermanent, Message: "bug"}, Now: 21 * sec})
	h.ok(&SendSignal{TaskID: "t2", Name: "go", Payload: json.RawMessage(`"now"`), Now: 22 * sec})
	h.ok(&RetryDLQ{TaskID: "t2", Now: 23 * sec})
	c = h.claim(24 * sec)
	if res := h.suspend("t2", c.Lease.Token, signalWait("g", "go", 0), 24*sec); res.Record == nil || string(res.Record.Result) != `"now"` {
		t.Fatalf("await after a DLQ retry: %+v", res)
	}
}

// TestSignalLimits: payload size and kept signals are bounded, refused
// before and in Apply.
func TestSignalLimits(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	big := append(append([]byte(`"`), make([]byte, abi.MaxSignalBytes)...), '"')
	for i := range big[1 : len(big)-1] {
		big[i+1] = 'x'
	}
	if _, err := Encode(&SendSignal{TaskID: "t1", Name: "x", Payload: big}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("huge payload: %v", err)
	}
	for _, bad := range []*SendSignal{
		{TaskID: "t1", Name: "", Payload: json.RawMessage(`1`)},
		{TaskID: "t1", Name: "has space", Payload: json.RawMessage(`1`)},
		{TaskID: "t1", Name: "x", Payload: json.RawMessage(`{`)},
	} {
		if _, err := Encode(bad); !errors.Is(err, ErrInvalidCmd) {
			t.Fatalf("%+v: %v", bad, err)
		}
	}
	for i := range MaxPendingSignals {
		h.ok(&SendSignal{TaskID: "t1", Name: "n", Payload: json.RawMessage(`1`), Now: int64(i)})
	}
	if err, _ := h.apply(&SendSignal{TaskID: "t1", Name: "n", Now: 99}).(error); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("signal past the limit: %v", err)
	}
	if _, err := Encode(&Suspend{TaskID: "t1", Token: 1, Wait: Wait{Kind: "approval?", CallID: "c", Tool: "t"}}); !errors.Is(err, ErrInvalidCmd) {
		t.Fatalf("unknown wait kind: %v", err)
	}
}

// TestWaitsSurviveReplay: the wake index is rebuilt from the log on another
// replica (a restarted node, a new leader), so a wake is not lost.
func TestWaitsSurviveReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	c := h.claim(2 * sec)
	h.suspend("t1", c.Lease.Token, sleepWait("s1", 10*sec), 3*sec)

	other := newHarness(t)
	for _, l := range h.log {
		other.fsm.Apply(l)
	}
	if due := other.dueWakes(10 * sec); len(due) != 1 || due[0].TaskID != "t1" || due[0].Token != c.Lease.Token {
		t.Fatalf("due on the replica: %+v", due)
	}
}

// TestLeaderWakesSleepingTask: the leader's duties commit the wake when
// the clock reaches it.
func TestLeaderWakesSleepingTask(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Unix(1000, 0))
	n := openLeader(t, testConfig(t, t.TempDir(), clock))
	defer n.Close()
	ctx := context.Background()
	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")}); err != nil {
		t.Fatal(err)
	}
	now := clock.Now().UnixNano()
	if _, err := n.Apply(ctx, &SubmitTask{Task: Task{ID: "a", Agent: "doc", Version: "v1"}, Now: now}); err != nil {
		t.Fatal(err)
	}
	r, err := n.Apply(ctx, &ClaimTask{Node: "n1", TTL: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	tok := r.(*Claim).Lease.Token
	if _, err := n.Apply(ctx, &Suspend{TaskID: "a", Token: tok, Wait: sleepWait("s", now+int64(time.Hour)), Now: now}); err != nil {
		t.Fatal(err)
	}
	waitState := func(want TaskState) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			tk, err := n.FSM().Task("a")
			if err == nil && tk.State == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("task state %s, want %s", tk.State, want)
			}
			select {
			case <-n.FSM().Changed():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	waitState(StateWaiting)
	clock.Add(time.Hour)
	waitState(StateQueued)
	if rec, ok, _ := n.FSM().LedgerRecord("a", "s"); !ok || rec.Status != "ok" {
		t.Fatalf("sleep record after the leader's wake: %+v", rec)
	}
}

// TestDueWakesInTimeOrder: the wake index gives the due waits soonest
// first, up to the limit, and none that is not due.
func TestDueWakesInTimeOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	for i, until := range []int64{30, 10, 20, 40} {
		id := "t" + strconv.Itoa(i)
		h.submit(id, RetryPolicy{}, sec)
		c := h.claim(sec)
		h.suspend(id, c.Lease.Token, sleepWait("s", until*sec), 2*sec)
	}
	var got []string
	for _, d := range h.dueWakes(30 * sec) {
		got = append(got, d.TaskID)
	}
	if strings.Join(got, ",") != "t1,t2,t0" {
		t.Fatalf("due at 30 s: %v, want t1,t2,t0", got)
	}
	if due, _ := h.fsm.DueWakes(30*sec, 1); len(due) != 1 || due[0].TaskID != "t1" {
		t.Fatalf("due with limit 1: %+v", due)
	}
	if due := h.dueWakes(10*sec - 1); len(due) != 0 {
		t.Fatalf("due before the first: %+v", due)
	}
}

// TestWakeTaskBatch: one WakeTask ends several waits, each on the terms of
// a single wake (its token, its time come); a wait that is not due, or
// named by another token, is passed over, and the same batch again wakes
// nothing.
func TestWakeTaskBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	tokens := map[string]uint64{}
	for i, id := range []string{"t1", "t2", "t3", "t4"} {
		h.submit(id, RetryPolicy{}, sec)
		c := h.claim(2 * sec)
		until := 10 * sec
		if id == "t4" {
			until = 100 * sec
		}
		h.suspend(c.Task.ID, c.Lease.Token, sleepWait(fmt.Sprint("s", i), until), 3*sec)
		tokens[c.Task.ID] = c.Lease.Token
	}
	cmd := &WakeTask{TaskID: "t1", Token: tokens["t1"], More: []WaitRef{{"t2", tokens["t2"] + 1}, {"t3", tokens["t3"]}, {"t4", tokens["t4"]}}, Now: 20 * sec}
	if n := h.ok(cmd); n != 2 {
		t.Fatalf("woke %v, want 2", n)
	}
	for id, want := range map[string]TaskState{"t1": StateQueued, "t2": StateWaiting, "t3": StateQueued, "t4": StateWaiting} {
		if got := h.task(id).State; got != want {
			t.Errorf("%s is %s, want %s", id, got, want)
		}
	}
	if n := h.ok(cmd); n != 0 {
		t.Fatalf("the same batch again woke %v", n)
	}
	big := &WakeTask{TaskID: "t1", More: make([]WaitRef, MaxWakesPerEntry), Now: 1}
	if err, _ := h.apply(big).(error); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a batch over the limit: %v", err)
	}
}
