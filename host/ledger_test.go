package host

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/examples/standins"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

func startStandins(t *testing.T) *standins.Services {
	t.Helper()
	s, err := standins.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func docTools(t *testing.T, s *standins.Services) []plugins.Tool {
	t.Helper()
	h, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"127.0.0.1"}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	m, err := plugins.NewModel(plugins.ModelConfig{BaseURL: s.URL + "/v1", APIKey: "k", Model: "standin-1", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return []plugins.Tool{h, m}
}

func docInput(s *standins.Services, doc string) map[string]string {
	return map[string]string{"document": s.URL + "/blobs/" + doc, "ocr_url": s.URL + "/ocr", "records_url": s.URL + "/records"}
}

// TestDocPipelineReplaysFromLedger is the problem statement: the record write
// fails twice with a 503, then succeeds. OCR and each model call happen once;
// the retries replay them from the ledger. The agent runs as a command and,
// built from the same source, as a pre-initialized reactor: the executor
// cannot tell them apart.
func TestDocPipelineReplaysFromLedger(t *testing.T) {
	t.Parallel()
	for _, build := range []string{"docpipeline", "docpipeline-reactor"} {
		t.Run(build, func(t *testing.T) {
			t.Parallel()
			testDocPipelineReplaysFromLedger(t, build)
		})
	}
}

func testDocPipelineReplaysFromLedger(t *testing.T, build string) {
	if build == "docpipeline-reactor" {
		wasm, err := os.ReadFile(agentPath(t, build))
		if err != nil {
			t.Fatal(err)
		}
		m, err := runtime(t).Compile(context.Background(), wasm)
		if err != nil || m.Kind() != sandbox.ModuleReactor || m.Preinitialized() != nil {
			t.Fatalf("reactor build: %v; kind %v, pre-initialized: %v", err, m.Kind(), m.Preinitialized())
		}
	}
	s := startStandins(t)
	s.FailNextRecords(2)
	e := newEnv(t, docTools(t, s))
	e.pushAgent("docpipeline", "v1", agentPath(t, build), "http", "model")
	policy := cluster.RetryPolicy{MaxAttempts: 8, Base: 50 * time.Millisecond, Factor: 2, Cap: time.Second}
	e.submit("doc-1", "docpipeline", "v1", docInput(s, "invoice-1.txt"), policy)

	tk := e.wait("doc-1", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded {
		t.Fatalf("task ended %s: %+v", tk.State, tk.Error)
	}
	c := s.Counts()
	if c.Blob != 1 || c.OCR != 1 || c.Model != 2 || c.Records != 3 || c.RecordEffects != 1 {
		t.Fatalf("stand-in counts = %+v; want blob 1, ocr 1, model 2, records 3 requests and 1 record", c)
	}
	if tk.Attempts != 3 || len(tk.History) != 3 {
		t.Fatalf("attempts = %d, history %+v", tk.Attempts, tk.History)
	}
	for i, h := range tk.History[:2] {
		ceil := cluster.BackoffCeiling(policy, i+1)
		if h.Delay < 0 || time.Duration(h.Delay) > ceil {
			t.Errorf("attempt %d: delay %s outside [0, %s]", i+1, time.Duration(h.Delay), ceil)
		}
		if gap := tk.History[i+1].StartedAt - h.EndedAt; gap < h.Delay {
			t.Errorf("attempt %d started %s after the failure, before its backoff %s", i+2, time.Duration(gap), time.Duration(h.Delay))
		}
		if h.Outcome != string(cluster.ClassTransient) {
			t.Errorf("attempt %d outcome %q", i+1, h.Outcome)
		}
	}
	var out struct {
		Class  string          `json:"class"`
		Record json.RawMessage `json:"record"`
	}
	if err := json.Unmarshal(tk.Output, &out); err != nil || out.Class != "invoice" || !strings.Contains(string(out.Record), "rec-1") {
		t.Fatalf("output = %s (%v)", tk.Output, err)
	}
	got := callOutcomes(e.journal("doc-1"))
	want := map[string]map[CallOutcome]int{
		"http":  {OutcomeInvoked: 3, OutcomeReplayed: 4, OutcomeError: 2}, // blob, ocr, records
		"model": {OutcomeInvoked: 2, OutcomeReplayed: 4},
	}
	for tool, w := range want {
		for outcome, n := range w {
			if got[tool][outcome] != n {
				t.Errorf("journal: %s %s = %d, want %d (all: %v)", tool, outcome, got[tool][outcome], n, got)
			}
		}
	}
	// Token usage is recorded with the result, so replays cost nothing.
	calls, _ := e.node.FSM().Calls("doc-1")
	models := 0
	for _, rec := range calls {
		if rec.Tool == "model" {
			models++
			if !strings.Contains(string(rec.Usage), "prompt_tokens") {
				t.Errorf("model call %s recorded no usage: %s", rec.CallID, rec.Usage)
			}
		}
	}
	if models != 2 {
		t.Errorf("ledger holds %d model calls, want 2", models)
	}
}

// TestPoisonReachesDLQAfterMaxAttempts: a guest that traps every time ends in
// the DLQ after exactly max_attempts, with history, last error and stderr.
func TestPoisonReachesDLQAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.pushAgent("poison", "v1", agentPath(t, "trap"))
	e.submit("p", "poison", "v1", nil, cluster.RetryPolicy{MaxAttempts: 3, Base: 10 * time.Millisecond})
	tk := e.wait("p", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	if tk.State != cluster.StateDeadLetter || tk.Attempts != 3 || len(tk.History) != 3 {
		t.Fatalf("task = %s after %d attempts (history %d)", tk.State, tk.Attempts, len(tk.History))
	}
	if tk.Error.Class != cluster.ClassExhausted || !strings.Contains(tk.Error.Message, "trap") {
		t.Fatalf("error = %+v", tk.Error)
	}
	if !strings.Contains(tk.Error.StderrTail, "poison: about to trap") {
		t.Fatalf("stderr tail = %q", tk.Error.StderrTail)
	}
	if dl, _ := e.node.FSM().DeadLetters(cluster.TaskFilter{}); len(dl) != 1 || dl[0].ID != "p" {
		t.Fatalf("DLQ = %+v", dl)
	}
}

// TestLongTaskKeepsItsLease: a task running 5×TTL with renewals is never
// re-leased.
func TestLongTaskKeepsItsLease(t *testing.T) {
	t.Parallel()
	ttl := time.Second
	var invocations atomic.Int32
	sleep := plugins.NewStub("sleep", plugins.Idempotent, func(ctx context.Context, _ plugins.Call) (plugins.Result, error) {
		invocations.Add(1)
		select {
		case <-time.After(5 * ttl):
		case <-ctx.Done():
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "cancelled")
		}
		return plugins.Result{Body: json.RawMessage(`"rested"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{sleep}, withTTL(ttl))
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "sleep")
	e.submit("long", "steps", "v1", map[string]any{"steps": []any{map[string]any{"tool": "sleep"}}}, cluster.RetryPolicy{})
	tk := e.wait("long", settle, cluster.StateSucceeded, cluster.StateDeadLetter, cluster.StateRetryPending)
	if tk.State != cluster.StateSucceeded || tk.Attempts != 1 || len(tk.History) != 1 || invocations.Load() != 1 {
		t.Fatalf("task %s, attempts %d, history %+v, invocations %d", tk.State, tk.Attempts, tk.History, invocations.Load())
	}
	for _, ev := range e.journal("long") {
		if ev.Type == "lease_expired" {
			t.Fatalf("lease expired during a renewed task: %+v", ev)
		}
	}
}

// TestFencingRejectsPausedWorker: a worker paused past its TTL wakes and
// tries to record a result and complete; both are refused and the task's
// outcome is the new holder's.
func TestFencingRejectsPausedWorker(t *testing.T) {
	t.Parallel()
	release, entered := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	block := plugins.NewStub("block", plugins.Idempotent, func(ctx context.Context, c plugins.Call) (plugins.Result, error) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release // the first holder is "paused" here
			return plugins.Result{Body: json.RawMessage(`"from A"`)}, nil
		}
		return plugins.Result{Body: json.RawMessage(`"from B"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{block}, withTTL(500*time.Millisecond))
	e.pool.Stop(time.Second) // drive the two workers by hand
	e.pool = nil
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "block")
	e.submit("f", "steps", "v1", map[string]any{"steps": []any{map[string]any{"tool": "block"}}}, cluster.RetryPolicy{Base: time.Millisecond})

	// A's lease is long, so a slow machine cannot expire it before A is
	// inside the tool; then it is expired as the leader would.
	claimA := e.apply(&cluster.ClaimTask{Node: "A", TTL: time.Hour, Now: time.Now().UnixNano()}).(*cluster.Claim)
	paused := NewExecutor(e.node, runtime(t), e.tools, time.Now, e.log)
	paused.renewEvery = time.Hour // a paused process renews nothing
	repA := make(chan AttemptReport, 1)
	go func() { repA <- paused.Run(context.Background(), claimA) }()
	select {
	case <-entered:
	case <-time.After(60 * time.Second):
		t.Fatal("A never reached the tool")
	}
	// The commands' clock is an hour ahead from here: past A's lease.
	later := claimA.Lease.ExpiresAt + 1
	e.apply(&cluster.ExpireLease{TaskID: "f", Token: claimA.Lease.Token, Now: later})

	// The lease is gone; B claims (once the retry's backoff has passed on
	// that clock) and finishes.
	e.wait("f", 10*time.Second, cluster.StateRetryPending)
	claimB, ok := e.apply(&cluster.ClaimTask{Node: "B", TTL: time.Hour, Now: later + int64(time.Minute)}).(*cluster.Claim)
	if !ok {
		t.Fatal("B could not claim the task")
	}
	if claimB.Lease.Token <= claimA.Lease.Token {
		t.Fatalf("tokens did not increase: A %d, B %d", claimA.Lease.Token, claimB.Lease.Token)
	}
	if rep := e.exec.Run(context.Background(), claimB); !rep.Succeeded {
		t.Fatalf("B's attempt: %+v", rep)
	}
	before := e.node.FSM().FenceRejections()
	close(release)
	rep := <-repA
	if !rep.LeaseLost || rep.Succeeded {
		t.Fatalf("A's report = %+v, want lease lost", rep)
	}
	if e.node.FSM().FenceRejections() <= before {
		t.Fatal("A's result was not refused by the FSM")
	}
	tk := e.wait("f", time.Second, cluster.StateSucceeded)
	if !strings.Contains(string(tk.Output), "from B") {
		t.Fatalf("output = %s, want B's", tk.Output)
	}
	rec, _, _ := e.node.FSM().LedgerRecord("f", CallID("f", "block", []byte("null"), "", 0))
	if string(rec.Result) != `"from B"` || rec.Token != claimB.Lease.Token {
		t.Fatalf("ledger = %+v", rec)
	}
}

// TestDivergenceIsJournaled: a fixed agent that makes a different call at
// the same point is recorded as a divergence, and the unchanged call is still
// replayed from the ledger.
func TestDivergenceIsJournaled(t *testing.T) {
	t.Parallel()
	var echoes, flaky atomic.Int32
	echo := plugins.NewStub("echo", plugins.Idempotent, func(_ context.Context, c plugins.Call) (plugins.Result, error) {
		echoes.Add(1)
		return plugins.Result{Body: c.Params}, nil
	})
	fl := plugins.NewStub("flaky", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		if flaky.Add(1) == 1 {
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "try later")
		}
		return plugins.Result{Body: json.RawMessage(`"ok"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{echo, fl})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "echo", "flaky")
	e.pushAgent("steps", "v2", agentPath(t, "steps-b"), "echo", "flaky")
	in := map[string]any{"steps": []any{map[string]any{"tool": "echo", "params": map[string]any{"a": 1}}, map[string]any{"tool": "flaky"}}}
	e.submit("d", "steps", "v1", in, cluster.RetryPolicy{MaxAttempts: 1})
	e.wait("d", settle, cluster.StateDeadLetter)
	e.apply(&cluster.RetryDLQ{TaskID: "d", Version: "v2", Now: time.Now().UnixNano()})
	tk := e.wait("d", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded {
		t.Fatalf("after retry on v2: %s %+v", tk.State, tk.Error)
	}
	if echoes.Load() != 2 { // echo{a} once (replayed on v2), echo{variant b} once
		t.Fatalf("echo invoked %d times, want 2", echoes.Load())
	}
	var div []cluster.Event
	for _, ev := range e.journal("d") {
		if ev.Type == "divergence" {
			div = append(div, ev)
		}
	}
	if len(div) != 1 || div[0].Tool != "echo" || div[0].Attempt != 1 {
		t.Fatalf("divergence events = %+v", div)
	}
	if got := callOutcomes(e.journal("d"))["echo"]; got[OutcomeReplayed] != 1 || got[OutcomeInvoked] != 2 {
		t.Fatalf("echo outcomes = %v", got)
	}
}

// TestDeniedToolFailsClosed: a tool outside the manifest is refused, the
// refusal is journaled, and the task goes to the DLQ as a policy failure.
func TestDeniedToolFailsClosed(t *testing.T) {
	t.Parallel()
	var invoked atomic.Int32
	secret := plugins.NewStub("secret", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		invoked.Add(1)
		return plugins.Result{Body: json.RawMessage(`1`)}, nil
	})
	e := newEnv(t, []plugins.Tool{secret})
	e.pushAgent("steps", "v1", agentPath(t, "steps")) // allows no tools
	e.submit("x", "steps", "v1", map[string]any{"steps": []any{map[string]any{"tool": "secret"}}}, cluster.RetryPolicy{})
	tk := e.wait("x", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	if tk.State != cluster.StateDeadLetter || tk.Error.Class != cluster.ClassPolicy || invoked.Load() != 0 {
		t.Fatalf("task %s %+v; tool invoked %d times", tk.State, tk.Error, invoked.Load())
	}
	if got := callOutcomes(e.journal("x"))["secret"][OutcomeDenied]; got != 1 {
		t.Fatalf("denied calls journaled = %d", got)
	}
}

// TestNowIsRecorded: the guest's clock reading is a ledger entry, and the
// value recorded is the value the guest saw.
func TestNowIsRecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []plugins.Tool{failsOnce("flaky")})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "flaky")
	// The steps agent calls flaky first, then reads now: attempt 1 fails
	// before reading it, attempt 2 records one reading.
	e.submit("n", "steps", "v1", map[string]any{"now": true, "steps": []any{map[string]any{"tool": "flaky"}}}, cluster.RetryPolicy{Base: time.Millisecond})
	tk := e.wait("n", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded {
		t.Fatalf("task %s %+v", tk.State, tk.Error)
	}
	clock := clockRecords(e, "n")
	var out []json.RawMessage
	json.Unmarshal(tk.Output, &out)
	if len(clock) != 1 || len(out) != 2 || string(out[1]) != string(clock[0].Result) {
		t.Fatalf("clock records %+v, output %s", clock, tk.Output)
	}
}

// TestNowIsReplayed: a clock reading taken before a failing call is
// replayed by the retry, so the guest sees the same time in both attempts.
func TestNowIsReplayed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, []plugins.Tool{failsOnce("flaky")})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "flaky")
	e.submit("r", "steps", "v1", map[string]any{"now_first": true, "steps": []any{map[string]any{"tool": "flaky"}}}, cluster.RetryPolicy{Base: 20 * time.Millisecond})
	tk := e.wait("r", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || tk.Attempts != 2 {
		t.Fatalf("task %s after %d attempts, %+v", tk.State, tk.Attempts, tk.Error)
	}
	clock := clockRecords(e, "r")
	var out []json.RawMessage
	json.Unmarshal(tk.Output, &out)
	// One reading, taken by attempt 1, and what attempt 2 output.
	if len(clock) != 1 || clock[0].Attempt != 1 || len(out) != 2 || string(out[0]) != string(clock[0].Result) {
		t.Fatalf("clock records %+v, output %s", clock, tk.Output)
	}
}

// failsOnce is an idempotent tool whose first call fails transiently.
func failsOnce(name string) plugins.Tool {
	var n atomic.Int32
	return plugins.NewStub(name, plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		if n.Add(1) == 1 {
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "later")
		}
		return plugins.Result{Body: json.RawMessage(`0`)}, nil
	})
}

// clockRecords are the task's recorded clock readings.
func clockRecords(e *env, taskID string) []cluster.LedgerRecord {
	calls, _ := e.node.FSM().Calls(taskID)
	var clock []cluster.LedgerRecord
	for _, c := range calls {
		if c.Tool == nowTool {
			clock = append(clock, c)
		}
	}
	return clock
}

func abiCanonical(b []byte) ([]byte, error) { return abi.Canonicalize(b) }

// TestStagedWritesVisibleOnlyOnSuccess: kv puts are staged through Raft and
// become visible to others only when the task completes; the retry replays
// the recorded put instead of staging it again.
func TestStagedWritesVisibleOnlyOnSuccess(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	var n atomic.Int32
	fl := plugins.NewStub("flaky", plugins.Idempotent, func(ctx context.Context, _ plugins.Call) (plugins.Result, error) {
		if n.Add(1) == 1 {
			<-gate // hold attempt 1 here while the test looks
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "later")
		}
		return plugins.Result{Body: json.RawMessage(`0`)}, nil
	})
	e := newEnv(t, nil)
	backend, err := NewKVBackend(e.node, func() int64 { return time.Now().UnixNano() })
	if err != nil {
		t.Fatal(err)
	}
	kv := plugins.NewKV(backend)
	if err := e.tools.Register(kv); err != nil {
		t.Fatal(err)
	}
	if err := e.tools.Register(fl); err != nil {
		t.Fatal(err)
	}
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "kv", "flaky")
	put := map[string]any{"tool": "kv", "params": map[string]any{"op": "put", "key": "invoice/9", "value": map[string]any{"total": 3}}}
	get := map[string]any{"tool": "kv", "params": map[string]any{"op": "get", "key": "invoice/9"}}
	e.submit("kv", "steps", "v1", map[string]any{"steps": []any{put, get, map[string]any{"tool": "flaky"}}}, cluster.RetryPolicy{Base: time.Millisecond})

	// Attempt 1 has staged its put and is blocked in flaky.
	for n.Load() == 0 {
		<-e.node.FSM().Changed()
	}
	if _, ok, _ := e.node.FSM().KV("invoice/9"); ok {
		t.Fatal("staged write visible before the task completed")
	}
	close(gate)
	tk := e.wait("kv", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || tk.Attempts != 2 {
		t.Fatalf("task %s after %d attempts: %+v", tk.State, tk.Attempts, tk.Error)
	}
	if v, ok, _ := e.node.FSM().KV("invoice/9"); !ok || string(v) != `{"total":3}` {
		t.Fatalf("committed value = %s %v", v, ok)
	}
	var out []json.RawMessage
	json.Unmarshal(tk.Output, &out)
	if len(out) != 3 || !strings.Contains(string(out[1]), `"found":true`) {
		t.Fatalf("the task did not read its own staged write: %s", tk.Output)
	}
	if got := callOutcomes(e.journal("kv"))["kv"]; got[OutcomeReplayed] != 2 || got[OutcomeInvoked] != 2 {
		t.Fatalf("kv outcomes = %v", got)
	}
}

// TestOutboxDispatchesOnceAfterSuccess: an effect emitted by an attempt that
// failed is never sent; the one emitted by the attempt that succeeded is sent
// once, with its own idempotency key, after the task committed.
func TestOutboxDispatchesOnceAfterSuccess(t *testing.T) {
	t.Parallel()
	type sent struct{ key, task string }
	got := make(chan sent, 10)
	notify := plugins.NewStub("notify", plugins.Idempotent, func(_ context.Context, c plugins.Call) (plugins.Result, error) {
		got <- sent{c.ID, c.TaskID}
		return plugins.Result{Body: json.RawMessage(`{"ok":true}`)}, nil
	})
	var n atomic.Int32
	fl := plugins.NewStub("flaky", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		if n.Add(1) == 1 {
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "later")
		}
		return plugins.Result{Body: json.RawMessage(`0`)}, nil
	})
	e := newEnv(t, []plugins.Tool{notify, fl})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ob, err := NewOutbox(e.node, e.tools, e.node.IsLeader, OutboxConfig{Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer ob.Stop()
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "notify", "flaky")
	in := map[string]any{"emit": []any{map[string]any{"tool": "notify", "params": map[string]any{"text": "done"}}},
		"steps": []any{map[string]any{"tool": "flaky"}}}
	e.submit("o", "steps", "v1", in, cluster.RetryPolicy{Base: time.Millisecond})
	e.wait("o", settle, cluster.StateSucceeded)
	first := <-got
	if first.task != "o" || first.key == "" {
		t.Fatalf("sent %+v", first)
	}
	// Wait until the effect is marked done, then make sure nothing else went out.
	for {
		changed := e.node.FSM().Changed()
		eff, _ := e.node.FSM().Outbox("o")
		if len(eff) == 1 && eff[0].Done {
			if eff[0].Key != first.key {
				t.Fatalf("dispatched key %s, recorded %s", first.key, eff[0].Key)
			}
			break
		}
		<-changed
	}
	select {
	case extra := <-got:
		t.Fatalf("effect sent twice: %+v", extra)
	default:
	}
	if n.Load() != 2 {
		t.Fatalf("flaky invoked %d times", n.Load())
	}
}
