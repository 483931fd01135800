package clustertest_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/cluster/clustertest"
)

func submit(t *testing.T, n *cluster.Node, id string) { submitAt(t, n, id, time.Now().UnixNano()) }

func submitAt(t *testing.T, n *cluster.Node, id string, now int64) {
	t.Helper()
	ctx := context.Background()
	if _, err := n.Apply(ctx, &cluster.PutAgent{Agent: cluster.Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: now}); err != nil {
		t.Fatalf("put agent: %v", err)
	}
	if _, err := n.Apply(ctx, &cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: "doc", Version: "v1"}, Now: now}); err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
}

// waitTask waits until n's replica holds task id in state.
func waitTask(t *testing.T, n *cluster.Node, id string, state cluster.TaskState) cluster.Task {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		changed := n.FSM().Changed()
		tk, err := n.FSM().Task(id)
		if err == nil && tk.State == state {
			return tk
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("node %s: task %s is %q (%v), want %q", n.ID(), id, tk.State, err, state)
		}
	}
}

func TestNewNodeLeadsAndApplies(t *testing.T) {
	t.Parallel()
	n := clustertest.NewNode(t)
	if !n.IsLeader() {
		t.Fatal("NewNode returned a node that does not lead")
	}
	submit(t, n, "t1")
	if tk, err := n.FSM().Task("t1"); err != nil || tk.State != cluster.StateQueued {
		t.Fatalf("task t1 = %+v, %v; want queued", tk, err)
	}
	// FSM rejections come back through Apply as they do on a disk node.
	_, err := n.Apply(context.Background(), &cluster.RenewLease{TaskID: "t1", Token: 99, TTL: time.Second, Now: time.Now().UnixNano()})
	if !errors.Is(err, cluster.ErrStaleToken) {
		t.Fatalf("renew with a token never granted: %v, want ErrStaleToken", err)
	}
	if n.InternalListener() != nil || n.PKI() != nil {
		t.Fatal("an in-memory node has no cluster port and no credentials")
	}
}

// The leader's duties run on an in-memory node: a lapsed lease is expired.
func TestNewNodeLeaderExpiresLeases(t *testing.T) {
	t.Parallel()
	var now atomic.Int64
	now.Store(time.Unix(1000, 0).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	n := clustertest.NewNode(t, clustertest.WithConfig(func(c *cluster.Config) { c.Clock = clock }))
	submitAt(t, n, "t", now.Load())
	r, err := n.Apply(context.Background(), &cluster.ClaimTask{Node: "w", TTL: time.Second, Now: now.Load()})
	if claim, ok := r.(*cluster.Claim); err != nil || !ok || claim == nil {
		t.Fatalf("claim: %v, %v", r, err)
	}
	now.Add(int64(2 * time.Second))
	tk := waitTask(t, n, "t", cluster.StateRetryPending)
	if got := tk.History[0].Outcome; got != string(cluster.ClassExpired) {
		t.Fatalf("attempt outcome %q, want %q", got, cluster.ClassExpired)
	}
}

func TestNewClusterReplicatesAndFailsOver(t *testing.T) {
	t.Parallel()
	c := clustertest.NewCluster(t, 3)
	if len(c.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(c.Nodes))
	}
	c.Apply(t, &cluster.PutAgent{Agent: cluster.Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: time.Now().UnixNano()})
	c.Apply(t, &cluster.SubmitTask{Task: cluster.Task{ID: "t1", Agent: "doc", Version: "v1"}, Now: time.Now().UnixNano()})
	for _, n := range c.Nodes {
		waitTask(t, n, "t1", cluster.StateQueued)
	}
	leader := c.Leader(t)
	var followers []*cluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			followers = append(followers, n)
		}
	}
	if len(followers) != 2 {
		t.Fatalf("%d followers, want 2", len(followers))
	}
	_, err := followers[0].Apply(context.Background(), &cluster.SubmitTask{Task: cluster.Task{ID: "t2", Agent: "doc", Version: "v1"}, Now: time.Now().UnixNano()})
	if !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("proposal on a follower: %v, want ErrNotLeader", err)
	}

	// Two of three remain: they elect a leader that has every entry.
	if err := leader.Close(); err != nil {
		t.Fatal(err)
	}
	next := c.Leader(t)
	if next == leader {
		t.Fatal("Leader returned the closed node")
	}
	if _, err := next.FSM().Task("t1"); err != nil {
		t.Fatalf("new leader %s lost task t1: %v", next.ID(), err)
	}
	c.Apply(t, &cluster.SubmitTask{Task: cluster.Task{ID: "t2", Agent: "doc", Version: "v1"}, Now: time.Now().UnixNano()})
	for _, n := range followers {
		waitTask(t, n, "t2", cluster.StateQueued)
	}
}

// A leader cut off from the others loses its lead to a new one; healed, it
// follows and catches up.
func TestClusterIsolateAndHeal(t *testing.T) {
	t.Parallel()
	c := clustertest.NewCluster(t, 3)
	old := c.Leader(t)
	i := slices.Index(c.Nodes, old)
	c.Isolate(i)
	// The majority elects a leader and commits without the old one.
	put := &cluster.PutAgent{Agent: cluster.Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: time.Now().UnixNano()}
	deadline := time.After(30 * time.Second)
	for done := false; !done; {
		for _, n := range c.Nodes {
			if n == old || !n.IsLeader() {
				continue
			}
			_, err := n.Apply(context.Background(), put)
			if err != nil && (!errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrOutcomeUnknown)) {
				t.Fatalf("put agent on the majority's leader %s: %v", n.ID(), err)
			}
			done = err == nil
			break
		}
		select {
		case <-deadline:
			t.Fatal("the majority side committed nothing")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if _, err := old.FSM().Agent("doc", "v1"); err == nil {
		t.Fatal("the isolated node applied an entry it was cut off from")
	}
	c.Heal()
	c.Apply(t, &cluster.SubmitTask{Task: cluster.Task{ID: "t1", Agent: "doc", Version: "v1"}, Now: time.Now().UnixNano()})
	waitTask(t, old, "t1", cluster.StateQueued)
	if old.IsLeader() {
		t.Fatal("the healed old leader still leads")
	}
}

// On a follower, a watch of task A sleeps through the replication of
// other tasks and wakes when A's change is applied there.
func TestFollowerWatchTask(t *testing.T) {
	t.Parallel()
	c := clustertest.NewCluster(t, 3)
	leader := c.Leader(t)
	var follower *cluster.Node
	for _, n := range c.Nodes {
		if n != leader {
			follower = n
			break
		}
	}
	now := time.Now().UnixNano()
	c.Apply(t, &cluster.PutAgent{Agent: cluster.Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: now})
	a, b := follower.FSM().WatchTask("a"), follower.FSM().WatchTask("b")
	defer a.Stop()
	defer b.Stop()
	chA, chB := a.Changed(), b.Changed()
	c.Apply(t, &cluster.SubmitTask{Task: cluster.Task{ID: "b", Agent: "doc", Version: "v1"}, Now: now})
	select {
	case <-chB:
	case <-time.After(30 * time.Second):
		t.Fatal("the follower's watch of b was not woken by b's submission")
	}
	select {
	case <-chA:
		t.Fatal("the follower's watch of a was woken by b's submission")
	default:
	}
	c.Apply(t, &cluster.SubmitTask{Task: cluster.Task{ID: "a", Agent: "doc", Version: "v1"}, Now: now})
	select {
	case <-chA:
	case <-time.After(30 * time.Second):
		t.Fatal("the follower's watch of a was not woken by a's submission")
	}
	if tk, err := follower.FSM().Task("a"); err != nil || tk.State != cluster.StateQueued {
		t.Fatalf("woken, the follower reads a as %+v, %v", tk, err)
	}
}

// The leader's read index covers every acknowledged write; a follower
// has none to give.
func TestReadIndex(t *testing.T) {
	t.Parallel()
	c := clustertest.NewCluster(t, 3)
	ctx := context.Background()
	leader := c.Leader(t)
	_, idx, err := leader.ApplyIndexed(ctx, &cluster.PutAgent{Agent: cluster.Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: 1})
	if err != nil {
		t.Fatal(err)
	}
	ri, err := leader.ReadIndex(ctx)
	if err != nil || ri < idx {
		t.Fatalf("leader's read index %d, %v; want at least the acknowledged %d", ri, err, idx)
	}
	for _, n := range c.Nodes {
		if n == leader {
			continue
		}
		if _, err := n.ReadIndex(ctx); !errors.Is(err, cluster.ErrNotLeader) {
			t.Fatalf("follower %s read index: %v, want ErrNotLeader", n.ID(), err)
		}
		if err := n.FSM().WaitApplied(ctx, ri); err != nil {
			t.Fatal(err)
		}
		if _, err := n.FSM().Agent("doc", "v1"); err != nil {
			t.Fatalf("follower %s at the read index misses the write: %v", n.ID(), err)
		}
	}
}
