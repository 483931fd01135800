package main

import (
	"strings"
	"testing"
)

// TestReactorAgentThroughServe: docpipeline built as a pre-initialized
// reactor is pushed (its initialization runs at the push), runs on a
// started orlojd serve, and its retry after two failed writes replays what
// the first attempts recorded, as the command build does.
func TestReactorAgentThroughServe(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	n := startNode(t, withStandins(s))
	n.ok("agent", "push", agent("docpipeline-reactor"), "--name", "docpipeline", "--version", "v1", "--tools", "http,model")
	s.FailNextRecords(2)
	id := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, s.URL+"/blobs/invoice-1.txt")))
	if out := n.ok("task", "wait", id); !strings.Contains(out, "succeeded") {
		t.Fatalf("wait printed:\n%s", out)
	}
	var calls []callJSON
	n.okJSON(&calls, "task", "calls", id)
	if got := outcomes(calls); got["http"]["replayed"] != 4 || got["model"]["replayed"] != 4 || got["model"]["invoked"] != 2 {
		t.Fatalf("calls of the reactor's attempts: %v", got)
	}
	if c := s.Counts(); c.Blob != 1 || c.OCR != 1 || c.Model != 2 || c.RecordEffects != 1 || c.DuplicateKeys != 0 {
		t.Fatalf("stand-in counts %+v", c)
	}
}

// A reactor the node cannot pre-initialize (its initializer calls the
// host) still runs, but every attempt pays its initialization: the push
// says so, on stderr and in the API's answer, and a pre-initialized
// reactor's push carries no warning.
func TestPushWarnsOfReactorWithoutSnapshot(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	r := n.cli("agent", "push", agent("hostinit"))
	if r.code != 0 || !strings.Contains(r.stderr, "warning: this reactor cannot be pre-initialized") ||
		!strings.Contains(r.stderr, "initialization called the orloj_v1 host") || !strings.Contains(r.stdout, "pushed hostinit@") {
		t.Fatalf("push of hostinit: %s", r)
	}
	var v struct{ Warnings []string }
	n.okJSON(&v, "agent", "push", agent("hostinit")) // identical push: the same answer
	if len(v.Warnings) != 1 {
		t.Fatalf("push -o json: warnings %q, want one", v.Warnings)
	}
	id := strings.TrimSpace(n.ok("task", "submit", "hostinit", "--input", "{}"))
	if out := n.ok("task", "wait", id); !strings.Contains(out, "succeeded") {
		t.Fatalf("wait printed:\n%s", out)
	}
	if r := n.cli("agent", "push", agent("docpipeline-reactor"), "--tools", "http"); r.code != 0 || strings.Contains(r.stderr, "warning") {
		t.Fatalf("push of a pre-initialized reactor: %s", r)
	}
}
