package plugins_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/trace"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

// The http tool sends the trace context of the span in the call's context
// as traceparent, none without one, and refuses a guest's own.
func TestHTTPTraceContext(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Clone())
		mu.Unlock()
		w.Write([]byte("{}"))
	}))
	defer srv.Close()
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"127.0.0.1"}})
	if err != nil {
		t.Fatal(err)
	}
	params := json.RawMessage(`{"url":"` + srv.URL + `/x"}`)

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	if _, err := tool.Invoke(trace.ContextWithSpanContext(context.Background(), sc), plugins.Call{ID: "c1", Params: params}); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.Invoke(context.Background(), plugins.Call{ID: "c2", Params: params}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"traceparent", "TraceParent", "tracestate"} {
		p := json.RawMessage(`{"url":"` + srv.URL + `/x","headers":{"` + h + `":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}`)
		_, err := tool.Invoke(context.Background(), plugins.Call{ID: "c3", Params: p})
		if st, _ := abi.StatusOf(err); st != abi.StatusPermissionDenied || !strings.Contains(err.Error(), "trace context") {
			t.Errorf("guest header %s: %v (status %v), want permission_denied naming the trace context", h, err, st)
		}
	}

	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the server saw %d requests, want 2 (the guest's traceparent is refused before sending)", len(seen))
	}
	if got, want := seen[0].Get("Traceparent"), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"; got != want {
		t.Errorf("traced call: traceparent %q, want %q", got, want)
	}
	if got := seen[1].Get("Traceparent"); got != "" {
		t.Errorf("untraced call: traceparent %q, want none", got)
	}
}
