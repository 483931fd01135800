package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The guest SDKs' example agents are built by `make guest-agents` (clang and
// wasi-libc for C, rustc with the wasm32 target for Rust, npm for
// AssemblyScript's compiler), not by TestMain,
// which needs only Go. CI installs the toolchains, so a missing module fails
// the test; ORLOJ_SKIP_GUEST_SDKS=1 skips these tests on a machine without
// them.
func guestAgent(t *testing.T, lang, name string) string {
	t.Helper()
	if os.Getenv("ORLOJ_SKIP_GUEST_SDKS") == "1" {
		t.Skip("ORLOJ_SKIP_GUEST_SDKS=1: the C, Rust and AssemblyScript example agents are not tested")
	}
	p, err := filepath.Abs(filepath.Join("..", "..", "bin", "agents-"+lang, name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the %s example agent is missing (%v): run `make guest-agents` in the repository root "+
			"(needs clang, lld, wasi-libc, libclang-rt-dev-wasm32, rustc with the wasm32-wasi target, and npm; see docs/sdks.md), "+
			"or set ORLOJ_SKIP_GUEST_SDKS=1 to skip", lang, err)
	}
	return p
}

// TestGuestSDKDocpipeline runs the C, Rust and AssemblyScript docpipeline
// agents through the Go docpipeline's scenario on a started node: the
// records service fails twice, so the task takes three attempts; OCR and the
// model are invoked once each and replayed after; the notification each
// attempt emits is delivered once, after the task succeeded; and a document
// without a date dead-letters as permanent, naming the problem. The tinybuf builds offer
// the host an 8-byte buffer first, which no answer fits: they pass only if
// the SDK's buffer_too_small → response path returns every body, and every
// status, intact.
func TestGuestSDKDocpipeline(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ lang, build string }{
		{"c", "docpipeline"}, {"c", "docpipeline-tinybuf"}, {"rust", "docpipeline"}, {"rust", "docpipeline-tinybuf"},
		{"assemblyscript", "docpipeline"}, {"assemblyscript", "docpipeline-tinybuf"},
	} {
		lang := tc.lang
		t.Run(lang+"/"+tc.build, func(t *testing.T) {
			t.Parallel()
			wasm := guestAgent(t, lang, tc.build)
			s := startStandins(t)
			notify := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
				var note struct{ Text string }
				if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" || json.Unmarshal(body, &note) != nil {
					http.Error(w, "want a POST of JSON", http.StatusBadRequest)
					return
				}
				if note.Text != s.URL+"/blobs/invoice-1.txt is an invoice from ACME Tools GmbH" {
					http.Error(w, fmt.Sprintf("unexpected text %q", note.Text), http.StatusBadRequest)
					return
				}
				fmt.Fprint(w, `{"ok":true}`)
			})
			n := startNode(t, withStandins(s))
			name := "docpipeline-" + lang
			n.ok("agent", "push", wasm, "--name", name, "--version", "v1", "--tools", "http,model", "--max-attempts", "5")

			s.FailNextRecords(2)
			in, _ := json.Marshal(map[string]string{"document": s.URL + "/blobs/invoice-1.txt", "ocr_url": s.URL + "/ocr",
				"records_url": s.URL + "/records", "notify_url": notify.url + "/notify"})
			id := strings.TrimSpace(n.ok("task", "submit", name, "--input", string(in)))
			if out := n.ok("task", "wait", id, "--timeout", "2m"); !strings.Contains(out, "succeeded") {
				t.Fatalf("wait printed:\n%s", out)
			}
			var tk taskJSON
			n.okJSON(&tk, "task", "get", id)
			want := `{"class":"invoice","fields":{"vendor":"ACME Tools GmbH","total":1249.5,"currency":"EUR","date":"2026-11-02"},"record":{"id":"rec-1"}}`
			if tk.State != "succeeded" || tk.Attempts != 3 || tk.Error != nil || compact(tk.Output) != want {
				t.Fatalf("task get = %+v, output %s; want 3 attempts and %s", tk, tk.Output, want)
			}

			var calls []callJSON
			n.okJSON(&calls, "task", "calls", id)
			got := outcomes(calls)
			for tool, w := range map[string]map[string]int{
				"http":  {"invoked": 3, "replayed": 4, "error": 2}, // fetch, OCR, record (failed twice)
				"model": {"invoked": 2, "replayed": 4},             // classify, extract
			} {
				for outcome, k := range w {
					if got[tool][outcome] != k {
						t.Errorf("calls: %s %s = %d, want %d (all %v)", tool, outcome, got[tool][outcome], k, got)
					}
				}
			}
			if c := s.Counts(); c.Blob != 1 || c.OCR != 1 || c.Model != 2 || c.Records != 3 || c.RecordEffects != 1 || c.DuplicateKeys != 0 {
				t.Fatalf("stand-in counts %+v: want each step invoked once, the record written once", c)
			}

			// Three attempts staged the notification; the outbox performs it
			// once, after the task succeeded.
			deadline := time.Now().Add(time.Minute)
			for {
				var events []struct{ Type, Tool, Message string }
				n.okJSON(&events, "task", "events", id)
				var fx []string
				for _, e := range events {
					if strings.HasPrefix(e.Type, "effect_") {
						fx = append(fx, e.Type+" "+e.Tool+" "+e.Message)
					}
				}
				if len(fx) == 1 && fx[0] == "effect_dispatched http " {
					// The guest's log lines are in the journal too.
					var logged bool
					for _, e := range events {
						logged = logged || strings.Contains(e.Message, "6/6 record: records service answered 201")
					}
					if !logged {
						t.Fatalf("no journal line from the guest's log: %+v", events)
					}
					break
				}
				if len(fx) > 0 || time.Now().After(deadline) {
					t.Fatalf("effect events = %q, want one effect_dispatched for http", fx)
				}
				time.Sleep(50 * time.Millisecond) // a poll interval, not synchronisation
			}
			notify.checkOneKeyed(t, "notify")

			// A document without a date fails validation: permanent, straight
			// to the dead-letter queue, with the reason in the error.
			poison := docInput(t, s, s.URL+"/blobs/poison.txt")
			r := n.fails(1, []string{"dead_letter", "permanent"}, "task", "submit", name, "--input", poison, "--wait", "-o", "json")
			var dead taskJSON
			if err := json.Unmarshal([]byte(r.stdout), &dead); err != nil || dead.Attempts != 1 ||
				dead.Error == nil || !strings.Contains(dead.Error.StderrTail, "date is missing") {
				t.Fatalf("poison document: %v\n%s", err, r)
			}
		})
	}
}
