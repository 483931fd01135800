package main

import (
	"strings"
	"testing"
)

// TestRunCommand drives `orlojd run` with a real agent and the hostile
// modules of sandbox/testdata: each failure exits 1 with one line saying
// what went wrong.
func TestRunCommand(t *testing.T) {
	t.Parallel()
	needBinary(t)
	const hostile = "../../sandbox/testdata/"
	tests := []struct {
		name     string
		args     []string
		code     int
		stdout   string   // exact, when code is 0
		lastLine []string // substrings of stderr's last line, when code is not 0
	}{
		{"hello echoes its input", []string{agent("hello"), "--input", `{"greeting": "hi"}`}, 0, `{"greeting": "hi"}` + "\n", nil},
		{"infinite loop hits the deadline", []string{hostile + "loop.wasm", "--timeout", "1s"}, 1, "", []string{"orlojd: loop.wasm:", "deadline"}},
		{"forbidden import is refused by name", []string{hostile + "evil_import.wasm"}, 1, "", []string{"orlojd: evil_import.wasm:", "evil.steal"}},
		{"malformed module", []string{hostile + "malformed.wasm"}, 1, "", []string{"orlojd: malformed.wasm:", "does not compile"}},
		{"exit code 3", []string{hostile + "exit3.wasm"}, 1, "", []string{"orlojd: exit3.wasm:", "code 3"}},
		{"bad input is bad usage", []string{agent("hello"), "--input", "{"}, 2, "", []string{"--input"}},
		{"no module is bad usage", nil, 2, "", []string{"expected one FILE.wasm"}},
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
					t.Fatalf("stdout %q, want %q", r.stdout, tt.stdout)
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
