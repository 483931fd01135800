package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

func stepTool(context.Context, json.RawMessage) (json.RawMessage, error) {
	return json.RawMessage(`{"ok":true}`), nil
}

// TestWaitSuspendsGuest: a wait the dispatcher cannot answer stops the
// guest inside the call and ends the attempt as OutcomeSuspended, not as a
// host fault; answered waits return to the guest with their status.
func TestWaitSuspendsGuest(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, shared, goGuest(t, "waiter"))

	d := NewMemDispatcher(nil, map[string]ToolFunc{"step": stepTool}).SuspendWaits(true)
	res := runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuspended)
	if !errors.Is(res.Err, ErrSuspend) {
		t.Fatalf("err %v does not wrap ErrSuspend", res.Err)
	}
	if len(d.Calls()) != 1 || len(d.Waits()) != 1 || d.Waits()[0].Duration != int64(time.Hour) {
		t.Fatalf("calls %+v, waits %+v", d.Calls(), d.Waits())
	}
	if d.TaskOutput() != nil {
		t.Fatalf("a suspended guest went on to set output %s", d.TaskOutput())
	}

	// Answered at once: the sleep returns, the await times out, and the
	// guest finishes.
	d = NewMemDispatcher(nil, map[string]ToolFunc{"step": stepTool})
	res = runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	if out := string(d.TaskOutput()); !strings.Contains(out, `"await"`) || !strings.Contains(out, "timeout") || strings.Contains(out, `"sleep"`) {
		t.Fatalf("output %s", out)
	}
	d = NewMemDispatcher(nil, map[string]ToolFunc{"step": stepTool}).Signal("go", json.RawMessage(`{"v":7}`))
	res = runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	if out := string(d.TaskOutput()); !strings.Contains(out, `"signal":{"v":7}`) {
		t.Fatalf("output %s", out)
	}
}

// TestWaitWithoutWaitDispatcher: a host that serves no waits answers
// not_found; the guest carries on.
func TestWaitWithoutWaitDispatcher(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, shared, goGuest(t, "waiter"))
	d := &noWaits{NewMemDispatcher(nil, map[string]ToolFunc{"step": stepTool})}
	res := runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	if out := string(d.TaskOutput()); !strings.Contains(out, abi.StatusNotFound.String()) {
		t.Fatalf("output %s", out)
	}
}

// noWaits hides MemDispatcher's Wait.
type noWaits struct{ *MemDispatcher }

func (n *noWaits) Wait() {} // not WaitDispatcher's signature
