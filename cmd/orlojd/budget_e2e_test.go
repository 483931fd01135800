package main

import (
	"strings"
	"testing"
)

// TestBudgetThroughServe: the budget flags reach a started orlojd serve.
// A task allowed 20 model tokens dead-letters as budget before its second
// model call; task get shows the budget and what was spent; a DLQ retry
// with more budget finishes it from the ledger, each model call made once.
func TestBudgetThroughServe(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	n := startNode(t, withStandins(s))
	n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--version", "v1", "--tools", "http,model",
		"--budget", "calls=50")
	id := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, s.URL+"/blobs/invoice-2.txt"),
		"--budget", "tokens=20"))
	n.fails(1, []string{"dead_letter", "budget", "max_tokens 20"}, "task", "wait", id)
	got := n.ok("task", "get", id)
	for _, want := range []string{"Budget:   calls 50, tokens 20", "Spent:    3 calls"} {
		if !strings.Contains(got, want) {
			t.Fatalf("task get lacks %q:\n%s", want, got)
		}
	}
	if c := s.Counts(); c.Model != 1 {
		t.Fatalf("model saw %d requests before the refusal; want 1 (the second call is over budget)", c.Model)
	}
	n.fails(2, []string{"--budget"}, "dlq", "retry", id, "--budget", "tokens=-1")
	n.ok("dlq", "retry", id, "--budget", "tokens=100000")
	n.ok("task", "wait", id)
	if c := s.Counts(); c.Model != 2 || c.RecordEffects != 1 {
		t.Fatalf("after the retry: %+v; want 2 model requests (one replayed, one new) and 1 record", c)
	}
}
