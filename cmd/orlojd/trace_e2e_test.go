package main

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// otlpReceiver is a loopback OTLP/HTTP trace receiver: it keeps every
// request body as sent (to search for secrets) and the spans decoded.
type otlpReceiver struct {
	url string

	mu     sync.Mutex
	bodies [][]byte
	spans  []*tracepb.Span
	res    []*commonpb.KeyValue // the resource attributes of the last batch
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost || req.URL.Path != "/v1/traces" {
			http.NotFound(w, req)
			return
		}
		var body io.Reader = req.Body
		if req.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(req.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(io.LimitReader(body, 64<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var msg collectortrace.ExportTraceServiceRequest
		if err := proto.Unmarshal(b, &msg); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.bodies = append(r.bodies, b)
		for _, rs := range msg.ResourceSpans {
			r.res = rs.GetResource().GetAttributes()
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
		out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func (r *otlpReceiver) snapshot() ([]*tracepb.Span, []*commonpb.KeyValue, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*tracepb.Span(nil), r.spans...), r.res, bytes.Join(r.bodies, nil)
}

func spanAttr(attrs []*commonpb.KeyValue, key string) string {
	for _, kv := range attrs {
		if kv.Key == key {
			switch v := kv.Value.Value.(type) {
			case *commonpb.AnyValue_StringValue:
				return v.StringValue
			case *commonpb.AnyValue_IntValue:
				return fmt.Sprint(v.IntValue)
			}
		}
	}
	return ""
}

// TestTracesExportedOverOTLP: `orlojd serve` with an OTLP endpoint in its
// environment exports a task's spans: one attempt span in the trace the
// task ID names, a child span per call with its outcome and status, the
// resource named by OTEL_SERVICE_NAME. The declared tool's request carries
// the call span as its traceparent; a guest's own is refused. The batch
// delay is an hour, so the spans arrive through the flush at shutdown
// (SIGTERM), and the secret the tool's header was built from is in none of
// the exported bytes.
func TestTracesExportedOverOTLP(t *testing.T) {
	t.Parallel()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	secret := "sk-trace-" + hex.EncodeToString(b)
	var mu sync.Mutex
	var parents []string
	svc := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		mu.Lock()
		parents = append(parents, r.Header.Get("Traceparent"))
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/fail") {
			http.Error(w, "no", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true}`))
	})
	otlp := startOTLPReceiver(t)
	n := startNode(t, withEnv("ORLOJ_SECRET_SLACK_TOKEN="+secret,
		"OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.url,
		"OTEL_SERVICE_NAME=orloj-e2e",
		"OTEL_BSP_SCHEDULE_DELAY=3600000"))
	n.waitLog("exporting traces over OTLP/HTTP", 10*time.Second)

	def := filepath.Join(t.TempDir(), "slack.yaml")
	if err := os.WriteFile(def, []byte(`name: slack
kind: http
http:
  base_url: `+svc.url+`/api
  methods: [POST]
  path_prefixes: [/chat.postMessage, /fail]
  headers:
    Authorization: {secret: slack-token, format: "Bearer %s"}
  semantics: idempotent
`), 0o600); err != nil {
		t.Fatal(err)
	}
	n.ok("tool", "push", def)
	n.ok("agent", "push", agent("declared"), "--name", "declared", "--tools", "slack")
	in, _ := json.Marshal(map[string]any{"tool": "slack", "calls": []map[string]any{
		{"method": "POST", "path": "/chat.postMessage", "body": "hello"},
		{"method": "POST", "path": "/fail"},
		{"method": "POST", "path": "/chat.postMessage", "headers": map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}},
	}})
	id := strings.TrimSpace(n.ok("task", "submit", "declared", "--input", string(in)))
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id, "-o", "json")
	if tk.State != "succeeded" {
		t.Fatalf("task %+v", tk)
	}
	var outs []struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(tk.Output, &outs); err != nil || len(outs) != 3 || !strings.Contains(outs[2].Error, "trace context") {
		t.Fatalf("output %s (%v): want the third call's traceparent refused", tk.Output, err)
	}
	if spans, _, _ := otlp.snapshot(); len(spans) != 0 {
		t.Fatalf("%d spans exported before shutdown with an hour's batch delay", len(spans))
	}
	if code := n.signal(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, n.log)
	}

	spans, res, raw := otlp.snapshot()
	sum := sha256.Sum256([]byte(id))
	wantTrace := sum[:16]
	var attempt *tracepb.Span
	calls := map[string]*tracepb.Span{} // by outcome/status
	for _, s := range spans {
		if !bytes.Equal(s.TraceId, wantTrace) {
			t.Errorf("span %q in trace %x, want %x (sha256 of the task ID)", s.Name, s.TraceId, wantTrace)
		}
		if strings.HasPrefix(s.Name, "attempt ") {
			attempt = s
		}
	}
	if attempt == nil {
		t.Fatalf("no attempt span among %d exported", len(spans))
	}
	for k, want := range map[string]string{"orloj.task.id": id, "orloj.agent.name": "declared", "orloj.agent.version": tk.Version,
		"orloj.attempt.number": "1", "orloj.node.id": "n1", "orloj.attempt.outcome": "succeeded"} {
		if got := spanAttr(attempt.Attributes, k); got != want {
			t.Errorf("attempt span %s = %q, want %q", k, got, want)
		}
	}
	for _, s := range spans {
		if s == attempt {
			continue
		}
		if !bytes.Equal(s.ParentSpanId, attempt.SpanId) {
			t.Errorf("span %q has parent %x, want the attempt %x", s.Name, s.ParentSpanId, attempt.SpanId)
		}
		if spanAttr(s.Attributes, "orloj.tool.name") != "slack" || spanAttr(s.Attributes, "orloj.call.id") == "" {
			t.Errorf("call span %q attributes %v", s.Name, s.Attributes)
		}
		calls[spanAttr(s.Attributes, "orloj.call.outcome")+"/"+spanAttr(s.Attributes, "orloj.call.status")] = s
	}
	ok, failed := calls["invoked/ok"], calls["invoked/tool_error"]
	if len(spans) != 4 || ok == nil || failed == nil || calls["invoked/permission_denied"] == nil {
		t.Fatalf("call spans %v (of %d spans); want invoked/ok, invoked/tool_error, invoked/permission_denied", keys(calls), len(spans))
	}
	if got := spanAttr(res, "service.name"); got != "orloj-e2e" {
		t.Errorf("resource service.name %q, want OTEL_SERVICE_NAME's", got)
	}
	mu.Lock()
	sent := append([]string(nil), parents...)
	mu.Unlock()
	if want := fmt.Sprintf("00-%x-%x-01", wantTrace, ok.SpanId); len(sent) != 2 || sent[0] != want {
		t.Errorf("the tool saw traceparent %q, want %q first (the task's trace, the call's span)", sent, want)
	}
	if bytes.Contains(raw, []byte(secret)) {
		t.Fatal("the exported spans hold the tool header's secret")
	}
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestTracesOfRetriedTaskOverOTLP: the document pipeline's first attempt
// fails at the records write and the second succeeds; the spans, exported
// while the node runs, make one trace with two attempt roots (numbers 1
// and 2), every call a child of its attempt, the second attempt's OCR,
// fetch and model calls replayed, and tokens only on the model calls the
// first attempt invoked.
func TestTracesOfRetriedTaskOverOTLP(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	otlp := startOTLPReceiver(t)
	n := startNode(t, withStandins(s), withEnv("OTEL_EXPORTER_OTLP_ENDPOINT="+otlp.url, "OTEL_BSP_SCHEDULE_DELAY=50"))
	n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--version", "v1", "--tools", "http,model",
		"--timeout", "20s", "--max-attempts", "3")
	s.FailNextRecords(1)
	id := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, s.URL+"/blobs/invoice-1.txt")))
	if out := n.ok("task", "wait", id); !strings.Contains(out, "succeeded") {
		t.Fatalf("wait printed:\n%s", out)
	}

	// Two attempts of five calls each: twelve spans, exported every 50 ms.
	var spans []*tracepb.Span
	deadline := time.Now().Add(time.Minute)
	for {
		spans, _, _ = otlp.snapshot()
		if len(spans) >= 12 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond) // polls the receiver; the export is the node's, on its clock
	}
	sum := sha256.Sum256([]byte(id))
	attempts := map[string]string{} // span ID → attempt number
	for _, sp := range spans {
		if !bytes.Equal(sp.TraceId, sum[:16]) {
			t.Errorf("span %q in trace %x, want %x", sp.Name, sp.TraceId, sum[:16])
		}
		if strings.HasPrefix(sp.Name, "attempt ") {
			if len(sp.ParentSpanId) != 0 {
				t.Errorf("attempt span with parent %x; want a root", sp.ParentSpanId)
			}
			attempts[string(sp.SpanId)] = spanAttr(sp.Attributes, "orloj.attempt.number") + ":" + spanAttr(sp.Attributes, "orloj.attempt.outcome")
		}
	}
	if len(spans) != 12 || len(attempts) != 2 {
		t.Fatalf("%d spans, attempts %v; want 12 spans, 2 attempts", len(spans), attempts)
	}
	got := map[string]int{} // "attempt:outcome → tool/call outcome" counts
	for _, sp := range spans {
		if strings.HasPrefix(sp.Name, "attempt ") {
			continue
		}
		a, ok := attempts[string(sp.ParentSpanId)]
		if !ok {
			t.Errorf("call span %q has parent %x, not an attempt", sp.Name, sp.ParentSpanId)
			continue
		}
		tool, outcome := spanAttr(sp.Attributes, "orloj.tool.name"), spanAttr(sp.Attributes, "orloj.call.outcome")
		got[a+" "+tool+"/"+outcome]++
		tokens := spanAttr(sp.Attributes, "orloj.call.tokens.prompt")
		if wantTokens := tool == "model" && outcome == "invoked"; wantTokens != (tokens != "" && tokens != "0") {
			t.Errorf("%s %s/%s: prompt tokens %q", a, tool, outcome, tokens)
		}
	}
	want := map[string]int{
		"1:transient http/invoked": 2, "1:transient http/error": 1, "1:transient model/invoked": 2,
		"2:succeeded http/replayed": 2, "2:succeeded http/invoked": 1, "2:succeeded model/replayed": 2,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("call spans by attempt and outcome:\n got %v\nwant %v", got, want)
	}
}

// TestTraceExportFailureIsLogged: a collector that cannot be reached costs
// a warning in the node's log, not a task and not the node; a protocol the
// node does not speak is refused at start, naming the variable.
func TestTraceExportFailureIsLogged(t *testing.T) {
	t.Parallel()
	closed := freePort(t) // nothing listens there
	n := startNode(t, withEnv("OTEL_EXPORTER_OTLP_ENDPOINT=http://"+closed,
		"OTEL_BSP_SCHEDULE_DELAY=50", "OTEL_EXPORTER_OTLP_TIMEOUT=500"))
	n.ok("agent", "push", agent("hello"), "--name", "hello")
	id := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"n":1}`))
	if out := n.ok("task", "wait", id); !strings.Contains(out, "succeeded") {
		t.Fatalf("wait printed:\n%s", out)
	}
	n.waitLog("trace export failed", 30*time.Second)
	if code := n.signal(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM with an unreachable collector\n%s", code, n.log)
	}

	env := append(cleanEnv(), "OTEL_EXPORTER_OTLP_ENDPOINT=http://"+closed, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc")
	r := runCLI(t, env, "serve", "--data-dir", t.TempDir(), "--api-addr", freePort(t), "--raft-addr", freePort(t))
	if r.code != 2 || !strings.Contains(r.stderr, "OTEL_EXPORTER_OTLP_PROTOCOL") {
		t.Fatalf("serve with the grpc protocol: %s; want exit 2 and a refusal naming the variable", r)
	}
}
