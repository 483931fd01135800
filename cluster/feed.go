package cluster

import (
	"sync"
	"sync/atomic"
)

// StateChange is one change of a task's state, as the FSM applied it. The
// applier notes one whenever it writes a task record whose state differs
// from the state the entry found (a new task changes from ""), whatever
// command did it: a listener needs no list of commands or event types.
type StateChange struct {
	// ID orders changes across all tasks: the Raft index of the entry
	// that made the change, shifted left 16 bits, plus the change's
	// position in that entry (an entry writes at most entryMaxOps keys, so
	// fewer than 1<<16 changes). Every replica gives a change the same ID.
	ID      uint64     `json:"id"`
	TaskID  string     `json:"task_id"`
	Agent   string     `json:"agent"`
	Version string     `json:"version"`
	From    TaskState  `json:"from"` // "" for a new task
	To      TaskState  `json:"to"`
	Attempt int        `json:"attempt"`
	At      int64      `json:"at"`              // the task's UpdatedAt: the proposer's time of the change
	Class   ErrorClass `json:"class,omitempty"` // the task's last error class, if it has one
}

// StateBatch is what a state listener hears after a commit.
type StateBatch struct {
	// Changes, in ID order.
	Changes []StateChange
	// Reset: changes up to Applied were not all heard one by one: a
	// snapshot replaced the whole state, or the transaction had begun
	// before the listener was registered. Changes holds none then.
	Reset bool
	// Applied is the applied index after the commit or restore.
	Applied uint64
}

// ListenStates registers fn to hear every task state change, in order,
// once the transaction holding it has committed (so a reader woken by it
// finds the change), and a reset after a snapshot restore. fn runs on
// Raft's apply goroutine: it must be quick and must not block or propose;
// it must not keep the batch's slice past the call. The returned function
// removes fn; safe to call twice.
//
// A change committed before ListenStates returns may or may not be heard;
// every change of an entry past the AppliedIndex read after it returned is
// heard, or falls under a reset.
func (f *FSM) ListenStates(fn func(StateBatch)) (stop func()) {
	l := &stateListener{fn: fn}
	f.states.mu.Lock()
	f.states.ls = append(f.states.ls, l)
	f.states.on.Store(true)
	f.states.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			f.states.mu.Lock()
			defer f.states.mu.Unlock()
			for i, x := range f.states.ls {
				if x == l {
					f.states.ls = append(f.states.ls[:i:i], f.states.ls[i+1:]...)
					break
				}
			}
			f.states.on.Store(len(f.states.ls) > 0)
		})
	}
}

type stateListener struct{ fn func(StateBatch) }

// stateListeners are the FSM's ListenStates registrations; on is set while
// there is one, so an FSM nobody listens to notes no changes.
type stateListeners struct {
	mu sync.Mutex
	ls []*stateListener
	on atomic.Bool
}

// publish tells every listener about b. It runs on the apply goroutine.
func (s *stateListeners) publish(b StateBatch) {
	if !s.on.Load() || (len(b.Changes) == 0 && !b.Reset) {
		return
	}
	if b.Reset {
		b.Changes = nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.ls {
		l.fn(b)
	}
}

// loaded notes the state an entry found a task in (applier.loadTask).
func (t *tx) loaded(tk *Task) {
	if t.states == nil {
		return
	}
	t.states[tk.ID] = tk.State
}

// wroteTask notes a write of a task record, and a change if its state
// differs from the one the transaction last saw.
func (t *tx) wroteTask(v any) {
	if t.states == nil {
		return
	}
	var tk *Task
	switch x := v.(type) {
	case *Task:
		tk = x
	case Task:
		tk = &x
	default:
		return
	}
	prev, seen := t.states[tk.ID]
	t.states[tk.ID] = tk.State
	if seen && prev == tk.State {
		return
	}
	c := StateChange{ID: t.index<<16 | uint64(t.entryChanges), TaskID: tk.ID, Agent: tk.Agent, Version: tk.Version,
		From: prev, To: tk.State, Attempt: tk.Attempts, At: tk.UpdatedAt}
	if tk.Error != nil {
		c.Class = tk.Error.Class
	}
	t.entryChanges++
	t.changes = append(t.changes, c)
}
