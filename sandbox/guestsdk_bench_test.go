package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docTools are instant in-memory stand-ins for the docpipeline's services:
// the blob store, OCR, the model and the records service.
func docTools() map[string]ToolFunc {
	return map[string]ToolFunc{
		"http": func(_ context.Context, params json.RawMessage) (json.RawMessage, error) {
			var p struct{ Method, URL, Body string }
			if err := json.Unmarshal(params, &p); err != nil {
				return nil, err
			}
			res := map[string]any{"status": 200, "headers": map[string]string{}}
			switch {
			case strings.HasSuffix(p.URL, "/blobs/invoice-1.txt"):
				res["body"] = "INVOICE\nVendor: ACME Tools GmbH\nTotal: 1249.50 EUR\nDate: 2026-11-02\n"
			case strings.HasSuffix(p.URL, "/ocr"):
				res["body"] = p.Body
			default: // the records service
				res["status"], res["body"] = 201, `{"id":"rec-1"}`
			}
			return json.Marshal(res)
		},
		"model": func(_ context.Context, params json.RawMessage) (json.RawMessage, error) {
			answer := "```json\n{\"currency\":\"EUR\",\"date\":\"2026-11-02\",\"total\":1249.5,\"vendor\":\"ACME Tools GmbH\"}\n```"
			if strings.Contains(string(params), "Classify") {
				answer = "invoice"
			}
			return json.Marshal(map[string]any{"content": answer, "usage": map[string]int{"prompt_tokens": 40, "completion_tokens": 2}})
		},
	}
}

// guestSDKModule reads an example agent that `make guest-agents` built.
func guestSDKModule(b *testing.B, lang string) []byte {
	b.Helper()
	if os.Getenv("ORLOJ_SKIP_GUEST_SDKS") == "1" {
		b.Skip("ORLOJ_SKIP_GUEST_SDKS=1")
	}
	wasm, err := os.ReadFile(filepath.Join("..", "bin", "agents-"+lang, "docpipeline.wasm"))
	if err != nil {
		b.Fatalf("%v: run `make guest-agents` first (docs/sdks.md), or set ORLOJ_SKIP_GUEST_SDKS=1", err)
	}
	return wasm
}

// BenchmarkDocpipelineByLanguage runs one whole successful attempt of the
// docpipeline agent (input, six tool calls against instant in-memory tools,
// six log lines, the output) for the Go example, as a command and as a
// reactor, and for the C, Rust and AssemblyScript SDKs' examples (commands).
// ns/op is what the sandbox and the guest cost per attempt, with no ledger,
// Raft or network; module-bytes is the module's size.
func BenchmarkDocpipelineByLanguage(b *testing.B) {
	in := []byte(`{"document":"http://blobs/blobs/invoice-1.txt","ocr_url":"http://ocr/ocr","records_url":"http://records/records"}`)
	for _, c := range []struct {
		name string
		wasm func(b *testing.B) []byte
	}{
		{"go-command", func(b *testing.B) []byte {
			return buildGo(b, "docpipeline.command", "../examples/agents/docpipeline")
		}},
		{"go-reactor", func(b *testing.B) []byte {
			return buildGo(b, "docpipeline.reactor", "../examples/agents/docpipeline", "-buildmode=c-shared")
		}},
		{"c", func(b *testing.B) []byte { return guestSDKModule(b, "c") }},
		{"rust", func(b *testing.B) []byte { return guestSDKModule(b, "rust") }},
		{"assemblyscript", func(b *testing.B) []byte { return guestSDKModule(b, "assemblyscript") }},
	} {
		b.Run(c.name, func(b *testing.B) {
			wasm := c.wasm(b)
			m := mustCompile(b, shared, wasm)
			tools := docTools()
			for b.Loop() {
				d := NewMemDispatcher(in, tools)
				res := shared.Run(context.Background(), m, RunConfig{TaskID: "bench", Dispatcher: d})
				if res.Outcome != OutcomeSuccess {
					b.Fatalf("outcome %v (%v)\n%s", res.Outcome, res.Err, res.Stderr)
				}
				if out := string(d.TaskOutput()); !strings.Contains(out, `"record":{"id":"rec-1"}`) {
					b.Fatalf("output %s", out)
				}
			}
			b.ReportMetric(float64(len(wasm)), "module-bytes")
		})
	}
}
