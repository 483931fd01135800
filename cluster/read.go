package cluster

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/dgraph-io/badger/v4"
)

// Reads serve from this replica's Badger. They see every entry applied here;
// a caller that needs the leader's view confirms leadership (Node.Barrier)
// first.

func (f *FSM) view(fn func(t *tx) error) error {
	return f.db.View(func(txn *badger.Txn) error {
		t := &tx{txn: txn}
		if err := fn(t); err != nil {
			return err
		}
		return t.err
	})
}

// Task returns one task.
func (f *FSM) Task(id string) (Task, error) {
	var t Task
	err := f.view(func(tx *tx) error {
		if !tx.get(taskKey(id), &t) && tx.err == nil {
			return fmt.Errorf("task %s: %w", id, ErrNotFound)
		}
		return nil
	})
	return t, err
}

// TaskFilter selects tasks; zero fields match everything.
type TaskFilter struct {
	State TaskState
	Agent string
	Class ErrorClass // last error class (DLQ filters)
	// Since and Until bound the submission time (CreatedAt, unix nanos):
	// at or after Since, before Until; 0 leaves that side open.
	Since, Until int64
	// UpdatedSince and UpdatedUntil bound the last change (UpdatedAt) the
	// same way: for a dead letter, when it entered the queue.
	UpdatedSince, UpdatedUntil int64
	Limit                      int
	Newest                     bool // newest submission first (the limit applies after ordering)
}

// recordOnly reports whether fl tests what the heads in memory do not hold,
// so every candidate the heads allow is read.
func (fl TaskFilter) recordOnly() bool {
	return fl.Class != "" || fl.UpdatedSince != 0 || fl.UpdatedUntil != 0
}

func (fl TaskFilter) match(t *Task) bool {
	if !fl.matchHead(&taskHead{Agent: t.Agent, State: t.State, CreatedAt: t.CreatedAt}) {
		return false
	}
	if fl.Class != "" && (t.Error == nil || t.Error.Class != fl.Class) {
		return false
	}
	return (fl.UpdatedSince == 0 || t.UpdatedAt >= fl.UpdatedSince) && (fl.UpdatedUntil == 0 || t.UpdatedAt < fl.UpdatedUntil)
}

// matchHead is match for what a task's head in memory holds (order.go).
func (fl TaskFilter) matchHead(h *taskHead) bool {
	return (fl.State == "" || h.State == fl.State) && (fl.Agent == "" || h.Agent == fl.Agent) &&
		(fl.Since == 0 || h.CreatedAt >= fl.Since) && (fl.Until == 0 || h.CreatedAt < fl.Until)
}

// Tasks lists tasks matching fl, oldest submission first (newest with
// fl.Newest). The order index picks them, so only the tasks listed are
// read: the cost follows the limit, not the history.
func (f *FSM) Tasks(fl TaskFilter) ([]Task, error) {
	limit := fl.Limit
	if fl.recordOnly() {
		fl.Limit = 0 // filter every candidate the heads allow
	}
	ids := f.idx.order.ids(fl)
	out := make([]Task, 0, len(ids))
	err := f.view(func(tx *tx) error {
		for _, id := range ids {
			var t Task
			ok := tx.get(taskKey(id), &t)
			if tx.err != nil {
				return tx.err
			}
			// The index is written as entries apply, just before their
			// commit: a record may be gone, or not yet changed, here.
			if ok && fl.match(&t) {
				out = append(out, t)
				if len(out) == limit {
					break
				}
			}
		}
		return nil
	})
	return out, err
}

// DeadLetters lists the DLQ, filtered, oldest submission first. Like Tasks,
// it reads no more dead letters than it returns (or than a filter on what
// only the records hold must test).
func (f *FSM) DeadLetters(fl TaskFilter) ([]Task, error) {
	fl.State = StateDeadLetter
	return f.Tasks(fl)
}

// Agent returns one version of an agent; version "" means the newest.
func (f *FSM) Agent(name, version string) (Agent, error) {
	if version != "" {
		var ag Agent
		err := f.view(func(tx *tx) error {
			if !tx.get(agentKey(name, version), &ag) && tx.err == nil {
				return fmt.Errorf("agent %s version %s: %w", name, version, ErrUnknownAgent)
			}
			return nil
		})
		return ag, err
	}
	versions, err := f.AgentVersions(name)
	if err != nil {
		return Agent{}, err
	}
	if len(versions) == 0 {
		return Agent{}, fmt.Errorf("agent %s: %w", name, ErrUnknownAgent)
	}
	return versions[len(versions)-1], nil
}

// AgentVersions lists an agent's versions, oldest registration first.
func (f *FSM) AgentVersions(name string) ([]Agent, error) {
	out, err := decodeAll[Agent](f, agentPrefix(name), nil)
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out, err
}

// Agents lists the newest version of every agent, by name.
func (f *FSM) Agents() ([]Agent, error) {
	latest := map[string]Agent{}
	err := f.view(func(tx *tx) error {
		return tx.each([]byte("a/"), func(_, v []byte) error {
			var ag Agent
			if err := json.Unmarshal(v, &ag); err != nil {
				return err
			}
			if cur, ok := latest[ag.Name]; !ok || ag.CreatedAt >= cur.CreatedAt {
				latest[ag.Name] = ag
			}
			return nil
		})
	})
	out := make([]Agent, 0, len(latest))
	for _, ag := range latest {
		out = append(out, ag)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Module returns the wasm bytes with the given digest.
func (f *FSM) Module(digest string) ([]byte, error) {
	var out []byte
	err := f.view(func(tx *tx) error {
		n := 0
		err := tx.each(modulePrefix(digest), func(_, v []byte) error {
			out = append(out, v...)
			n++
			return nil
		})
		if err == nil && n == 0 {
			return fmt.Errorf("module %s: %w", digest, ErrNotFound)
		}
		return err
	})
	return out, err
}

// LedgerRecord returns the ledger entry for one call.
func (f *FSM) LedgerRecord(taskID, callID string) (LedgerRecord, bool, error) {
	var rec LedgerRecord
	var ok bool
	err := f.view(func(tx *tx) error {
		ok = tx.get(ledgerKey(taskID, callID), &rec)
		return nil
	})
	return rec, ok, err
}

// Calls lists a task's ledger in call order.
func (f *FSM) Calls(taskID string) ([]LedgerRecord, error) {
	out, err := decodeAll[LedgerRecord](f, ledgerPrefix(taskID), nil)
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, err
}

// Journal returns a task's events in order.
func (f *FSM) Journal(taskID string) ([]Event, error) {
	return decodeAll[Event](f, journalPrefix(taskID), nil)
}

// Leases lists live leases, soonest expiry first.
func (f *FSM) Leases() ([]Lease, error) {
	var out []Lease
	err := f.view(func(tx *tx) error {
		for _, k := range f.idx.leases.all() {
			var t Task
			if tx.get(taskKey(k[len("le/")+17:]), &t) && t.Lease != nil {
				out = append(out, *t.Lease)
			}
		}
		return nil
	})
	return out, err
}

// ExpiredLeases lists leases whose expiry is at or before now.
func (f *FSM) ExpiredLeases(now int64) ([]Lease, error) {
	all, err := f.Leases()
	var out []Lease
	for _, l := range all {
		if l.ExpiresAt > now {
			break
		}
		out = append(out, l)
	}
	return out, err
}

// NextRunnableAt is the NextAt of the oldest runnable task, or false if none.
func (f *FSM) NextRunnableAt() (int64, bool) {
	var at uint64
	var ok bool
	if first, found := f.idx.runq.first(); found {
		_, err := fmt.Sscanf(first[3:19], "%x", &at)
		ok = err == nil
	}
	return int64(at), ok
}

// RunnableCount is how many tasks this replica holds runnable at now
// (queued, or due for a retry). It reads memory only.
func (f *FSM) RunnableCount(now int64) int {
	return f.idx.runq.countBelow("rq/" + hex16(uint64(now)+1))
}

// KV returns a committed kv value.
func (f *FSM) KV(key string) (json.RawMessage, bool, error) {
	var v []byte
	var ok bool
	err := f.view(func(tx *tx) error {
		v, ok = tx.getRaw(kvKey(key))
		return nil
	})
	return v, ok, err
}

// StagedKV returns the value a task's own staged writes give key, if any.
func (f *FSM) StagedKV(taskID, key string) (val json.RawMessage, deleted, ok bool, err error) {
	ws, err := decodeAll(f, stagePrefix(taskID), func(w *KVWrite) bool { return w.Key == key })
	if len(ws) > 0 {
		last := ws[len(ws)-1] // the latest staged write wins
		return last.Value, last.Delete, true, err
	}
	return nil, false, false, err
}

// Outbox lists a task's outbox effects.
func (f *FSM) Outbox(taskID string) ([]Effect, error) {
	return decodeAll[Effect](f, outboxPrefix(taskID), nil)
}

// PendingEffects lists undispatched outbox effects of every task, by task
// and number. It reads the pending ones only (the in-memory index), so it
// costs what is pending, not every effect ever emitted.
func (f *FSM) PendingEffects() ([]Effect, error) {
	var out []Effect
	err := f.view(func(tx *tx) error {
		for _, k := range f.idx.pending.all() {
			var e Effect
			if tx.get([]byte(k), &e) && !e.Done {
				out = append(out, e)
			}
		}
		return tx.err
	})
	return out, err
}

// FenceRejections counts writes refused for a stale fencing token.
func (f *FSM) FenceRejections() uint64 {
	var n uint64
	_ = f.view(func(tx *tx) error {
		b, _ := tx.getRaw(keyFenceRejects)
		n = u64(b)
		return nil
	})
	return n
}

// decodeAll decodes every value under prefix, in key order, keeping those
// keep accepts (nil keeps all).
func decodeAll[T any](f *FSM, prefix []byte, keep func(*T) bool) ([]T, error) {
	var out []T
	err := f.view(func(tx *tx) error {
		return tx.each(prefix, func(_, v []byte) error {
			var x T
			if err := json.Unmarshal(v, &x); err != nil {
				return err
			}
			if keep == nil || keep(&x) {
				out = append(out, x)
			}
			return nil
		})
	})
	return out, err
}

func (t *tx) each(prefix []byte, fn func(k, v []byte) error) error {
	if t.err != nil {
		return t.err
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := t.txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
			return fmt.Errorf("read %s: %w", strings.TrimSuffix(string(prefix), "/"), err)
		}
	}
	return nil
}

// Member returns what is recorded about a node, if anything.
func (f *FSM) Member(id string) (Member, bool) {
	var m Member
	var ok bool
	_ = f.view(func(tx *tx) error {
		ok = tx.get(memberKey(id), &m)
		return nil
	})
	return m, ok
}
