package cluster

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// keyIndex mirrors, in memory and in order, the keys of one Badger family
// that are scanned on every claim or expiry pass. Badger iterators walk
// deleted keys until compaction drops them, so scanning rq/ after 20,000
// finished tasks took milliseconds; the mirror keeps it proportional to the
// live keys. It is maintained by tx writes (inside Apply, one goroutine) and
// rebuilt from Badger on open and after a restore; readers on other
// goroutines may see it a moment ahead of a Badger commit, which only costs
// them a claim that finds nothing.
type keyIndex struct {
	prefix string
	// keep, if set, admits only keys whose value it accepts (the pending
	// effects among all outbox entries); nil admits every key.
	keep func(val []byte) bool
	mu   sync.RWMutex
	keys []string
}

func (x *keyIndex) owns(key []byte) bool { return strings.HasPrefix(string(key), x.prefix) }

func (x *keyIndex) add(k string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := slices.BinarySearch(x.keys, k); !found {
		x.keys = slices.Insert(x.keys, i, k)
	}
}

func (x *keyIndex) del(k string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if i, found := slices.BinarySearch(x.keys, k); found {
		x.keys = slices.Delete(x.keys, i, i+1)
	}
}

func (x *keyIndex) first() (string, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	if len(x.keys) == 0 {
		return "", false
	}
	return x.keys[0], true
}

// countBelow returns how many keys sort before k.
func (x *keyIndex) countBelow(k string) int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, _ := slices.BinarySearch(x.keys, k)
	return i
}

// hasPrefix reports whether some key starts with p.
func (x *keyIndex) hasPrefix(p string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	i, _ := slices.BinarySearch(x.keys, p)
	return i < len(x.keys) && strings.HasPrefix(x.keys[i], p)
}

// below returns, in order, at most limit of the keys that sort before
// bound: the head of the index, without copying the rest.
func (x *keyIndex) below(bound string, limit int) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	end, _ := slices.BinarySearch(x.keys, bound)
	return slices.Clone(x.keys[:min(end, limit)])
}

// all returns a copy, safe to use while the index changes.
func (x *keyIndex) all() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Clone(x.keys)
}

func (x *keyIndex) rebuild(db *badger.DB) error {
	var keys []string
	err := db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = x.keep != nil
		opts.Prefix = []byte(x.prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if x.keep != nil {
				admit := false
				if err := it.Item().Value(func(v []byte) error { admit = x.keep(v); return nil }); err != nil {
					return err
				}
				if !admit {
					continue
				}
			}
			keys = append(keys, string(it.Item().Key()))
		}
		return nil
	})
	x.mu.Lock()
	x.keys = keys
	x.mu.Unlock()
	return err
}

// indexes are the FSM's in-memory key mirrors.
type indexes struct {
	runq   keyIndex // rq/: runnable tasks, by next_at then seq
	leases keyIndex // le/: live leases, by expiry
	// pending: ob/ entries not yet dispatched. The outbox reads them on
	// every applied batch; dispatched effects stay in ob/ until their task
	// is compacted, so scanning ob/ grew with every task that emitted.
	pending keyIndex
	// due: sn/, the schedules that are not paused, by next firing; the
	// leader reads it on every scheduler pass, and every firing moves a key.
	due keyIndex
	// wakes: wk/ waiting tasks with a wake time or deadline, by that time;
	// the leader reads its head to wake what is due.
	wakes keyIndex
	// approvals: ap/ records still pending. The approval webhook reads them
	// on every pass; decided approvals stay until their task is compacted.
	approvals keyIndex
	// counts: t/ records by agent and state (counts.go).
	counts taskCounts
	// order: t/ records by submission, for lists (order.go).
	order taskOrder
}

func newIndexes() *indexes {
	return &indexes{runq: keyIndex{prefix: "rq/"}, leases: keyIndex{prefix: "le/"},
		pending: keyIndex{prefix: "ob/", keep: effectPending}, due: keyIndex{prefix: "sn/"}, wakes: keyIndex{prefix: "wk/"},
		approvals: keyIndex{prefix: "ap/", keep: approvalPending}}
}

// approvalPending reads only the state of an encoded Approval.
func approvalPending(val []byte) bool {
	var a struct {
		State ApprovalState `json:"state"`
	}
	return json.Unmarshal(val, &a) == nil && a.State == ApprovalPending
}

// effectPending reads only the done flag of an encoded Effect.
func effectPending(val []byte) bool {
	var e struct {
		Done bool `json:"done"`
	}
	return json.Unmarshal(val, &e) == nil && !e.Done
}

func (ix *indexes) mirrors() []*keyIndex {
	return []*keyIndex{&ix.runq, &ix.leases, &ix.pending, &ix.due, &ix.wakes, &ix.approvals}
}

func (ix *indexes) rebuild(db *badger.DB) error {
	for _, x := range ix.mirrors() {
		if err := x.rebuild(db); err != nil {
			return err
		}
	}
	return rebuildTaskHeads(db, &ix.counts, &ix.order)
}

// written keeps the mirrors in step with a write of val to key (del: a
// deletion).
func (ix *indexes) written(key, val []byte, del bool) {
	if ix == nil {
		return
	}
	for _, x := range ix.mirrors() {
		if x.owns(key) {
			if del || (x.keep != nil && !x.keep(val)) {
				x.del(string(key))
			} else {
				x.add(string(key))
			}
			return
		}
	}
}
