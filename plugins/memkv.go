package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"

	"github.com/orloj/orloj/abi"
)

// MemKV is a KVBackend in memory, for tests and the host's single-process
// mode. Commit and Discard are the two ways a task's staged writes end. It is
// safe for concurrent use.
type MemKV struct {
	mu        sync.RWMutex
	committed map[string]json.RawMessage
	staged    map[string]map[string]KVWrite // task ID → key → last write
}

// NewMemKV returns an empty MemKV.
func NewMemKV() *MemKV {
	return &MemKV{committed: map[string]json.RawMessage{}, staged: map[string]map[string]KVWrite{}}
}

// Get implements KVBackend.
func (m *MemKV) Get(ctx context.Context, taskID, key string) (json.RawMessage, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if w, ok := m.staged[taskID][key]; ok {
		if w.Delete {
			return nil, false, nil
		}
		return bytes.Clone(w.Value), true, nil
	}
	v, ok := m.committed[key]
	return bytes.Clone(v), ok, nil
}

// Stage implements KVBackend.
func (m *MemKV) Stage(ctx context.Context, taskID string, w KVWrite) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if taskID == "" || w.Key == "" {
		return abi.Errorf(abi.StatusInvalidArgument, "memkv: stage needs a task ID and a key")
	}
	if !w.Delete && len(w.Value) == 0 {
		return abi.Errorf(abi.StatusInvalidArgument, "memkv: put of %q has no value", w.Key)
	}
	// Copies, so a caller reusing its buffers cannot change what was staged.
	w.Value = bytes.Clone(w.Value)
	if w.Delete {
		w.Value = nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.staged[taskID] == nil {
		m.staged[taskID] = map[string]KVWrite{}
	}
	m.staged[taskID][w.Key] = w
	return nil
}

// Commit makes taskID's staged writes visible to every task, all at once.
func (m *MemKV) Commit(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, w := range m.staged[taskID] {
		if w.Delete {
			delete(m.committed, k)
		} else {
			m.committed[k] = w.Value
		}
	}
	delete(m.staged, taskID)
}

// Discard drops taskID's staged writes.
func (m *MemKV) Discard(taskID string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.staged, taskID)
}
