// Package clustertest opens real cluster nodes in memory for tests, as
// net/http/httptest opens real servers on loopback. A node from NewNode or
// NewCluster is a *cluster.Node like any other — the same FSM, the same
// Apply path, the same leader duties (lease take-over and expiry) — but
// runs on hashicorp/raft's in-memory transport and stores with Badger in
// its in-memory mode: no data dir, no TCP port, no cluster CA, nothing to
// fsync. Use it for tests of code above the cluster that do not need real
// processes, disks or networks; the tests of durability, restarts, mTLS
// and the TCP transport keep using cluster.Open.
//
// It imports testing: import it from tests only.
package clustertest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
)

// Option adjusts the configuration every node of a test cluster opens with.
type Option func(*cluster.Config)

// WithConfig applies f to each node's configuration, after the package's
// defaults.
func WithConfig(f func(*cluster.Config)) Option { return Option(f) }

// leaderWait bounds how long NewNode and NewCluster wait for a ready
// leader. It is only a failure bound: they return as soon as one leads.
const leaderWait = 30 * time.Second

// NewNode opens a single-node cluster in memory, waits until the node
// leads (live leases extended, as cluster.Node.WaitLeader means it), and
// closes it when the test ends.
func NewNode(t testing.TB, opts ...Option) *cluster.Node {
	t.Helper()
	return NewCluster(t, 1, opts...).Nodes[0]
}

// Cluster is n in-memory nodes whose transports are connected to one
// another, bootstrapped as voters of one cluster.
type Cluster struct {
	Nodes      []*cluster.Node // Nodes[i]'s ID is "n<i+1>"
	transports []*raft.InmemTransport
}

// NewCluster opens n nodes in memory, all voters, waits until one of them
// leads and is ready, and closes them all when the test ends. Odd n (1, 3,
// 5) tolerate (n-1)/2 failures.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("clustertest: a cluster needs at least one node, not %d", n)
	}
	c := &Cluster{}
	voters := make([]raft.Server, n)
	for i := range n {
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprintf("inmem-n%d", i+1)))
		c.transports = append(c.transports, tr)
		voters[i] = raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(fmt.Sprintf("n%d", i+1)), Address: addr}
	}
	c.Heal()
	log := hclog.New(&hclog.LoggerOptions{Name: "clustertest", Output: logWriter{t}, Level: hclog.Warn})
	for i := range n {
		cfg := Config(n)
		cfg.NodeID, cfg.Bootstrap = string(voters[i].ID), true
		cfg.Logger = log.With("node", cfg.NodeID)
		for _, o := range opts {
			o(&cfg)
		}
		node, err := cluster.OpenInMemory(cfg, cluster.InMemory{Transport: c.transports[i], Voters: voters})
		if err != nil {
			t.Fatalf("clustertest: open node %s: %v", cfg.NodeID, err)
		}
		c.Nodes = append(c.Nodes, node)
		t.Cleanup(func() {
			if err := node.Close(); err != nil {
				t.Errorf("clustertest: close node %s: %v", node.ID(), err)
			}
		})
	}
	c.Leader(t)
	return c
}

// Config is the configuration NewCluster starts from for a cluster of n
// nodes: cluster.DefaultConfig, with short timeouts for a single node. A
// single node has no one to hear from, so it elects itself after one
// short timeout and never loses its lead. A cluster keeps the default
// timeouts: heartbeats cross goroutines rather than sockets, but on a
// loaded test machine (-race, other packages' tests) shorter ones make
// elections flap.
func Config(n int) cluster.Config {
	cfg := cluster.DefaultConfig()
	if n == 1 {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 20*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond
	}
	cfg.ExpiryInterval = 20 * time.Millisecond
	cfg.BadgerMemTableSize = cluster.MinBadgerMemTableSize
	return cfg
}

// Leader waits until a node of the cluster that is not closed leads and is
// ready, and returns it. It fails the test after a generous bound.
func (c *Cluster) Leader(t testing.TB) *cluster.Node {
	t.Helper()
	// Polled, as cluster.Node.WaitLeader does: a change of leader need not
	// apply anything another node could be woken by.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(leaderWait)
	for {
		for _, n := range c.Nodes {
			// A closed node can still say it leads: it heard of no
			// change after its Raft shut down.
			if n.IsLeader() && n.Raft().State() != raft.Shutdown {
				return n
			}
		}
		select {
		case <-deadline:
			t.Fatalf("clustertest: no ready leader among %d nodes after %s", len(c.Nodes), leaderWait)
		case <-tick.C:
		}
	}
}

// Apply proposes cmd on the current leader and returns its result. If the
// lead moves before the entry is enqueued (cluster.ErrNotLeader, outcome
// known), it proposes again on the next leader, as host's forwarder does;
// any other error fails the test.
func (c *Cluster) Apply(t testing.TB, cmd cluster.Command) any {
	t.Helper()
	deadline := time.Now().Add(leaderWait)
	for {
		r, err := c.Leader(t).Apply(context.Background(), cmd)
		if err == nil {
			return r
		}
		if !errors.Is(err, cluster.ErrNotLeader) || errors.Is(err, cluster.ErrOutcomeUnknown) || time.Now().After(deadline) {
			t.Fatalf("clustertest: apply %T: %v", cmd, err)
		}
	}
}

// Isolate cuts node i off from every other node, both ways, as a network
// partition would: its Raft RPCs fail at once. Heal undoes it.
func (c *Cluster) Isolate(i int) {
	c.transports[i].DisconnectAll()
	for j, tr := range c.transports {
		if j != i {
			tr.Disconnect(c.transports[i].LocalAddr())
		}
	}
}

// Heal connects every node to every other.
func (c *Cluster) Heal() {
	for _, a := range c.transports {
		for _, b := range c.transports {
			if a != b {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
}

// logWriter routes a node's logs to the test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }
