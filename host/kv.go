package host

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// kvBackend serves the kv tool from the replicated state: reads see the
// task's own staged writes first, and writes are staged through Raft under
// the attempt's fencing token, applied only when the task completes. Called
// by the outbox for a kv effect, it collects the write instead; the outbox
// applies it in the entry that marks the effect done.
type kvBackend struct {
	c     Cluster
	clock func() int64
}

// NewKVBackend returns the replicated backend of the kv tool.
func NewKVBackend(c Cluster, clock func() int64) (plugins.KVBackend, error) {
	if err := requireDeps("kv backend", namedDep{"cluster", c}, namedDep{"clock", clock}); err != nil {
		return nil, err
	}
	return &kvBackend{c: c, clock: clock}, nil
}

type tokenKey struct{}

// withToken puts the attempt's fencing token where the kv backend finds it.
func withToken(ctx context.Context, token uint64) context.Context {
	return context.WithValue(ctx, tokenKey{}, token)
}

type effectKey struct{}

// effectWrites collects the kv writes of one outbox effect's dispatch.
type effectWrites struct {
	mu     sync.Mutex
	writes []cluster.KVWrite
}

// withEffect marks ctx as an outbox dispatch: kv writes made under it are
// collected in the returned set rather than staged.
func withEffect(ctx context.Context) (context.Context, *effectWrites) {
	w := &effectWrites{}
	return context.WithValue(ctx, effectKey{}, w), w
}

func (e *effectWrites) add(w cluster.KVWrite) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := range e.writes {
		if e.writes[i].Key == w.Key {
			e.writes[i] = w // a later write of a key replaces the earlier, as staging does
			return
		}
	}
	e.writes = append(e.writes, w)
}

func (e *effectWrites) list() []cluster.KVWrite {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.writes
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
	cw := cluster.KVWrite{Key: w.Key, Value: w.Value, Delete: w.Delete}
	if ew, ok := ctx.Value(effectKey{}).(*effectWrites); ok {
		ew.add(cw)
		return nil
	}
	token, ok := ctx.Value(tokenKey{}).(uint64)
	if !ok {
		return fmt.Errorf("stage kv write for task %s: no lease token in context", taskID)
	}
	_, err := b.c.Apply(ctx, &cluster.StageWrite{TaskID: taskID, Token: token, Write: cw, Now: b.clock()})
	return err
}
