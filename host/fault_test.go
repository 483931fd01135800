package host

import (
	"bytes"
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// TestHostFaultStackStaysInTheLog: a tool that panics fails its task with a
// message that cites an error ID and carries neither the stack nor the
// host's file paths; the task's error is what the API and `dlq show` show.
func TestHostFaultStackStaysInTheLog(t *testing.T) {
	t.Parallel()
	bomb := plugins.NewStub("bomb", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		panic("tool exploded")
	})
	e := newEnv(t, []plugins.Tool{bomb})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "bomb")
	e.submit("f", "steps", "v1", map[string]any{"steps": []any{map[string]any{"tool": "bomb"}}}, cluster.RetryPolicy{MaxAttempts: 1})
	tk := e.wait("f", settle, cluster.StateDeadLetter, cluster.StateSucceeded)
	if tk.State != cluster.StateDeadLetter || tk.Error == nil {
		t.Fatalf("task %s %+v", tk.State, tk.Error)
	}
	msg := tk.Error.Message
	if !regexp.MustCompile(`host fault in orloj_v1\.call: panic: tool exploded \(error id [0-9a-f]{16}; the node's log has the stack\)`).MatchString(msg) {
		t.Fatalf("message %q does not name the panic and an error id", msg)
	}
	for _, leak := range []string{"goroutine", ".go:", "\n", "/"} {
		if strings.Contains(msg, leak) {
			t.Fatalf("message %q carries %q", msg, leak)
		}
	}
}

func TestLogHostFault(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true})
	cause := errors.New("sandbox: host fault in orloj_v1.call: panic: boom")
	res := logHostFault(sandbox.Result{Outcome: sandbox.OutcomeHostFault, Err: cause, HostStack: []byte("goroutine 7 [running]:\nmain.go:12")}, log)
	m := regexp.MustCompile(`\(error id ([0-9a-f]{16});`).FindStringSubmatch(res.Err.Error())
	if m == nil || !errors.Is(res.Err, cause) {
		t.Fatalf("err %v does not cite an id or wrap the cause", res.Err)
	}
	line := buf.String()
	if !strings.Contains(line, `"error_id":"`+m[1]+`"`) || !strings.Contains(line, `goroutine 7 [running]:\nmain.go:12`) {
		t.Fatalf("log %s lacks the id %s or the stack", line, m[1])
	}

	// Faults without a stack, and other outcomes, are left alone.
	buf.Reset()
	for _, r := range []sandbox.Result{
		{Outcome: sandbox.OutcomeHostFault, Err: cause},
		{Outcome: sandbox.OutcomeTrap, Err: cause, HostStack: []byte("x")},
	} {
		if got := logHostFault(r, log); got.Err != cause {
			t.Fatalf("%v changed to %v", r.Outcome, got.Err)
		}
	}
	if buf.Len() != 0 {
		t.Fatalf("logged %s", buf.String())
	}
}
