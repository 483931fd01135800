package cluster

import "sync"

// TaskWatch wakes one waiter when one task's record changes, so a waiter
// costs nothing while other tasks change: FSM.Changed wakes every waiter on
// every applied batch, and a thousand clients each waiting for its own task
// would each re-read it on every change of any task.
//
// Use it like Changed: take Changed() before reading the task, so a change
// between the read and the wait is not missed:
//
//	w := fsm.WatchTask(id)
//	defer w.Stop()
//	for {
//		ch := w.Changed()
//		t, err := fsm.Task(id)
//		... return if t is what the caller waits for ...
//		<-ch // or ctx.Done()
//	}
//
// A TaskWatch is for one goroutine. Stop releases it; until then the FSM
// keeps an entry for the task, shared by every watch of the same ID.
type TaskWatch struct {
	reg  *taskWatches
	id   string
	e    *watchEntry
	once sync.Once
}

// WatchTask starts watching task id, which need not exist yet (a follower
// may not have applied its submission). The watch is signalled after every
// applied batch that wrote the task's record, once that batch is committed
// to Badger, and after a snapshot is restored. Call Stop when done.
func (f *FSM) WatchTask(id string) *TaskWatch {
	return f.watches.add(id)
}

// Changed returns a channel closed after the next committed change of the
// task's record (or at once if Stop was called).
func (w *TaskWatch) Changed() <-chan struct{} {
	w.reg.mu.Lock()
	defer w.reg.mu.Unlock()
	if w.e == nil {
		return closedChan
	}
	return w.e.ch
}

// Stop releases the watch; the FSM forgets the task once no watch of it
// remains. Safe to call twice.
func (w *TaskWatch) Stop() {
	w.once.Do(func() { w.reg.remove(w) })
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// taskWatches is the FSM's registry of watched tasks: an entry per task
// with at least one live watch, so its size is bounded by the waiters, not
// by the tasks.
type taskWatches struct {
	mu sync.Mutex
	m  map[string]*watchEntry
}

type watchEntry struct {
	ch   chan struct{} // closed and replaced on each change of the task
	refs int
}

func newTaskWatches() *taskWatches { return &taskWatches{m: map[string]*watchEntry{}} }

func (r *taskWatches) add(id string) *TaskWatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[id]
	if e == nil {
		e = &watchEntry{ch: make(chan struct{})}
		r.m[id] = e
	}
	e.refs++
	return &TaskWatch{reg: r, id: id, e: e}
}

func (r *taskWatches) remove(w *TaskWatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if w.e == nil {
		return
	}
	if w.e.refs--; w.e.refs == 0 && r.m[w.id] == w.e {
		delete(r.m, w.id)
	}
	w.e = nil
}

// signal wakes the watches of the given tasks. It runs on the apply
// goroutine after a commit; its cost is a map lookup per changed task.
func (r *taskWatches) signal(ids map[string]struct{}) {
	if len(ids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.m) == 0 {
		return
	}
	for id := range ids {
		if e := r.m[id]; e != nil {
			close(e.ch)
			e.ch = make(chan struct{})
		}
	}
}

// signalAll wakes every watch: the whole state was replaced (a restore).
func (r *taskWatches) signalAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.m {
		close(e.ch)
		e.ch = make(chan struct{})
	}
}

// watched reports how many tasks are watched (tests check entries go).
func (r *taskWatches) watched() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.m)
}
