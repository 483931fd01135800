package cluster

import (
	"cmp"
	"slices"
	"sync"
)

// taskOrder lists task records by submission (Seq), in memory, with what a
// list filters on: the console's Tasks page asks for the newest 200 tasks
// on every change, and answering from Badger meant decoding every task
// record (20,000 finished tasks: about 190 ms and 51 MB per request).
// Like taskCounts it is kept by tx writes on the apply goroutine and
// rebuilt from Badger on open, after a rollback and after a restore.
type taskOrder struct {
	mu   sync.RWMutex
	byID map[string]*orderEntry
	// bySeq is ascending by seq. Deleted entries stay, marked, until they
	// are half of it: a deletion then costs O(1), amortized.
	bySeq   []*orderEntry
	deleted int
}

type orderEntry struct {
	id      string
	head    taskHead
	deleted bool
}

// write records the task id's new head; nil deletes it.
func (o *taskOrder) write(id string, h *taskHead) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.byID == nil {
		o.byID = map[string]*orderEntry{}
	}
	e := o.byID[id]
	switch {
	case h == nil && e == nil:
	case h == nil:
		delete(o.byID, id)
		e.deleted = true
		if o.deleted++; o.deleted > len(o.bySeq)/2 {
			o.bySeq = slices.DeleteFunc(o.bySeq, func(e *orderEntry) bool { return e.deleted })
			o.deleted = 0
		}
	case e != nil && e.head.Seq == h.Seq:
		e.head = *h
	default:
		if e != nil { // a record rewritten under another seq: move it
			e.deleted = true
			o.deleted++
		}
		e = &orderEntry{id: id, head: *h}
		o.byID[id] = e
		n := len(o.bySeq)
		if n == 0 || o.bySeq[n-1].head.Seq <= h.Seq {
			o.bySeq = append(o.bySeq, e)
			return
		}
		i, _ := slices.BinarySearchFunc(o.bySeq, h.Seq, func(e *orderEntry, seq uint64) int { return cmp.Compare(e.head.Seq, seq) })
		o.bySeq = slices.Insert(o.bySeq, i, e)
	}
}

// ids returns the IDs of the tasks fl selects by state, agent and
// submission time, in fl's order, at most fl.Limit of them (0: all).
// fl.Class is not kept here: the caller filters on it.
func (o *taskOrder) ids(fl TaskFilter) []string {
	o.mu.RLock()
	defer o.mu.RUnlock()
	var out []string
	n := len(o.bySeq)
	for k := range n {
		i := k
		if fl.Newest {
			i = n - 1 - k
		}
		e := o.bySeq[i]
		if e.deleted || !fl.matchHead(&e.head) {
			continue
		}
		out = append(out, e.id)
		if fl.Limit > 0 && len(out) == fl.Limit {
			break
		}
	}
	return out
}

// reset replaces the whole order with entries, in any order.
func (o *taskOrder) reset(entries []*orderEntry) {
	slices.SortStableFunc(entries, func(a, b *orderEntry) int { return cmp.Compare(a.head.Seq, b.head.Seq) })
	byID := make(map[string]*orderEntry, len(entries))
	for _, e := range entries {
		byID[e.id] = e
	}
	o.mu.Lock()
	o.byID, o.bySeq, o.deleted = byID, entries, 0
	o.mu.Unlock()
}

func (o *taskOrder) leaseToken(id string) (uint64, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	e := o.byID[id]
	if e == nil {
		return 0, false
	}
	return e.head.LeaseToken, true
}
