package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Retention: finished tasks (succeeded, cancelled, discarded) are kept for
// Config.Retention after they ended, then the leader proposes CompactTasks
// and every replica deletes them with their ledger, journal and outbox.
// Dead letters are never compacted: they wait for a person.

const (
	// DefaultRetention keeps finished tasks for a week.
	DefaultRetention = 7 * 24 * time.Hour
	// MaxCompactIDs bounds the tasks one CompactTasks names.
	MaxCompactIDs = 256
	// compactOpsPerEntry bounds the deletes one CompactTasks makes, well
	// under the per-entry limit: a task with a long ledger is compacted
	// over several entries, its record last, so it stays findable until
	// the rest is gone.
	compactOpsPerEntry = 8_000
)

// CompactTasks deletes the named tasks that are finished and ended before
// Before, with everything recorded for them. A task that no longer
// qualifies (retried meanwhile, or already gone) is skipped.
type CompactTasks struct {
	IDs    []string `json:"ids"`
	Before int64    `json:"before"` // unix ns: only tasks whose UpdatedAt is earlier
	Now    int64    `json:"now"`
}

func (CompactTasks) messageType() MessageType { return MsgCompactTasks }

// Validate bounds the list and checks each ID.
func (c *CompactTasks) Validate() error {
	if len(c.IDs) == 0 || len(c.IDs) > MaxCompactIDs {
		return fmt.Errorf("%w: compact_tasks names %d tasks, want 1 to %d", ErrInvalidCmd, len(c.IDs), MaxCompactIDs)
	}
	for _, id := range c.IDs {
		if err := checkNames("task id", id); err != nil {
			return err
		}
		if id == "" {
			return fmt.Errorf("%w: compact_tasks: empty task id", ErrInvalidCmd)
		}
	}
	return nil
}

// CompactResult is the response to CompactTasks.
type CompactResult struct {
	Compacted []string `json:"compacted"`         // deleted whole
	Partial   string   `json:"partial,omitempty"` // begun; the next entry goes on with it
}

// compactable reports whether retention may delete t.
func compactable(t Task, before int64) bool { return t.State.Final() && t.UpdatedAt < before }

func (a *applier) compact(c *CompactTasks) any {
	var res CompactResult
	budget := compactOpsPerEntry
	if a.lim != nil && a.lim.compactOps > 0 {
		budget = a.lim.compactOps
	}
	for _, id := range c.IDs {
		var t Task
		if !a.get(taskKey(id), &t) {
			if a.err != nil {
				return a.err
			}
			continue
		}
		if !compactable(t, c.Before) || a.effectsPending(id) {
			continue
		}
		done := true
		for _, prefix := range [][]byte{ledgerPrefix(id), journalPrefix(id), outboxPrefix(id), stagePrefix(id), signalPrefix(id), signalIdemPrefix(id)} {
			left := budget - a.entryOps
			if left <= 2 {
				done = false
				break
			}
			ks := a.keys(prefix, left-2) // room for the record and its key index
			for _, k := range ks {
				a.del(k)
			}
			if len(ks) == left-2 {
				done = false // there may be more
				break
			}
		}
		if a.err != nil {
			return a.err
		}
		if !done {
			res.Partial = id
			break
		}
		for _, k := range a.keys(approvalPrefix(id), 0) { // few: one per call that needed approval
			a.del(k)
			a.del(approvalIndexKey(string(k[len(approvalPrefix(id)):])))
		}
		a.del(stageCountKey(id))
		if t.IdempotencyKey != "" {
			if b, ok := a.getRaw(idemKey(t.IdempotencyKey)); ok && string(b) == id {
				a.del(idemKey(t.IdempotencyKey))
			}
		}
		a.del(taskKey(id))
		res.Compacted = append(res.Compacted, id)
	}
	if a.err != nil {
		return a.err
	}
	return res
}

func (a *applier) effectsPending(id string) bool {
	for _, k := range a.keys(outboxPrefix(id), 0) {
		var e Effect
		if a.get(k, &e) && !e.Done {
			return true
		}
	}
	return false
}

// ExpiredFinished lists up to limit finished tasks that ended before
// before and have no effect waiting, by key. It reads only the state and
// end time of each task; a task whose effects are pending is left out, so
// it cannot fill every pass and hold back the ones behind it.
func (f *FSM) ExpiredFinished(before int64, limit int) ([]string, error) {
	var ids []string
	err := f.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("t/")
		it := txn.NewIterator(opts)
		defer it.Close()
		var head struct {
			ID        string    `json:"id"`
			State     TaskState `json:"state"`
			UpdatedAt int64     `json:"updated_at"`
		}
		for it.Rewind(); it.Valid() && len(ids) < limit; it.Next() {
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &head) })
			if err != nil {
				return fmt.Errorf("decode %q: %w", it.Item().Key(), err)
			}
			if compactable(Task{State: head.State, UpdatedAt: head.UpdatedAt}, before) && !f.idx.pending.hasPrefix(string(outboxPrefix(head.ID))) {
				ids = append(ids, head.ID)
			}
		}
		return nil
	})
	return ids, err
}

// retentionInterval is how often the leader looks for tasks past
// retention: often enough that little is past it at once, rarely enough
// that the scan of every task costs nothing.
func retentionInterval(retention time.Duration) time.Duration {
	return min(max(retention/10, time.Second), time.Hour)
}

// compactExpired proposes CompactTasks until nothing finished before now -
// Retention is left, or ctx ends.
func (n *Node) compactExpired(ctx context.Context) error {
	for ctx.Err() == nil {
		now := n.cfg.Clock()
		before := now.Add(-n.cfg.Retention).UnixNano()
		ids, err := n.fsm.ExpiredFinished(before, MaxCompactIDs)
		if err != nil || len(ids) == 0 {
			return err
		}
		r, err := n.Apply(ctx, &CompactTasks{IDs: ids, Before: before, Now: now.UnixNano()})
		if err != nil {
			return err
		}
		res, _ := r.(CompactResult)
		n.log.Info("compacted finished tasks past retention", "tasks", len(res.Compacted), "partial", res.Partial, "retention", n.cfg.Retention)
		if len(res.Compacted) == 0 && res.Partial == "" {
			return nil // nothing qualified after all (pending effects): wait for the next pass
		}
	}
	return ctx.Err()
}
