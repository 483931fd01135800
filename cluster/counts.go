package cluster

import (
	"encoding/json"
	"maps"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// taskCounts counts tasks by agent and state, in memory, so that the
// counts a console or a Prometheus scrape asks for cost O(agents × states)
// instead of a decode of every task record (100,000 finished tasks took
// about a second to count and allocated hundreds of MiB). Like the key
// mirrors it is kept by tx writes, on the apply goroutine, and rebuilt
// from Badger on open, after a rollback and after a restore.
type taskCounts struct {
	mu      sync.RWMutex
	byAgent map[string]map[TaskState]int
}

// taskHead is what counting and listing (order.go) need of a task record.
type taskHead struct {
	Agent     string    `json:"agent"`
	State     TaskState `json:"state"`
	Seq       uint64    `json:"seq"`
	CreatedAt int64     `json:"created_at"`
	// LeaseToken is the token of the task's lease, 0 with none: a worker
	// checks it before each call (FSM.LeaseToken).
	LeaseToken uint64 `json:"-"`
}

func readHead(b []byte) (taskHead, bool) {
	var h struct {
		taskHead
		Lease *struct {
			Token uint64 `json:"token"`
		} `json:"lease"`
	}
	if err := json.Unmarshal(b, &h); err != nil {
		return taskHead{}, false
	}
	if h.Lease != nil {
		h.LeaseToken = h.Lease.Token
	}
	return h.taskHead, true
}

// move counts a task record going from one head to another; a zero
// pointer is an absent record.
func (c *taskCounts) move(from, to *taskHead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byAgent == nil {
		c.byAgent = map[string]map[TaskState]int{}
	}
	if from != nil {
		if m := c.byAgent[from.Agent]; m != nil {
			if m[from.State]--; m[from.State] <= 0 {
				delete(m, from.State)
			}
			if len(m) == 0 {
				delete(c.byAgent, from.Agent)
			}
		}
	}
	if to != nil {
		m := c.byAgent[to.Agent]
		if m == nil {
			m = map[TaskState]int{}
			c.byAgent[to.Agent] = m
		}
		m[to.State]++
	}
}

// get returns the counts of one agent's tasks, or of every task with agent
// "": a copy, without zero entries.
func (c *taskCounts) get(agent string) map[TaskState]int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if agent != "" {
		return maps.Clone(c.byAgent[agent])
	}
	out := map[TaskState]int{}
	for _, m := range c.byAgent {
		for st, n := range m {
			out[st] += n
		}
	}
	return out
}

// rebuildTaskHeads rebuilds the counts and the order from Badger's task
// records, in one pass.
func rebuildTaskHeads(db *badger.DB, c *taskCounts, o *taskOrder) error {
	byAgent := map[string]map[TaskState]int{}
	var entries []*orderEntry
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("t/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var h taskHead
			ok := false
			if err := it.Item().Value(func(v []byte) error { h, ok = readHead(v); return nil }); err != nil {
				return err
			}
			if !ok {
				continue
			}
			entries = append(entries, &orderEntry{id: string(it.Item().Key()[2:]), head: h})
			m := byAgent[h.Agent]
			if m == nil {
				m = map[TaskState]int{}
				byAgent[h.Agent] = m
			}
			m[h.State]++
		}
		return nil
	})
	c.mu.Lock()
	c.byAgent = byAgent
	c.mu.Unlock()
	o.reset(entries)
	return err
}

// headOf is the head of v when v is a task record, else nil.
func headOf(v any) *taskHead {
	switch x := v.(type) {
	case *Task:
		return x.head()
	case Task:
		return x.head()
	}
	return nil
}

func (t *Task) head() *taskHead {
	h := &taskHead{Agent: t.Agent, State: t.State, Seq: t.Seq, CreatedAt: t.CreatedAt}
	if t.Lease != nil {
		h.LeaseToken = t.Lease.Token
	}
	return h
}

// countWrite counts a write of val (nil: a deletion) to the task record
// key, before the write: the record's previous head is read from the
// transaction, which sees this transaction's own earlier writes.
func (t *tx) countWrite(key, val []byte) {
	if t.idx == nil || len(key) < 3 || key[0] != 't' || key[1] != '/' {
		return
	}
	var from, to *taskHead
	if old, ok := t.getRaw(key); ok {
		if h, ok := readHead(old); ok {
			from = &h
		}
	}
	switch {
	case val == nil:
	case t.head != nil:
		to = t.head
	default:
		if h, ok := readHead(val); ok {
			to = &h
		}
	}
	if from != nil && to != nil && *from == *to {
		return // a renewal, say: nothing counted or listed changes
	}
	t.idx.counts.move(from, to)
	t.idx.order.write(string(key[2:]), to)
}

// LeaseToken is the token of the lease task id holds on this replica, 0
// when it holds none; ok is false for an unknown task. It reads memory
// only: a worker asks before every call it makes.
func (f *FSM) LeaseToken(id string) (token uint64, ok bool) {
	return f.idx.order.leaseToken(id)
}

// TaskCounts is how many tasks are in each state, of one agent or of all
// with agent "". States with no task are left out.
func (f *FSM) TaskCounts(agent string) map[TaskState]int { return f.idx.counts.get(agent) }
