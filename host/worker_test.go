package host

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// heldClaims is a node whose claim proposals wait, counted, until released:
// it shows how many a pool has in flight at once.
type heldClaims struct {
	*cluster.Node
	want    int
	reached chan struct{} // closed when want claims are in flight
	release chan struct{}

	mu       sync.Mutex
	inflight int
	most     int
}

func (h *heldClaims) Apply(ctx context.Context, cmd cluster.Command) (any, error) {
	if _, ok := cmd.(*cluster.ClaimTask); ok {
		h.mu.Lock()
		h.inflight++
		h.most = max(h.most, h.inflight)
		if h.inflight == h.want {
			close(h.reached)
		}
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.inflight--
			h.mu.Unlock()
		}()
		select {
		case <-h.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return h.Node.Apply(ctx, cmd)
}

// TestClaimsInParallelUpToRunnable: with three tasks queued and eight idle
// workers, a node proposes three claims at once, and no fourth: one claim
// at a time made a claim's Raft round the ceiling of a node's throughput,
// and one per idle worker would fill the log with empty claims.
func TestClaimsInParallelUpToRunnable(t *testing.T) {
	t.Parallel()
	reg, _ := plugins.NewRegistry()
	e := newIdleEnv(t, reg)
	e.pushAgent("steps", "v1", agentPath(t, "steps"))
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		e.submit(id, "steps", "v1", map[string]any{}, cluster.RetryPolicy{})
	}
	held := &heldClaims{Node: e.node, want: len(ids), reached: make(chan struct{}), release: make(chan struct{})}
	cfg := DefaultPoolConfig()
	cfg.NodeID, cfg.Workers, cfg.LeaseTTL, cfg.Logger = "n1", 8, 5*time.Second, e.log
	p, err := NewPool(cfg, held, e.exec)
	if err != nil {
		t.Fatal(err)
	}
	p.Start(context.Background())
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	select {
	case <-held.reached:
	case <-time.After(settle):
		held.mu.Lock()
		defer held.mu.Unlock()
		t.Fatalf("at most %d claims in flight at once with %d tasks queued, want %d", held.most, len(ids), len(ids))
	}
	if p.admitClaim(time.Now().UnixNano()) {
		t.Fatal("a fourth claim was admitted for three runnable tasks")
	}
	close(held.release)
	for _, id := range ids {
		if tk := e.wait(id, settle, cluster.StateSucceeded, cluster.StateDeadLetter); tk.State != cluster.StateSucceeded {
			t.Fatalf("task %s: %s %+v", id, tk.State, tk.Error)
		}
	}
	held.mu.Lock()
	defer held.mu.Unlock()
	if held.most != len(ids) {
		t.Fatalf("%d claims were in flight at once, want %d", held.most, len(ids))
	}
}
