package host

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/cluster/clustertest"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/plugintest"
)

// The kv tool's replicated backend meets the contract the in-memory one
// does, on a real node: writes staged through Raft under each task's
// fencing token, committed by CompleteTask and dropped by CancelTask. Its
// values come back re-encoded (KVHarness.Reencodes): a Raft command
// marshals them as json.RawMessage.
func TestKVBackendConformance(t *testing.T) {
	t.Parallel()
	plugintest.KVBackendConformance(t, func(t *testing.T) plugintest.KVHarness {
		node := clustertest.NewNode(t)
		backend, err := NewKVBackend(node, func() int64 { return time.Now().UnixNano() })
		if err != nil {
			t.Fatal(err)
		}
		h := &kvTasks{t: t, node: node, backend: backend, tokens: map[string]uint64{}}
		return plugintest.KVHarness{Backend: h, Commit: h.commit, Discard: h.discard, Reencodes: true}
	})
}

// kvTasks runs each task ID the suite names as a real task: its first
// staged write submits and claims it, and the writes carry its lease's
// token, as an attempt's tool calls do.
type kvTasks struct {
	t       *testing.T
	node    *cluster.Node
	backend plugins.KVBackend

	mu     sync.Mutex
	agent  bool
	tokens map[string]uint64 // running tasks' lease tokens
}

func (k *kvTasks) Get(ctx context.Context, taskID, key string) (json.RawMessage, bool, error) {
	return k.backend.Get(ctx, taskID, key)
}

func (k *kvTasks) Stage(ctx context.Context, taskID string, w plugins.KVWrite) error {
	token, err := k.claim(ctx, taskID)
	if err != nil {
		return err
	}
	return k.backend.Stage(withToken(ctx, token), taskID, w)
}

// claim returns taskID's lease token, submitting and claiming the task
// the first time. Claims are serialized: the task just submitted is then
// the only queued one, the one ClaimTask grants.
func (k *kvTasks) claim(ctx context.Context, taskID string) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if token, ok := k.tokens[taskID]; ok {
		return token, nil
	}
	now := time.Now().UnixNano()
	if !k.agent {
		if _, err := k.node.Apply(ctx, &cluster.PutAgent{Agent: cluster.Agent{Name: "kv", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"kv"}}},
			Module: []byte("not run"), Now: now}); err != nil {
			return 0, fmt.Errorf("put agent: %w", err)
		}
		k.agent = true
	}
	if _, err := k.node.Apply(ctx, &cluster.SubmitTask{Task: cluster.Task{ID: taskID, Agent: "kv", Version: "v1", Input: json.RawMessage(`{}`)}, Now: now}); err != nil {
		return 0, fmt.Errorf("submit %s: %w", taskID, err)
	}
	r, err := k.node.Apply(ctx, &cluster.ClaimTask{Node: "test", TTL: time.Hour, Now: now})
	if err != nil {
		return 0, fmt.Errorf("claim %s: %w", taskID, err)
	}
	c, ok := r.(*cluster.Claim)
	if !ok || c == nil || c.Task.ID != taskID {
		return 0, fmt.Errorf("claim of %s granted %+v", taskID, r)
	}
	k.tokens[taskID] = c.Lease.Token
	return c.Lease.Token, nil
}

// running returns taskID's token if it runs; a task never staged to, or
// already ended, has nothing to end.
func (k *kvTasks) running(taskID string) (uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	token, ok := k.tokens[taskID]
	if !ok {
		return 0, false
	}
	if tk, err := k.node.FSM().Task(taskID); err != nil || tk.State != cluster.StateRunning {
		return 0, false
	}
	return token, true
}

func (k *kvTasks) commit(taskID string) {
	k.t.Helper()
	token, ok := k.running(taskID)
	if !ok {
		return
	}
	_, err := k.node.Apply(context.Background(), &cluster.CompleteTask{TaskID: taskID, Token: token, Output: json.RawMessage(`null`), Now: time.Now().UnixNano()})
	if err != nil {
		k.t.Fatalf("complete %s: %v", taskID, err)
	}
}

func (k *kvTasks) discard(taskID string) {
	k.t.Helper()
	if _, ok := k.running(taskID); !ok {
		return
	}
	_, err := k.node.Apply(context.Background(), &cluster.CancelTask{TaskID: taskID, Reason: "discarded by the test", Now: time.Now().UnixNano()})
	if err != nil {
		k.t.Fatalf("cancel %s: %v", taskID, err)
	}
}
