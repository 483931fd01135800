package host

import (
	"context"
	"encoding/json"
	"os"
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

// TestDLQNotifierPassRecovers: a webhook pass that panics is waited out like
// an idle scan, and the next pass delivers.
func TestDLQNotifierPassRecovers(t *testing.T) {
	t.Parallel()
	hook := newWebhook(t, 0)
	e := newEnv(t, nil)
	pushAndSubmit(t, e.node, "p")
	e.wait("p", 30*time.Second, cluster.StateDeadLetter)

	var broken atomic.Bool
	broken.Store(true)
	cfg := DefaultDaemonConfig()
	cfg.DataDir, cfg.DLQWebhook = e.dir, hook.srv.URL
	cfg.Clock = func() time.Time {
		if broken.Load() {
			panic("clock broke")
		}
		return time.Now()
	}
	n := newDLQNotifier(e.node, cfg, testLogger(t))
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

// TestDaemonKVTool: through a started daemon (its own tools, forwarder and
// outbox), a task puts and reads a kv key and emits a kv put; both are
// visible after it succeeds, and the daemon still serves.
func TestDaemonKVTool(t *testing.T) {
	t.Parallel()
	d := startDaemon(t, testDaemonConfig(t, t.TempDir()))
	n := d.Node()
	ctx := context.Background()
	wasm, err := os.ReadFile(agentPath(t, "steps"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.ProposeAgent(ctx, n, cluster.Agent{Name: "steps", Version: "v1",
		Manifest: cluster.AgentManifest{Tools: []string{"kv"}, Timeout: 20 * time.Second}}, wasm, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	kv := func(params string) map[string]any {
		return map[string]any{"tool": "kv", "params": json.RawMessage(params)}
	}
	in, _ := json.Marshal(map[string]any{
		"steps": []any{kv(`{"op":"put","key":"k","value":1}`), kv(`{"op":"get","key":"k"}`)},
		"emit":  []any{kv(`{"op":"put","key":"fx","value":2}`)},
	})
	apply(t, n, &cluster.SubmitTask{Task: cluster.Task{ID: "kv", Agent: "steps", Version: "v1", Input: in,
		Policy: cluster.RetryPolicy{MaxAttempts: 2, Base: time.Millisecond}}, Now: time.Now().UnixNano()})
	deadline := time.After(settle)
	for {
		changed := n.FSM().Changed()
		tk, _ := n.FSM().Task("kv")
		eff, _ := n.FSM().Outbox("kv")
		if tk.State == cluster.StateDeadLetter {
			t.Fatalf("task dead-lettered: %+v", tk.Error)
		}
		if tk.State == cluster.StateSucceeded && len(eff) == 1 && eff[0].Done {
			if eff[0].Error != "" || !strings.Contains(string(tk.Output), `"found":true`) {
				t.Fatalf("output %s, effect %+v", tk.Output, eff[0])
			}
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("task %s, effects %+v", tk.State, eff)
		}
	}
	for key, want := range map[string]string{"k": "1", "fx": "2"} {
		if v, ok, _ := n.FSM().KV(key); !ok || string(v) != want {
			t.Fatalf("kv %s = %s %v, want %s", key, v, ok, want)
		}
	}
	select {
	case err := <-d.Err():
		t.Fatalf("daemon stopped serving: %v", err)
	default:
	}
}
