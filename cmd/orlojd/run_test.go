package main

import (
	"strings"
	"testing"
)

// TestRunCommand drives `orlojd run` with real agents and the hostile
// modules of sandbox/testdata: each failure exits 1 with one line saying
// what went wrong, and classified as a node classifies it.
func TestRunCommand(t *testing.T) {
	t.Parallel()
	needBinary(t)
	const hostile = "../../sandbox/testdata/"
	doc := []string{agent("docpipeline"), "--tools", "testdata/docpipeline-stubs.json",
		"--input", `{"document":"http://x/blob","ocr_url":"http://x/ocr","records_url":"http://x/records"}`}
	const docOut = `{"class":"invoice","fields":{"vendor":"ACME","total":12.5,"currency":"EUR","date":"2026-01-01"},"record":{"id":1}}` + "\n"
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string   // exact, when code is 0
		stderr   []string // substrings of stderr, when code is 0
		lastLine []string // substrings of stderr's last line, when code is not 0
	}{
		// A node keeps an output compacted; so does a local run.
		{"hello echoes its input", []string{agent("hello"), "--input", `{"greeting": "hi"}`}, 0, `{"greeting":"hi"}` + "\n", []string{"[info] hello: echoing"}, nil},
		{"a transient failure is retried as on a node",
			append(doc, "--attempts", "2"), 0, docOut,
			[]string{"--- attempt 1 ---", "ocr 503", "--- attempt 2 ---", "6/6 record"}, nil},
		{"a retry replays every recorded call",
			append(doc, "--attempts", "2", "--retry"), 0, docOut,
			[]string{"--- attempt 3 ---", "replay: attempt 3 replayed 5 calls of attempt 2 and wrote the same output"}, nil},
		{"no attempts left is a dead letter",
			doc, 1, "", nil, []string{"orlojd: docpipeline.wasm:", "dead_letter (attempts_exhausted)", "1 of 1", "code 75"}},
		{"a tool without a stub is outside the manifest",
			[]string{doc[0], doc[3], doc[4]}, 1, "", nil, []string{"dead_letter (policy)", "tool http denied"}},
		{"infinite loop hits the deadline", []string{hostile + "loop.wasm", "--timeout", "1s"}, 1, "", nil, []string{"orlojd: loop.wasm:", "deadline"}},
		{"forbidden import is refused by name", []string{hostile + "evil_import.wasm"}, 1, "", nil, []string{"orlojd: evil_import.wasm:", "evil.steal"}},
		{"malformed module", []string{hostile + "malformed.wasm"}, 1, "", nil, []string{"orlojd: malformed.wasm:", "does not compile"}},
		{"exit code 3 is permanent", []string{hostile + "exit3.wasm", "--attempts", "3"}, 1, "", nil, []string{"orlojd: exit3.wasm:", "dead_letter (permanent)", "code 3", "after 1 attempt"}},
		{"bad input is bad usage", []string{agent("hello"), "--input", "{"}, 2, "", nil, []string{"--input"}},
		{"environment variables are refused", []string{agent("hello"), "--env", "A=1"}, 2, "", nil, []string{"--env", "no environment variables"}},
		{"attempts out of range", []string{agent("hello"), "--attempts", "0"}, 2, "", nil, []string{"--attempts"}},
		{"no module is bad usage", nil, 2, "", nil, []string{"expected one FILE.wasm"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"run", "--cache-dir", t.TempDir()}, tt.args...)
			r := runCLI(t, cleanEnv(), args...)
			if r.code != tt.code {
				t.Fatalf("want exit %d, got %s", tt.code, r)
			}
			if tt.code == 0 {
				if r.stdout != tt.stdout {
					t.Fatalf("stdout %q, want %q (stderr %s)", r.stdout, tt.stdout, r.stderr)
				}
				for _, w := range tt.stderr {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr does not say %q:\n%s", w, r.stderr)
					}
				}
				return
			}
			lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			for _, w := range tt.lastLine {
				if !strings.Contains(last, w) {
					t.Errorf("last line of stderr %q does not say %q", last, w)
				}
			}
			if len(tt.args) > 0 && strings.HasSuffix(tt.args[0], "loop.wasm") && len(lines) != 1 {
				t.Errorf("a guest that prints nothing should fail in one line, got:\n%s", r.stderr)
			}
		})
	}
}
