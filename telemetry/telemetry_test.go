package telemetry

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel/trace/noop"
)

// Which environments turn traces on, off, or are refused.
func TestEnabled(t *testing.T) {
	for name, tc := range map[string]struct {
		env     map[string]string
		on      bool
		refused string // the variable the error names
	}{
		"nothing set":        {},
		"endpoint":           {env: map[string]string{EnvEndpoint: "http://127.0.0.1:4318"}, on: true},
		"traces endpoint":    {env: map[string]string{EnvTracesEndpoint: "http://127.0.0.1:4318/v1/traces"}, on: true},
		"sdk disabled":       {env: map[string]string{EnvEndpoint: "http://x", EnvSDKDisabled: "TRUE"}},
		"sdk not disabled":   {env: map[string]string{EnvEndpoint: "http://x", EnvSDKDisabled: "false"}, on: true},
		"exporter none":      {env: map[string]string{EnvEndpoint: "http://x", EnvTracesExporter: "none"}},
		"exporter otlp":      {env: map[string]string{EnvEndpoint: "http://x", EnvTracesExporter: "otlp"}, on: true},
		"exporter zipkin":    {env: map[string]string{EnvEndpoint: "http://x", EnvTracesExporter: "zipkin"}, refused: EnvTracesExporter},
		"protocol http":      {env: map[string]string{EnvEndpoint: "http://x", EnvProtocol: "http/protobuf"}, on: true},
		"protocol grpc":      {env: map[string]string{EnvEndpoint: "http://x", EnvProtocol: "grpc"}, refused: EnvProtocol},
		"traces proto wins":  {env: map[string]string{EnvEndpoint: "http://x", EnvProtocol: "grpc", EnvTracesProtocol: "http/protobuf"}, on: true},
		"traces proto json":  {env: map[string]string{EnvEndpoint: "http://x", EnvTracesProtocol: "http/json"}, refused: EnvTracesProtocol},
		"protocol, no endpt": {env: map[string]string{EnvProtocol: "grpc"}},
	} {
		t.Run(name, func(t *testing.T) {
			for _, k := range []string{EnvEndpoint, EnvTracesEndpoint, EnvSDKDisabled, EnvTracesExporter, EnvProtocol, EnvTracesProtocol} {
				t.Setenv(k, tc.env[k])
			}
			on, err := Enabled()
			if tc.refused != "" {
				if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("Enabled() = %v, %v; want ErrUnsupported naming %s", on, err, tc.refused)
				}
				return
			}
			if err != nil || on != tc.on {
				t.Fatalf("Enabled() = %v, %v; want %v", on, err, tc.on)
			}
		})
	}
}

// Off, Setup builds nothing, and the nil Provider is the no-op one.
func TestSetupOff(t *testing.T) {
	t.Setenv(EnvEndpoint, "")
	t.Setenv(EnvTracesEndpoint, "")
	p, err := Setup(context.Background(), Options{NodeID: "n1"})
	if err != nil || p != nil {
		t.Fatalf("Setup = %v, %v; want nil, nil", p, err)
	}
	if _, ok := p.TracerProvider().(noop.TracerProvider); !ok {
		t.Fatalf("TracerProvider of nil = %T, want the no-op one", p.TracerProvider())
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A root span started with WithTraceID takes that trace ID; without, a
// random one.
func TestIDGenerator(t *testing.T) {
	t.Parallel()
	g := IDGenerator()
	want := TaskTraceID("t-1")
	if tid, sid := g.NewIDs(WithTraceID(context.Background(), want)); tid != want || !sid.IsValid() {
		t.Fatalf("NewIDs with a trace ID = %s, %s; want %s and a valid span ID", tid, sid, want)
	}
	a, _ := g.NewIDs(context.Background())
	b, _ := g.NewIDs(context.Background())
	if !a.IsValid() || a == b || a == want {
		t.Fatalf("random trace IDs %s, %s", a, b)
	}
}

// Export errors are logged at most once per errorLogEvery, counting the rest.
func TestErrorLogIsRateLimited(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	e := newErrorLog(hclog.New(&hclog.LoggerOptions{Output: &buf}), func() time.Time { return now })
	for range 5 {
		e.Handle(errors.New("connection refused"))
	}
	now = now.Add(errorLogEvery)
	e.Handle(errors.New("connection refused"))
	e.Handle(nil)
	out := buf.String()
	if n := strings.Count(out, "trace export failed"); n != 2 {
		t.Fatalf("%d log lines, want 2:\n%s", n, out)
	}
	if !strings.Contains(out, "not_logged_since_last=4") {
		t.Fatalf("the second line does not count the 4 suppressed:\n%s", out)
	}
}
