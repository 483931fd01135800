package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// fakeClock is a settable clock for the leader's expiry loop.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) Now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Add(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock(start time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(start.UnixNano())
	return c
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func testConfig(t *testing.T, dir string, clock *fakeClock) Config {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.RaftAddr, cfg.NodeID, cfg.Bootstrap = dir, freeAddr(t), "n1", true
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	cfg.ExpiryInterval = 10 * time.Millisecond
	cfg.Clock = clock.Now
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Warn})
	return cfg
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func openLeader(t *testing.T, cfg Config) *Node {
	t.Helper()
	n, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		n.Close()
		t.Fatal(err)
	}
	return n
}

func TestNodeRestartKeepsStateAndSkipsReplay(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newFakeClock(time.Unix(1000, 0))
	cfg := testConfig(t, dir, clock)
	n := openLeader(t, cfg)
	ctx := context.Background()
	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b"} {
		if _, err := n.Apply(ctx, &SubmitTask{Task: Task{ID: id, Agent: "doc", Version: "v1", Input: json.RawMessage(`{}`)}, Now: clock.Now().UnixNano()}); err != nil {
			t.Fatal(err)
		}
	}
	r, err := n.Apply(ctx, &ClaimTask{Node: "n1", TTL: time.Hour, Now: clock.Now().UnixNano()})
	if err != nil || r.(*Claim).Task.ID != "a" {
		t.Fatalf("claim: %v %v", r, err)
	}
	hash, _ := n.FSM().Hash()
	applied := n.FSM().AppliedIndex()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	cfg.RaftAddr = freeAddr(t)
	n2, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if got := n2.FSM().AppliedIndex(); got != applied {
		t.Fatalf("applied index after restart %d, want %d", got, applied)
	}
	if got, _ := n2.FSM().Hash(); got != hash {
		t.Fatal("state changed across restart")
	}
	tk, err := n2.FSM().Task("b")
	if err != nil || tk.State != StateQueued {
		t.Fatalf("task b after restart: %+v %v", tk, err)
	}
}

func TestLeaderExpiresLapsedLeases(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Unix(1000, 0))
	n := openLeader(t, testConfig(t, t.TempDir(), clock))
	defer n.Close()
	ctx := context.Background()
	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Apply(ctx, &SubmitTask{Task: Task{ID: "t", Agent: "doc", Version: "v1"}, Now: clock.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	r, err := n.Apply(ctx, &ClaimTask{Node: "w", TTL: 2 * time.Second, Now: clock.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	token := r.(*Claim).Lease.Token
	// Within the TTL the leader leaves the lease alone, however often it looks.
	clock.Add(1900 * time.Millisecond)
	if _, err := n.Apply(ctx, &RenewLease{TaskID: "t", Token: token, TTL: 2 * time.Second, Now: clock.Now().UnixNano()}); err != nil {
		t.Fatalf("renew within TTL: %v", err)
	}
	clock.Add(2100 * time.Millisecond)
	deadline := time.After(5 * time.Second)
	for {
		changed := n.FSM().Changed()
		tk, _ := n.FSM().Task("t")
		if tk.State == StateRetryPending {
			if tk.History[0].Outcome != string(ClassExpired) {
				t.Fatalf("history = %+v", tk.History)
			}
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("lease not expired by the leader; task %s", tk.State)
		}
	}
	if _, err := n.Apply(ctx, &RenewLease{TaskID: "t", Token: token, TTL: time.Second, Now: clock.Now().UnixNano()}); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("renew after expiry: %v, want ErrStaleToken", err)
	}
}

func TestConfigValidateNamesField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"raft addr", func(c *Config) { c.RaftAddr = "nope" }, "RaftAddr"},
		{"election", func(c *Config) { c.ElectionTimeout = time.Millisecond }, "ElectionTimeout"},
		{"lease", func(c *Config) { c.LeaderLeaseTimeout = time.Hour }, "LeaderLeaseTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.mut(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want it to name %s", err, tt.want)
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("default config invalid: %v", err)
	}
}

// TestOpenRefusesTakenRaftPort: a Raft address already in use fails Open
// with an error naming the listener, and leaves the data dir reusable.
func TestOpenRefusesTakenRaftPort(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	cfg := testConfig(t, dir, newFakeClock(time.Now()))
	cfg.RaftAddr = taken.Addr().String()
	if n, err := Open(cfg); err == nil {
		n.Close()
		t.Fatal("Open on a taken Raft port succeeded")
	}
	cfg.RaftAddr = freeAddr(t)
	openLeader(t, cfg) // the stores were closed: the same dir opens
}
