package host

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// A task retried on a node without the model tool replays the model calls
// the ledger holds (the ledger comes before the tool) and fails only at the
// first call that would have to reach the tool.
func TestReplayNeedsTheLedgerNotTheTool(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	tools := docTools(t, s)
	e := newEnv(t, tools, withoutWorkers())
	var noModel []plugins.Tool
	for _, tl := range tools {
		if tl.Name() != "model" {
			noModel = append(noModel, tl)
		}
	}
	reg, err := plugins.NewRegistry(noModel...)
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := NewExecutor(e.node, runtime(t), reg, time.Now, e.log)
	ag := e.pushAgent("docpipeline", "v1", agentPath(t, "docpipeline"), "http", "model")
	policy := cluster.RetryPolicy{MaxAttempts: 5, Base: time.Millisecond, Factor: 1, Cap: time.Millisecond}
	claim := func(id string) *cluster.Claim {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			// The retry's backoff is a millisecond; claims find nothing
			// until it has passed.
			c, _ := e.apply(&cluster.ClaimTask{Node: "n1", TTL: time.Minute, Now: time.Now().UnixNano()}).(*cluster.Claim)
			if c != nil && c.Task.ID == id {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("no claim of %s", id)
			}
			time.Sleep(time.Millisecond) // the backoff is on the clock, not an event to await
		}
	}

	// Attempt 1, on a node with every tool: the model calls are recorded,
	// then the records write fails transiently.
	s.FailNextRecords(1)
	e.submit("doc-1", ag.Name, ag.Version, docInput(s, "invoice-1.txt"), policy)
	if rep := e.exec.Run(context.Background(), claim("doc-1")); rep.Succeeded || rep.Class != cluster.ClassTransient {
		t.Fatalf("attempt 1: %+v", rep)
	}
	// Attempt 2, on a node without the model tool: it replays them.
	if rep := elsewhere.Run(context.Background(), claim("doc-1")); !rep.Succeeded {
		t.Fatalf("attempt 2 on a node without the model tool: %+v", rep)
	}
	if c := s.Counts(); c.Model != 2 {
		t.Errorf("model stand-in asked %d times, want 2 (attempt 1 only)", c.Model)
	}
	if got := callOutcomes(e.journal("doc-1"))["model"]; got[OutcomeReplayed] != 2 || got[OutcomeInvoked] != 2 {
		t.Errorf("model calls: %v; want 2 invoked (attempt 1) and 2 replayed (attempt 2)", got)
	}

	// A task whose model calls were never made fails there, saying why.
	s.FailNextRecords(0)
	e.submit("doc-2", ag.Name, ag.Version, docInput(s, "invoice-1.txt"), policy)
	rep := elsewhere.Run(context.Background(), claim("doc-2"))
	if rep.Succeeded || rep.Err == nil {
		t.Fatalf("attempt without a recorded model call: %+v", rep)
	}
	tk, _ := e.node.FSM().Task("doc-2")
	if tk.Error == nil || !strings.Contains(tk.Error.StderrTail, `no tool "model" on this node`) {
		t.Errorf("task error %+v, want it to name the missing tool", tk.Error)
	}
}
