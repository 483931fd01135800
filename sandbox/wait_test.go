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

// TestWaitHostileArguments: every range of wait is checked before anything
// runs (StatusFault, the dispatcher never asked), a malformed request is
// invalid_argument with a body, and an answer larger than the buffer is
// kept for response, as for call.
func TestWaitHostileArguments(t *testing.T) {
	t.Parallel()
	m := mustCompile(t, shared, goGuest(t, "waitfaults"))
	payload := `"` + strings.Repeat("p", 100) + `"`
	d := NewMemDispatcher(nil, nil).Signal("big", json.RawMessage(payload))
	res := runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	var out struct {
		ReqOutside    abi.Status `json:"req_outside"`
		ReqWraps      abi.Status `json:"req_wraps"`
		BufOutside    abi.Status `json:"buf_outside"`
		LenOutside    abi.Status `json:"len_outside"`
		Malformed     abi.Status `json:"malformed"`
		MalformedBody string     `json:"malformed_body"`
		TooSmall      abi.Status `json:"too_small"`
		TooSmallLen   int        `json:"too_small_len"`
		Response      abi.Status `json:"response"`
		Payload       string     `json:"payload"`
	}
	if err := json.Unmarshal(d.TaskOutput(), &out); err != nil {
		t.Fatalf("output %s: %v", d.TaskOutput(), err)
	}
	for name, st := range map[string]abi.Status{"request outside": out.ReqOutside, "request wraps": out.ReqWraps,
		"buffer outside": out.BufOutside, "length outside": out.LenOutside} {
		if st != abi.StatusFault {
			t.Errorf("%s: %v, want fault", name, st)
		}
	}
	if out.Malformed != abi.StatusInvalidArgument || !strings.Contains(out.MalformedBody, "invalid_argument") {
		t.Errorf("malformed: %v, body %q", out.Malformed, out.MalformedBody)
	}
	if out.TooSmall != abi.StatusBufferTooSmall || out.TooSmallLen != len(payload) ||
		out.Response != abi.StatusOK || out.Payload != payload {
		t.Errorf("too small: %v (len %d), then response %v with %q", out.TooSmall, out.TooSmallLen, out.Response, out.Payload)
	}
	// Only the malformed-free, in-bounds waits reached the dispatcher: one.
	if w := d.Waits(); len(w) != 1 || w[0].Name != "big" {
		t.Errorf("dispatcher saw waits %+v, want the one await", w)
	}
}
