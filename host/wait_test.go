package host

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// TestSleepReleasesWorkerAndReplays: an attempt that sleeps ends suspended
// (reported as such, no failure), the task waits with no lease, and the run
// after the wake replays the call before the sleep. The sleep counts toward
// no budget: a max_calls of 2 covers the two tool calls.
func TestSleepReleasesWorkerAndReplays(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	e := newEnv(t, []plugins.Tool{countingTool("echo", json.RawMessage(`"ok"`), &n)})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "echo")
	in := map[string]any{"steps": []any{
		map[string]any{"tool": "echo", "params": map[string]int{"i": 1}},
		map[string]any{"sleep": "300ms"},
		map[string]any{"tool": "echo", "params": map[string]int{"i": 2}},
	}}
	e.submitBudget("s1", "steps", in, cluster.Budget{MaxCalls: 2}, cluster.RetryPolicy{MaxAttempts: 1})
	tk := e.wait("s1", settle, cluster.StateWaiting, cluster.StateSucceeded)
	if tk.State == cluster.StateWaiting && (tk.Lease != nil || tk.Wait == nil || tk.Wait.Kind != cluster.WaitSleep) {
		t.Fatalf("waiting task: lease %+v, wait %+v", tk.Lease, tk.Wait)
	}
	tk = e.wait("s1", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || string(tk.Output) != `["ok","slept","ok"]` {
		t.Fatalf("task %s, output %s, error %+v", tk.State, tk.Output, tk.Error)
	}
	if n.Load() != 2 {
		t.Fatalf("echo invoked %d times, want 2", n.Load())
	}
	// The first attempt's report (the second may still be on its way).
	e.mu.Lock()
	reports := append([]AttemptReport(nil), e.reports...)
	e.mu.Unlock()
	if len(reports) == 0 || !reports[0].Suspended || reports[0].Err != nil || reports[0].Class != "" {
		t.Fatalf("attempt reports %+v", reports)
	}
	if len(tk.History) != 2 || tk.History[0].Outcome != string(cluster.StateWaiting) || tk.History[1].N != 1 {
		t.Fatalf("history %+v", tk.History)
	}
	if o := callOutcomes(e.journal("s1"))["echo"]; o[OutcomeInvoked] != 2 || o[OutcomeReplayed] != 1 {
		t.Fatalf("echo outcomes %v", o)
	}
}

// TestAwaitSignalInProcess: an await with nothing sent suspends; the signal
// wakes the task and its payload is what the guest outputs; a second run
// of the task (a DLQ retry after a later failure) would replay it.
func TestAwaitSignalInProcess(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	e := newEnv(t, []plugins.Tool{countingTool("echo", json.RawMessage(`"ok"`), &n)})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "echo")
	in := map[string]any{"steps": []any{
		map[string]any{"tool": "echo", "params": map[string]int{"i": 1}},
		map[string]any{"await": "go"},
	}}
	e.submit("a1", "steps", "v1", in, cluster.RetryPolicy{MaxAttempts: 1})
	tk := e.wait("a1", settle, cluster.StateWaiting)
	if tk.Wait == nil || tk.Wait.Signal != "go" || tk.Wait.Until != 0 {
		t.Fatalf("wait %+v", tk.Wait)
	}
	r := e.apply(&cluster.SendSignal{TaskID: "a1", Name: "go", Payload: json.RawMessage(`{"n":42}`), Now: time.Now().UnixNano()}).(cluster.SignalResult)
	if !r.Delivered {
		t.Fatalf("signal: %+v", r)
	}
	tk = e.wait("a1", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || string(tk.Output) != `["ok",{"n":42}]` || n.Load() != 1 {
		t.Fatalf("task %s, output %s, echo invoked %d times", tk.State, tk.Output, n.Load())
	}
}
