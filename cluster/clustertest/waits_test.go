package clustertest_test

import (
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/cluster/clustertest"
)

// TestWakeSurvivesLeaderLoss: a task suspends on a sleep and the leader is
// closed before the wake time; the new leader wakes it, once, and every
// replica holds the sleep's answer.
func TestWakeSurvivesLeaderLoss(t *testing.T) {
	t.Parallel()
	c := clustertest.NewCluster(t, 3)
	now := time.Now().UnixNano()
	c.Apply(t, &cluster.PutAgent{Agent: cluster.Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: now})
	c.Apply(t, &cluster.SubmitTask{Task: cluster.Task{ID: "t1", Agent: "doc", Version: "v1"}, Now: now})
	claim, _ := c.Apply(t, &cluster.ClaimTask{Node: "w", TTL: time.Minute, Now: now}).(*cluster.Claim)
	if claim == nil {
		t.Fatal("nothing claimed")
	}
	until := time.Now().Add(time.Second).UnixNano()
	c.Apply(t, &cluster.Suspend{TaskID: "t1", Token: claim.Lease.Token,
		Wait: cluster.Wait{Kind: cluster.WaitSleep, CallID: "s1", Tool: "orloj.sleep", Until: until}, Now: time.Now().UnixNano()})
	old := c.Leader(t)
	var rest []*cluster.Node
	for _, n := range c.Nodes {
		if n != old {
			rest = append(rest, n)
			waitTask(t, n, "t1", cluster.StateWaiting)
		}
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	for _, n := range rest {
		tk := waitTask(t, n, "t1", cluster.StateQueued)
		if tk.Wait != nil || tk.UpdatedAt < until {
			t.Fatalf("node %s: woken task %+v (updated %d, wake time %d)", n.ID(), tk, tk.UpdatedAt, until)
		}
		if rec, ok, err := n.FSM().LedgerRecord("t1", "s1"); err != nil || !ok || rec.Status != "ok" {
			t.Fatalf("node %s: sleep record %+v, %v, %v", n.ID(), rec, ok, err)
		}
	}
	// One wake reached the journal (a repeated WakeTask is a no-op; see
	// cluster's TestSleepSuspendFencedAndWokenOnce).
	leader := c.Leader(t)
	evs, err := leader.FSM().Journal("t1")
	if err != nil {
		t.Fatal(err)
	}
	woken := 0
	for _, e := range evs {
		if e.Type == cluster.EventWoken {
			woken++
		}
	}
	if woken != 1 {
		t.Fatalf("%d woken events, want 1", woken)
	}
}
