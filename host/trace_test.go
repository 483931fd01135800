package host

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/telemetry"
)

// tracedNode is one node's trace pipeline with an in-memory recorder.
func tracedNode(t *testing.T, node string) (*Tracing, *tracetest.SpanRecorder) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(telemetry.IDGenerator()))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	return NewTracing(tp, node), rec
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// A task whose first attempt fails transiently and whose second succeeds,
// on two nodes with pipelines of their own, makes one trace: the task's.
// Each attempt is a root span with its number and node; each call a child
// of its attempt, saying what became of it; the call the first attempt
// recorded is replayed by the second; and the http tool's request carries
// the call's span as its traceparent.
func TestTraceOfRetriedTask(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var parents []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		parents = append(parents, r.Header.Get("Traceparent"))
		mu.Unlock()
		w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	httpTool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	var flakyCalls atomic.Int64
	flaky := plugins.NewStub("flaky", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		if flakyCalls.Add(1) == 1 {
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "try again")
		}
		return plugins.Result{Body: json.RawMessage(`"fine"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{httpTool, flaky}, withoutWorkers())
	trA, recA := tracedNode(t, "node-a")
	trB, recB := tracedNode(t, "node-b")
	execA := NewExecutor(e.node, runtime(t), e.tools, time.Now, e.log, WithTracing(trA))
	execB := NewExecutor(e.node, runtime(t), e.tools, time.Now, e.log, WithTracing(trB))

	ag := e.pushAgent("steps", "v1", agentPath(t, "steps"), "http", "flaky")
	policy := cluster.RetryPolicy{MaxAttempts: 3, Base: time.Millisecond, Factor: 1, Cap: time.Millisecond}
	const id = "traced-1"
	e.submit(id, ag.Name, ag.Version, map[string]any{"steps": []map[string]any{
		{"tool": "http", "params": map[string]any{"url": srv.URL + "/x"}},
		{"tool": "flaky", "params": map[string]any{"n": 1}},
	}}, policy)
	claim := func() *cluster.Claim {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, _ := e.apply(&cluster.ClaimTask{Node: "n1", TTL: time.Minute, Now: time.Now().UnixNano()}).(*cluster.Claim)
			if c != nil && c.Task.ID == id {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("no claim of %s", id)
			}
			time.Sleep(time.Millisecond) // the backoff is on the clock, not an event to await
		}
	}
	if rep := execA.Run(context.Background(), claim()); rep.Succeeded || rep.Class != cluster.ClassTransient {
		t.Fatalf("attempt 1: %+v", rep)
	}
	if rep := execB.Run(context.Background(), claim()); !rep.Succeeded {
		t.Fatalf("attempt 2: %+v", rep)
	}

	want := telemetry.TaskTraceID(id)
	type attemptSpans struct {
		attempt sdktrace.ReadOnlySpan
		calls   map[string]sdktrace.ReadOnlySpan // by tool
	}
	collect := func(rec *tracetest.SpanRecorder, node string, number int64) attemptSpans {
		t.Helper()
		got := attemptSpans{calls: map[string]sdktrace.ReadOnlySpan{}}
		spans := rec.Ended()
		for _, s := range spans {
			if s.SpanContext().TraceID() != want {
				t.Errorf("%s: span %q in trace %s, want the task's %s", node, s.Name(), s.SpanContext().TraceID(), want)
			}
			if strings.HasPrefix(s.Name(), "attempt ") {
				got.attempt = s
			}
		}
		if got.attempt == nil {
			t.Fatalf("%s: no attempt span among %d", node, len(spans))
		}
		a := got.attempt
		if a.Parent().IsValid() {
			t.Errorf("%s: attempt span has parent %s; want a root", node, a.Parent().SpanID())
		}
		for k, v := range map[attribute.Key]attribute.Value{
			AttrTaskID: attribute.StringValue(id), AttrAgentName: attribute.StringValue("steps"),
			AttrAgentVersion: attribute.StringValue("v1"), AttrAttempt: attribute.Int64Value(number),
			AttrNode: attribute.StringValue(node),
		} {
			if got := attr(a, k); got != v {
				t.Errorf("%s: attempt span %s = %v, want %v", node, k, got.Emit(), v.Emit())
			}
		}
		for _, s := range spans {
			if s == a {
				continue
			}
			if s.Parent().SpanID() != a.SpanContext().SpanID() {
				t.Errorf("%s: span %q has parent %s, want the attempt %s", node, s.Name(), s.Parent().SpanID(), a.SpanContext().SpanID())
			}
			got.calls[attr(s, AttrTool).AsString()] = s
		}
		return got
	}
	a1, a2 := collect(recA, "node-a", 1), collect(recB, "node-b", 2)

	if got := attr(a1.attempt, AttrAttemptOutcome).AsString(); got != "transient" || a1.attempt.Status().Code != codes.Error {
		t.Errorf("attempt 1 outcome %q status %v; want transient, an error", got, a1.attempt.Status())
	}
	if got := attr(a2.attempt, AttrAttemptOutcome).AsString(); got != "succeeded" || a2.attempt.Status().Code == codes.Error {
		t.Errorf("attempt 2 outcome %q status %v; want succeeded", got, a2.attempt.Status())
	}
	outcomes := func(as attemptSpans) map[string]string {
		m := map[string]string{}
		for tool, s := range as.calls {
			m[tool] = attr(s, AttrCallOutcome).AsString() + "/" + attr(s, AttrCallStatus).AsString()
		}
		return m
	}
	if got, want := outcomes(a1), map[string]string{"http": "invoked/ok", "flaky": "error/transient"}; !equalMaps(got, want) {
		t.Errorf("attempt 1 calls %v, want %v", got, want)
	}
	if got, want := outcomes(a2), map[string]string{"http": "replayed/ok", "flaky": "invoked/ok"}; !equalMaps(got, want) {
		t.Errorf("attempt 2 calls %v, want %v", got, want)
	}
	// The replayed call is the same call: the same ID in both attempts.
	if h1, h2 := a1.calls["http"], a2.calls["http"]; h1 != nil && h2 != nil && attr(h1, AttrCallID) != attr(h2, AttrCallID) {
		t.Errorf("http call IDs differ: %s, %s", attr(h1, AttrCallID).Emit(), attr(h2, AttrCallID).Emit())
	}

	mu.Lock()
	defer mu.Unlock()
	if len(parents) != 1 {
		t.Fatalf("the http stand-in got %d requests, want 1 (attempt 2 replays)", len(parents))
	}
	h1 := a1.calls["http"]
	if h1 == nil {
		t.Fatal("no http call span in attempt 1")
	}
	wantParent := "00-" + want.String() + "-" + h1.SpanContext().SpanID().String() + "-01"
	if parents[0] != wantParent {
		t.Errorf("traceparent %q, want %q (the task's trace, the call's span)", parents[0], wantParent)
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// The trace ID is a function of the task ID alone.
func TestTaskTraceIDIsDerived(t *testing.T) {
	t.Parallel()
	a, b := telemetry.TaskTraceID("task-1"), telemetry.TaskTraceID("task-1")
	if a != b || !a.IsValid() {
		t.Fatalf("TaskTraceID not stable or invalid: %s, %s", a, b)
	}
	if a == telemetry.TaskTraceID("task-2") {
		t.Fatal("two tasks share a trace ID")
	}
}

// Tracing off is a nil *Tracing: nothing is started, whatever provider.
func TestTracingOffIsNil(t *testing.T) {
	t.Parallel()
	for name, tp := range map[string]trace.TracerProvider{"nil": nil, "noop": noop.NewTracerProvider()} {
		if tr := NewTracing(tp, "n1"); tr != nil {
			t.Errorf("%s provider: NewTracing = %v, want nil", name, tr)
		}
	}
	var off *Tracing
	ctx := context.Background()
	got, span := off.startAttempt(ctx, &cluster.Claim{})
	if got != ctx || span != nil {
		t.Error("a nil Tracing started an attempt span")
	}
	off.endAttempt(nil, AttemptReport{})
	if got, span := off.startCall(ctx, "id", "tool", time.Now()); got != ctx || span != nil {
		t.Error("a nil Tracing started a call span")
	}
	off.call(ctx, "id", "tool", time.Now(), time.Now(), CallDetail{}, nil)
	off.endCall(nil)
}
