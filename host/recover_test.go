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
