package host

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// TestToolPanicDuringCallIsRetried: a tool that panics inside a guest's call
// is a host fault (the sandbox recovers it); the node survives, the attempt
// fails as transient and the next one succeeds, invoking the tool again
// with the same key (its intent was recorded, its result never was).
func TestToolPanicDuringCallIsRetried(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	keys := make(chan string, 4)
	flaky := plugins.NewStub("flaky", plugins.Idempotent, func(_ context.Context, c plugins.Call) (plugins.Result, error) {
		keys <- c.ID
		if calls.Add(1) == 1 {
			panic("tool bug")
		}
		return plugins.Result{Body: json.RawMessage(`"ok"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{flaky})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "flaky")
	e.submit("p", "steps", "v1", map[string]any{"steps": []any{map[string]any{"tool": "flaky"}}}, cluster.RetryPolicy{Base: time.Millisecond})
	tk := e.wait("p", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || tk.Attempts != 2 || string(tk.Output) != `["ok"]` {
		t.Fatalf("task %s after %d attempts, output %s: %+v", tk.State, tk.Attempts, tk.Output, tk.Error)
	}
	if h := tk.History[0]; h.Outcome != string(cluster.ClassTransient) || !strings.Contains(h.Error, "tool bug") {
		t.Fatalf("first attempt = %+v, want a transient host fault naming the panic", h)
	}
	if k1, k2 := <-keys, <-keys; k1 != k2 {
		t.Fatalf("re-invoked with key %s, first call had %s", k2, k1)
	}
}

// TestDLQWebhookPassRecovers: a webhook pass that panics is waited out like
// an idle scan, and the next pass delivers.
func TestDLQWebhookPassRecovers(t *testing.T) {
	t.Parallel()
	hook := newReceiver(t, 0)
	e := newEnv(t, nil)
	pushAndSubmit(t, e, "p")
	e.wait("p", 30*time.Second, cluster.StateDeadLetter)

	var broken atomic.Bool
	broken.Store(true)
	n := newWebhookT(t, e, WebhookConfig{URL: hook.srv.URL, Policy: cluster.RetryPolicy{Base: time.Second, Factor: 2, Cap: time.Minute},
		Logger: testLogger(t), Clock: func() time.Time {
			if broken.Load() {
				panic("clock broke")
			}
			return time.Now()
		}})
	if wait := n.safePass(context.Background()); wait != dlqIdleScan {
		t.Fatalf("a panicking pass waits %s, want %s", wait, dlqIdleScan)
	}
	broken.Store(false)
	n.safePass(context.Background())
	if got, _ := hook.requests(); len(got) != 1 || got[0].TaskID != "p" {
		t.Fatalf("after recovering: requests %+v", got)
	}
}

// TestWorkerSurvivesPanic: a panic in a worker's attempt (here, in the
// report hook) does not end the worker: the single worker runs the next
// task.
func TestWorkerSurvivesPanic(t *testing.T) {
	t.Parallel()
	reg, _ := plugins.NewRegistry()
	e := newIdleEnv(t, reg)
	reports := make(chan AttemptReport, 2)
	cfg := DefaultPoolConfig()
	cfg.NodeID, cfg.Workers, cfg.LeaseTTL, cfg.Logger = "n1", 1, 2*time.Second, e.log
	cfg.OnAttempt = func(r AttemptReport) {
		reports <- r
		if r.TaskID == "a" {
			panic("report hook broke")
		}
	}
	p, err := NewPool(cfg, e.node, e.exec)
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	e.pushAgent("steps", "v1", agentPath(t, "steps"))
	for _, id := range []string{"a", "b"} {
		e.submit(id, "steps", "v1", map[string]any{}, cluster.RetryPolicy{})
		if tk := e.wait(id, settle, cluster.StateSucceeded, cluster.StateDeadLetter); tk.State != cluster.StateSucceeded {
			t.Fatalf("task %s: %s %+v", id, tk.State, tk.Error)
		}
	}
	for _, want := range []string{"a", "b"} {
		select {
		case r := <-reports:
			if r.TaskID != want || !r.Succeeded {
				t.Fatalf("report %+v, want task %s succeeded", r, want)
			}
		case <-time.After(settle):
			t.Fatalf("no report for task %s", want)
		}
	}
}
