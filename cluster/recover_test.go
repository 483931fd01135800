package cluster

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// panickyClock panics while armed and counts the panics, so a test can see a
// leader duty's pass fail and the duty carry on.
type panickyClock struct {
	*fakeClock
	armed  atomic.Bool
	panics atomic.Int32
}

func (c *panickyClock) Now() time.Time {
	if c.armed.Load() {
		c.panics.Add(1)
		panic("clock broke")
	}
	return c.fakeClock.Now()
}

// waitFor waits, without sleeping, until cond holds: it looks again on every
// applied change and every few expiry intervals.
func waitFor(t *testing.T, n *Node, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-n.FSM().Changed():
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// TestLeaderDutiesRecoverFromPanics: a lease takeover and an expiry pass that
// panic are logged and tried again; the node keeps leading and expires the
// lease once the fault clears.
func TestLeaderDutiesRecoverFromPanics(t *testing.T) {
	t.Parallel()
	clock := &panickyClock{fakeClock: newFakeClock(time.Unix(1000, 0))}
	clock.armed.Store(true)
	cfg := testConfig(t, t.TempDir(), clock.fakeClock)
	cfg.Clock = clock.Now
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	waitFor(t, n, "two failed takeovers", func() bool { return clock.panics.Load() >= 2 })
	if n.IsLeader() {
		t.Fatal("leading before the takeover succeeded")
	}
	clock.armed.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}

	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, &SubmitTask{Task: Task{ID: "t", Agent: "doc", Version: "v1"}, Now: clock.fakeClock.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, &ClaimTask{Node: "w", TTL: time.Second, Now: clock.fakeClock.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	before := clock.panics.Load()
	clock.armed.Store(true)
	waitFor(t, n, "two failed expiry passes", func() bool { return clock.panics.Load() >= before+2 })
	clock.fakeClock.Add(2 * time.Second)
	clock.armed.Store(false)
	waitFor(t, n, "the lease to expire", func() bool {
		tk, _ := n.FSM().Task("t")
		return tk.State == StateRetryPending
	})
}
