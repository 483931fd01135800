package host

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// TestResultTooLargeToRecord: a tool answering 3 MiB (within what a guest
// may receive, beyond what one entry may carry) gets its call recorded as
// a tool error the guest sees, instead of a host fault retried forever.
func TestResultTooLargeToRecord(t *testing.T) {
	t.Parallel()
	big := plugins.NewStub("big", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		return plugins.Result{Body: json.RawMessage(`"` + strings.Repeat("x", 3<<20) + `"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{big})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "big")
	e.submitBudget("too-big", "steps", stepsInput("big", 1), cluster.Budget{}, quickRetry)
	tk := e.wait("too-big", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	if tk.State != cluster.StateDeadLetter || tk.Error.Class != cluster.ClassPermanent || tk.Attempts != 1 {
		t.Fatalf("task ended %s after %d attempts with %+v; want dead_letter (permanent) at once", tk.State, tk.Attempts, tk.Error)
	}
	recs, err := e.node.FSM().Calls("too-big")
	if err != nil || len(recs) != 1 || recs[0].Status != "tool_error" || !strings.Contains(string(recs[0].Result), "too large to record") {
		t.Fatalf("ledger %+v, %v; want one tool_error record saying the result was too large", recs, err)
	}
}
