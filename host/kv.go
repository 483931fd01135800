package host

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// kvBackend serves the kv tool from the replicated state: reads see the
// task's own staged writes first, and writes are staged through Raft under
// the attempt's fencing token, applied only when the task completes.
type kvBackend struct {
	c     Cluster
	clock func() int64
}

// NewKVBackend returns the replicated backend of the kv tool.
func NewKVBackend(c Cluster, clock func() int64) plugins.KVBackend {
	return &kvBackend{c: c, clock: clock}
}

type tokenKey struct{}

// withToken puts the attempt's fencing token where the kv backend finds it.
func withToken(ctx context.Context, token uint64) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

func (b *kvBackend) Get(_ context.Context, taskID, key string) (json.RawMessage, bool, error) {
	v, deleted, staged, err := b.c.FSM().StagedKV(taskID, key)
	if err != nil {
		return nil, false, err
	}
	if staged {
		return v, !deleted, nil
	}
	return b.c.FSM().KV(key)
}

func (b *kvBackend) Stage(ctx context.Context, taskID string, w plugins.KVWrite) error {
	token, ok := ctx.Value(tokenKey{}).(uint64)
	if !ok {
		return fmt.Errorf("stage kv write for task %s: no lease token in context", taskID)
	}
	_, err := b.c.Apply(ctx, &cluster.StageWrite{TaskID: taskID, Token: token,
		Write: cluster.KVWrite{Key: w.Key, Value: w.Value, Delete: w.Delete}, Now: b.clock()})
	return err
}
