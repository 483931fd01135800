package main

import (
	"strings"
	"testing"
	"time"
)

// TestRetentionThroughServe: with `orlojd serve --retention 2s`, a task
// that succeeded is deleted with its calls and journal once it is older
// than that, while a dead letter stays.
func TestRetentionThroughServe(t *testing.T) {
	t.Parallel()
	n := startNode(t, withArgs("--retention", "2s"))
	n.ok("agent", "push", agent("hello"), "--name", "hello", "--version", "v1")
	n.ok("agent", "push", "../../sandbox/testdata/exit3.wasm", "--name", "exit3", "--version", "v1")
	done := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"x":1}`))
	n.ok("task", "wait", done)
	dead := strings.TrimSpace(n.ok("task", "submit", "exit3"))
	n.fails(1, []string{"dead_letter"}, "task", "wait", dead)
	n.ok("task", "events", done) // there before retention passes

	n.waitLog("compacted finished tasks", time.Minute) // a failure bound only
	n.fails(1, []string{"(not_found)"}, "task", "get", done)
	n.fails(1, []string{"(not_found)"}, "task", "events", done)
	n.fails(1, []string{"(not_found)"}, "task", "calls", done)
	var tk taskJSON
	n.okJSON(&tk, "task", "get", dead)
	if tk.State != "dead_letter" {
		t.Fatalf("the dead letter: %+v", tk)
	}
}
