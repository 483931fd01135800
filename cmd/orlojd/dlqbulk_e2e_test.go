package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/orloj/orloj/host/api"
)

// TestDLQBulkOverSeveralRequests: a node acts on at most api.MaxBulk dead
// letters per bulk request; `dlq discard --all` asks again while more
// remain, says so as it goes, and leaves none.
func TestDLQBulkOverSeveralRequests(t *testing.T) {
	t.Parallel()
	const token = "e2e-bulk-token-0123456789abcdef"
	n := startNode(t, withEnv("ORLOJ_TOKEN="+token))
	n.ok("agent", "push", "../../sandbox/testdata/exit3.wasm", "--name", "exit3")
	total := api.MaxBulk + 1
	for i := range total {
		// Submit and wait in one request: exit code 3 dead-letters at once.
		var tv api.TaskView
		n.post(http.StatusCreated, &tv, "/v1/tasks?wait=30s", "application/json", []byte(`{"agent":"exit3"}`), token)
		if tv.State != "dead_letter" {
			t.Fatalf("task %d: %s, want dead_letter", i, tv.State)
		}
	}
	r := n.cli("dlq", "discard", "--all", "--agent", "exit3", "--reason", "bulk test")
	if r.code != 0 {
		t.Fatalf("dlq discard --all: exit %d\n%s", r.code, r)
	}
	if ids := strings.Fields(r.stdout); len(ids) != total {
		t.Fatalf("dlq discard --all printed %d IDs, want %d", len(ids), total)
	}
	for _, want := range []string{fmt.Sprintf("discarded %d task(s), 1 more match", api.MaxBulk), fmt.Sprintf("discarded %d task(s)\n", total)} {
		if !strings.Contains(r.stderr, want) {
			t.Fatalf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	var left []api.TaskView
	n.okJSON(&left, "dlq", "ls")
	if len(left) != 0 {
		t.Fatalf("%d dead letters left after discard --all", len(left))
	}
}
