package mcp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
)

// traceRecorder notes the traceparent of each request made for a call,
// by its Idempotency-Key.
type traceRecorder struct {
	base http.RoundTripper
	mu   sync.Mutex
	seen map[string]string
}

func (r *traceRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	if k := req.Header.Get("Idempotency-Key"); k != "" {
		r.mu.Lock()
		r.seen[k] = req.Header.Get("Traceparent")
		r.mu.Unlock()
	}
	return r.base.RoundTrip(req)
}

// A tools/call over HTTP carries the trace context of the span in the
// call's context, and none without one.
func TestHTTPCallCarriesTraceparent(t *testing.T) {
	t.Parallel()
	rec := &traceRecorder{base: http.DefaultTransport, seen: map[string]string{}}
	_, _, _, reg := startHTTP(t, mcp.ServerConfig{Timeout: 5 * time.Second}, &http.Client{Transport: rec})
	echo := reg.get(t, "web/echo")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	if _, err := echo.Invoke(ctx, plugins.Call{ID: "traced", TaskID: "t1", Attempt: 1, Params: json.RawMessage(`{"text":"a"}`)}); err != nil {
		t.Fatal(err)
	}
	if _, err := invoke(t, echo, "untraced", `{"text":"b"}`); err != nil {
		t.Fatal(err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if got, want := rec.seen["traced"], "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traced call: traceparent %q, want %q", got, want)
	}
	if got, ok := rec.seen["untraced"]; !ok || got != "" {
		t.Errorf("untraced call: traceparent %q (seen %v), want none", got, ok)
	}
}
