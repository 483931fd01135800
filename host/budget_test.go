package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// stepsInput is the steps agent's input: n calls to tool, each with its own
// params so none is a repeat of another.
func stepsInput(tool string, n int) map[string]any {
	steps := make([]map[string]any, n)
	for i := range steps {
		steps[i] = map[string]any{"tool": tool, "params": map[string]int{"i": i}}
	}
	return map[string]any{"steps": steps}
}

func (e *env) submitBudget(id, agent string, input any, b cluster.Budget, p cluster.RetryPolicy) {
	e.t.Helper()
	raw, err := json.Marshal(input)
	if err != nil {
		e.t.Fatal(err)
	}
	e.apply(&cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: agent, Version: "v1", Input: raw, Policy: p, Budget: b},
		Now: time.Now().UnixNano()})
}

var quickRetry = cluster.RetryPolicy{MaxAttempts: 4, Base: 20 * time.Millisecond, Factor: 2, Cap: 100 * time.Millisecond}

// wantBudgetDLQ checks a task went to the DLQ because of the budget kind,
// saying so.
func wantBudgetDLQ(t *testing.T, tk cluster.Task, kind string) {
	t.Helper()
	if tk.State != cluster.StateDeadLetter || tk.Error == nil || tk.Error.Class != cluster.ClassBudget {
		t.Fatalf("task %s ended %s with %+v; want dead_letter, class budget", tk.ID, tk.State, tk.Error)
	}
	if !strings.Contains(tk.Error.Message, kind) {
		t.Fatalf("error %q does not name the %s budget", tk.Error.Message, kind)
	}
}

// TestBudgetCallsTripsBeforeTheTool: with max_calls 3, the fourth call is
// refused before its tool runs, the task dead-letters with class budget on
// its first attempt, and a DLQ retry with more budget continues from the
// ledger: the three recorded calls replay, only the rest are invoked.
func TestBudgetCallsTripsBeforeTheTool(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	e := newEnv(t, []plugins.Tool{countingTool("echo", json.RawMessage(`"ok"`), &n)})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "echo")
	e.submitBudget("b-calls", "steps", stepsInput("echo", 5), cluster.Budget{MaxCalls: 3}, quickRetry)

	tk := e.wait("b-calls", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	wantBudgetDLQ(t, tk, "max_calls 3")
	if !strings.Contains(tk.Error.Message, "call 4 ") {
		t.Fatalf("error %q: want it to name call 4", tk.Error.Message)
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("tool invoked %d times; want 3 (the fourth call is over budget)", got)
	}
	if tk.Attempts != 1 {
		t.Fatalf("attempts = %d; a budget failure goes to the DLQ at once", tk.Attempts)
	}
	if o := callOutcomes(e.journal("b-calls"))["echo"]; o[OutcomeInvoked] != 3 || o[OutcomeBudget] != 1 {
		t.Fatalf("journal outcomes %v; want 3 invoked and 1 budget_exceeded", o)
	}

	e.apply(&cluster.RetryDLQ{TaskID: "b-calls", Budget: cluster.Budget{MaxCalls: 10}, Now: time.Now().UnixNano()})
	tk = e.wait("b-calls", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded {
		t.Fatalf("after a retry with calls=10: %s %+v", tk.State, tk.Error)
	}
	if got := n.Load(); got != 5 {
		t.Fatalf("tool invoked %d times in all; want 5 (3 replayed, 2 new)", got)
	}
	if tk.Budget.MaxCalls != 10 {
		t.Fatalf("budget after the retry = %+v", tk.Budget)
	}
}

// TestBudgetReplaysCountOnce: a task whose last call fails transiently
// twice is retried; the calls recorded earlier are replayed and are not
// charged again, so a budget of exactly the task's calls is enough.
func TestBudgetReplaysCountOnce(t *testing.T) {
	t.Parallel()
	var n, flaky atomic.Int64
	flakyTool := plugins.NewStub("flaky", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		if flaky.Add(1) <= 2 {
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "not yet")
		}
		return plugins.Result{Body: json.RawMessage(`"done"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{countingTool("echo", json.RawMessage(`"ok"`), &n), flakyTool})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "echo", "flaky")
	in := stepsInput("echo", 3)
	in["steps"] = append(in["steps"].([]map[string]any), map[string]any{"tool": "flaky", "params": map[string]int{}})
	e.submitBudget("b-replay", "steps", in, cluster.Budget{MaxCalls: 4}, quickRetry)

	tk := e.wait("b-replay", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || tk.Attempts != 3 {
		t.Fatalf("task ended %s after %d attempts (%+v); want succeeded on the third", tk.State, tk.Attempts, tk.Error)
	}
	if n.Load() != 3 {
		t.Fatalf("echo invoked %d times; want 3, the rest replayed", n.Load())
	}
	if o := callOutcomes(e.journal("b-replay"))["echo"]; o[OutcomeReplayed] != 6 || o[OutcomeBudget] != 0 {
		t.Fatalf("echo outcomes %v; want 6 replays and no budget refusal", o)
	}
}

// TestBudgetTokens: model usage recorded in the ledger counts against
// max_tokens; the call after the budget is spent is refused, and says by
// how much it was exceeded.
func TestBudgetTokens(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	model := plugins.NewStub("model", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		n.Add(1)
		return plugins.Result{Body: json.RawMessage(`{"text":"hi"}`), Usage: &plugins.Usage{PromptTokens: 60, CompletionTokens: 40}}, nil
	})
	e := newEnv(t, []plugins.Tool{model})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "model")
	e.submitBudget("b-tokens", "steps", stepsInput("model", 5), cluster.Budget{MaxTokens: 250}, quickRetry)

	tk := e.wait("b-tokens", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	wantBudgetDLQ(t, tk, "300 model tokens used of max_tokens 250 (over by 50)")
	if n.Load() != 3 {
		t.Fatalf("model invoked %d times; want 3 (200 tokens < 250 allows the third)", n.Load())
	}
	recs, err := e.node.FSM().Calls("b-tokens")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, r := range recs {
		total += UsageTokens(r.Usage)
	}
	if total != 300 {
		t.Fatalf("ledger records %d tokens; want 300", total)
	}
}

// TestBudgetEffects: the effect after max_effects is refused and nothing
// reaches the outbox.
func TestBudgetEffects(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	e := newEnv(t, []plugins.Tool{countingTool("notify", json.RawMessage(`"ok"`), &n)})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "notify")
	emits := []map[string]any{}
	for i := range 3 {
		emits = append(emits, map[string]any{"tool": "notify", "params": map[string]int{"i": i}})
	}
	e.submitBudget("b-effects", "steps", map[string]any{"emit": emits}, cluster.Budget{MaxEffects: 2}, quickRetry)
	tk := e.wait("b-effects", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	wantBudgetDLQ(t, tk, "effect 3 would exceed max_effects 2")
	if pending, err := e.node.FSM().PendingEffects(); err != nil || len(pending) != 0 {
		t.Fatalf("pending effects %v, %v; want none from a failed task", pending, err)
	}
	if n.Load() != 0 {
		t.Fatalf("notify invoked %d times", n.Load())
	}
}

// TestBudgetDuration: attempts that together run past max_duration end in
// the DLQ with class budget, however many attempts are left.
func TestBudgetDuration(t *testing.T) {
	t.Parallel()
	slow := plugins.NewStub("slow", plugins.Idempotent, func(ctx context.Context, _ plugins.Call) (plugins.Result, error) {
		select {
		case <-time.After(150 * time.Millisecond):
			return plugins.Result{Body: json.RawMessage(`"ok"`)}, nil
		case <-ctx.Done():
			return plugins.Result{}, ctx.Err()
		}
	})
	e := newEnv(t, []plugins.Tool{slow})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "slow")
	e.submitBudget("b-time", "steps", stepsInput("slow", 10), cluster.Budget{MaxDuration: 400 * time.Millisecond}, quickRetry)
	tk := e.wait("b-time", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	wantBudgetDLQ(t, tk, "max_duration 400ms")
}

func TestParseBudget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want cluster.Budget
		err  string
	}{
		{in: "calls=500,tokens=200000", want: cluster.Budget{MaxCalls: 500, MaxTokens: 200000}},
		{in: " effects=3 , duration=90s ", want: cluster.Budget{MaxEffects: 3, MaxDuration: 90 * time.Second}},
		{in: "calls=0", err: "positive whole number"},
		{in: "calls=2000000", err: "max_calls 2000000"},
		{in: "effects=20000", err: "max_effects 20000"},
		{in: "calls=1,calls=2", err: "given twice"},
		{in: "money=5", err: `unknown kind "money"`},
		{in: "duration=-1s", err: "positive duration"},
		{in: "calls", err: "want kind=value"},
	} {
		got, err := cluster.ParseBudget(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseBudget(%q) error %v; want one saying %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBudget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if back, err := cluster.ParseBudget(got.String()); err != nil || back != got {
			t.Errorf("ParseBudget(%q.String() = %q) = %+v, %v", tc.in, got.String(), back, err)
		}
	}
}

func TestBudgetErrorUnwraps(t *testing.T) {
	t.Parallel()
	var err error = &BudgetError{Kind: cluster.BudgetCalls, Limit: 1, Used: 2}
	if !errors.Is(err, ErrBudgetExceeded) {
		t.Fatal("BudgetError does not unwrap to ErrBudgetExceeded")
	}
}

// TestDispatcherMemoryIsBounded: 600 denied calls with distinct 1 MiB
// params used to keep every params string in the occurrence map (700 MB of
// host memory); the dispatcher now keeps a hash per distinct call.
func TestDispatcherMemoryIsBounded(t *testing.T) {
	var n atomic.Int64
	reg, err := plugins.NewRegistry(countingTool("echo", json.RawMessage(`"ok"`), &n))
	if err != nil {
		t.Fatal(err)
	}
	e := newMemEnv(t, reg) // the test calls the dispatcher itself: no guest, no disk
	ag := e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "steps", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"echo"}}},
		Module: []byte("not run"), Now: time.Now().UnixNano()}).(cluster.Agent)
	e.submitBudget("b-mem", "steps", nil, cluster.Budget{}, quickRetry)
	claim, ok := e.apply(&cluster.ClaimTask{Node: "test", TTL: time.Minute, Now: time.Now().UnixNano()}).(*cluster.Claim)
	if !ok || claim == nil {
		t.Fatal("no claim")
	}
	d, err := newLedgerDispatcher(e.node, e.tools, claim, ag, time.Now, e.log)
	if err != nil {
		t.Fatal(err)
	}
	heap := func() uint64 {
		goruntime.GC()
		var ms goruntime.MemStats
		goruntime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	params := make([]byte, 1<<20)
	for i := range 600 {
		copy(params, fmt.Sprintf(`{"i":%d,"pad":"`, i))
		for j := 20; j < len(params)-2; j++ {
			params[j] = 'x'
		}
		copy(params[len(params)-2:], `"}`)
		_, err := d.Call(context.Background(), abi.CallRequest{Tool: "forbidden", Params: params})
		if st, _ := abi.StatusOf(err); st != abi.StatusPermissionDenied {
			t.Fatalf("call %d: %v; want permission_denied", i, err)
		}
	}
	if grew := int64(heap()) - int64(before); grew > 32<<20 {
		t.Fatalf("600 denied 1 MiB calls grew the heap by %d MiB; want it bounded", grew>>20)
	}
	if d.denials != 600 || len(d.events) > maxDeniedEvents {
		t.Fatalf("denials %d, events held %d; want 600 and at most %d", d.denials, len(d.events), maxDeniedEvents)
	}
}

// BenchmarkBudgetCheck: what the budget adds to a call the ledger has not
// seen (a replayed call skips it): the known-ID lookup and the counters.
func BenchmarkBudgetCheck(b *testing.B) {
	ids := make([]string, 1<<16)
	for i := range ids {
		ids[i] = CallID("task", "tool", []byte(`{}`), "", i)
	}
	s := newSpend(cluster.Task{Budget: cluster.Budget{MaxCalls: cluster.MaxCallsPerTask, MaxTokens: 1 << 40, MaxDuration: time.Hour}}, nil, time.Now)
	i := 0
	for b.Loop() {
		if i == len(ids) {
			b.StopTimer()
			s = newSpend(cluster.Task{Budget: s.limit}, nil, time.Now)
			i = 0
			b.StartTimer()
		}
		if err := s.call(ids[i]); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
