package mcp

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// A stdio server's stderr reaches the log a line at a time, each line
// clipped, however the writes split it.
func TestLineLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := &lineLogger{log: hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true})}
	l.Write([]byte("first li"))
	l.Write([]byte("ne\nsecond\n" + strings.Repeat("x", 5000)))
	l.Write([]byte("yyy\n\n"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], `"line":"first line"`) || !strings.Contains(lines[1], `"line":"second"`) {
		t.Errorf("lines %q", lines[:2])
	}
	if len(lines[2]) > maxLineBytes+200 || strings.Contains(lines[2], "y") || !strings.Contains(lines[2], "…") {
		t.Errorf("long line logged as %d bytes: %.80s...; want it clipped and marked", len(lines[2]), lines[2])
	}
}
