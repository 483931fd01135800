package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orloj/orloj/abi"
)

// Durable waits. An attempt that reaches a wait it cannot answer at once
// commits Suspend: the task becomes waiting, its lease is released at once
// and the attempt is not counted (it neither uses up max_attempts nor
// schedules a backoff). The wait's answer is written into the ledger, under
// the waiting call's ID, by the command that ends the wait: WakeTask, which
// the leader commits when a wake time or a timeout comes (as it commits
// lease expiry), or SendSignal naming the awaited signal. The task is then
// queued and runs again on any node; its guest replays every recorded call,
// the wait included, and goes on. A waiting task costs a record and, when
// it has a deadline, one key of the wake index (wk/), which the leader
// reads in time order: no worker, no goroutine, no scan of all tasks.

// WaitKind names what a waiting task waits for. Values are stored; a new
// kind (an approval bound to a call) gets a new constant.
type WaitKind string

const (
	// WaitSleep: until Wait.Until. Ended by WakeTask, which records the
	// wait's answer as OK.
	WaitSleep WaitKind = "sleep"
	// WaitSignal: for the signal Wait.Signal, until Wait.Until if it is
	// set. Ended by SendSignal of that name (the payload is the answer) or
	// by WakeTask at the deadline (the answer is abi.StatusTimeout).
	WaitSignal WaitKind = "signal"
	// WaitApproval: for a person's decision about the call Wait.CallID, of
	// a tool that needs approval (approval.go). Ended by DecideApproval.
	WaitApproval WaitKind = "approval"
)

// WaitKinds lists every WaitKind.
func WaitKinds() []WaitKind { return []WaitKind{WaitSleep, WaitSignal, WaitApproval} }

func (k WaitKind) valid() bool {
	for _, v := range WaitKinds() {
		if k == v {
			return true
		}
	}
	return false
}

// Wait is what a waiting task waits for.
type Wait struct {
	Kind WaitKind `json:"kind"`
	// CallID and Tool name the host call that waits: its ledger record
	// receives the answer, which the next run replays.
	CallID string `json:"call_id"`
	Tool   string `json:"tool"`
	// Until is the wake time of a sleep, or a signal wait's deadline (0:
	// none), unix nanos. Chosen by the proposer.
	Until int64 `json:"until,omitempty"`
	// Signal is the awaited signal's name.
	Signal string `json:"signal,omitempty"`
	// Token is the fencing token of the attempt that suspended: it names
	// this wait, so a WakeTask meant for it wakes nothing else.
	Token uint64 `json:"token,omitempty"`
	Since int64  `json:"since,omitempty"`
}

// Signal is a signal sent to a task and kept until the task awaits it.
type Signal struct {
	TaskID  string          `json:"task_id"`
	Name    string          `json:"name"`
	Key     string          `json:"key,omitempty"`
	Payload json.RawMessage `json:"payload"`
	Seq     uint64          `json:"seq"` // Raft index of the send: delivery order
	At      int64           `json:"at"`
}

// Limits on what signals keep in the replicated state.
const (
	// MaxPendingSignals bounds the signals a task keeps before it awaits
	// them; one more is refused with ErrTooLarge.
	MaxPendingSignals = 64
	// MaxSignalKeys bounds the idempotency keys a task remembers (one per
	// keyed signal it accepted): a sender past it must send without a key.
	MaxSignalKeys = 1024
)

// Suspend ends an attempt at a wait. If the wait's call has an answer
// already (recorded, a sleep whose time has passed, a signal kept, a
// deadline passed) the FSM records it and the attempt goes on; otherwise
// the task waits. Fenced like every attempt outcome.
type Suspend struct {
	TaskID string `json:"task_id"`
	Token  uint64 `json:"token"`
	Wait   Wait   `json:"wait"`
	// Params are the call's, for an approval: what the person is shown.
	Params  json.RawMessage `json:"params,omitempty"`
	Journal []Event         `json:"journal,omitempty"` // the attempt's events not yet journaled
	Now     int64           `json:"now"`
}

// SuspendResult answers Suspend: Record when the wait was answered without
// waiting (the attempt goes on and returns it), else the waiting task.
type SuspendResult struct {
	Record *LedgerRecord `json:"record,omitempty"`
	// Approved: an approval's call was approved; invoke it now.
	Approved bool `json:"approved,omitempty"`
	Task     Task `json:"task"`
}

// WakeTask ends a wait whose time came: the leader commits it for the wake
// index's due entries. It is a no-op unless the task still waits on the
// wait that Token names, with Until at or before Now, so a wake is never
// doubled. More wakes further waits in the same entry, each on the same
// terms (at most MaxWakesPerEntry in all): a burst of waits due together
// costs one Raft entry per batch, not one each.
type WakeTask struct {
	TaskID string    `json:"task_id"`
	Token  uint64    `json:"token"`
	More   []WaitRef `json:"more,omitempty"`
	Now    int64     `json:"now"`
}

// WaitRef names a wait: its task and the token of the attempt that
// suspended on it.
type WaitRef struct {
	TaskID string `json:"task_id"`
	Token  uint64 `json:"token"`
}

// MaxWakesPerEntry bounds the waits one WakeTask ends, so its entry stays
// well inside a Badger transaction (each wake writes the task, its ledger
// answer and a journal event).
const MaxWakesPerEntry = 128

// SendSignal delivers a signal to a task: to its wait, if it awaits that
// name, else kept for a later await. With a Key, a second signal with the
// same key is a no-op (Duplicate).
type SendSignal struct {
	TaskID  string          `json:"task_id"`
	Name    string          `json:"name"`
	Key     string          `json:"key,omitempty"`
	Payload json.RawMessage `json:"payload"`
	Now     int64           `json:"now"`
}

// SignalResult answers SendSignal.
type SignalResult struct {
	Task Task `json:"task"`
	// Delivered: the task was waiting for it and is queued again.
	Delivered bool `json:"delivered,omitempty"`
	// Duplicate: a signal with the same key was accepted before; nothing
	// changed.
	Duplicate bool `json:"duplicate,omitempty"`
}

func (Suspend) messageType() MessageType    { return MsgSuspend }
func (WakeTask) messageType() MessageType   { return MsgWakeTask }
func (SendSignal) messageType() MessageType { return MsgSendSignal }

func (c *Suspend) Validate() error {
	if err := required("task id", c.TaskID, "wait call id", c.Wait.CallID, "wait tool", c.Wait.Tool); err != nil {
		return err
	}
	if err := validateWait(&c.Wait); err != nil {
		return err
	}
	if err := checkBytes("suspend params", len(c.Params), MaxInputBytes); err != nil {
		return err
	}
	return validateEvents(c.Journal)
}

func validateWait(w *Wait) error {
	if !w.Kind.valid() {
		return fmt.Errorf("%w: wait kind %q", ErrInvalidCmd, w.Kind)
	}
	if w.Until < 0 {
		return fmt.Errorf("%w: wait until %d is negative", ErrInvalidCmd, w.Until)
	}
	switch w.Kind {
	case WaitSleep:
		if w.Until == 0 || w.Signal != "" {
			return fmt.Errorf("%w: a sleep needs a wake time and no signal", ErrInvalidCmd)
		}
	case WaitSignal:
		if err := abi.ValidSignalName(w.Signal); err != nil {
			return fmt.Errorf("%w: %v", ErrInvalidCmd, err)
		}
	case WaitApproval:
		if w.Until != 0 || w.Signal != "" {
			return fmt.Errorf("%w: an approval waits with no deadline and no signal", ErrInvalidCmd)
		}
	}
	return nil
}

func (c *WakeTask) Validate() error {
	if len(c.More) >= MaxWakesPerEntry {
		return fmt.Errorf("%w: %d wakes in one entry, limit %d", ErrTooLarge, len(c.More)+1, MaxWakesPerEntry)
	}
	if err := required("task id", c.TaskID); err != nil {
		return err
	}
	for _, r := range c.More {
		if err := required("task id", r.TaskID); err != nil {
			return err
		}
	}
	return nil
}

func (c *SendSignal) Validate() error {
	if err := required("task id", c.TaskID); err != nil {
		return err
	}
	if err := abi.ValidSignalName(c.Name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidCmd, err)
	}
	if err := checkBytes("signal key", len(c.Key), abi.MaxKeyBytes); err != nil {
		return err
	}
	if err := checkBytes("signal payload", len(c.Payload), abi.MaxSignalBytes); err != nil {
		return err
	}
	if len(c.Payload) > 0 && !json.Valid(c.Payload) {
		return fmt.Errorf("%w: signal payload is not JSON", ErrInvalidCmd)
	}
	return nil
}

// Keys of the wait families (see keys.go):
//
//	wk/UNTIL/ID        wake index: waiting tasks with a wake time or deadline
//	sg/TASK/NAME\x00SEQ  Signal kept until awaited (a name has no NUL)
//	sk/TASK/KEY         a signal idempotency key the task accepted
func wakeKey(until int64, id string) []byte { return []byte("wk/" + hex16(uint64(until)) + "/" + id) }
func signalKey(task, name string, seq uint64) []byte {
	return append(signalNamePrefix(task, name), hex16(seq)...)
}
func signalNamePrefix(task, name string) []byte { return []byte("sg/" + task + "/" + name + "\x00") }
func signalPrefix(task string) []byte           { return []byte("sg/" + task + "/") }
func signalIdemKey(task, key string) []byte     { return []byte("sk/" + task + "/" + key) }
func signalIdemPrefix(task string) []byte       { return []byte("sk/" + task + "/") }
func wakeKeyID(key string) string               { return key[len("wk/")+17:] }

// sleepAnswer is the recorded answer of a sleep: the time it woke for.
func sleepAnswer(until int64) json.RawMessage {
	b, _ := json.Marshal(abi.WaitResult{Until: until}) // one integer: cannot fail
	return b
}

func timeoutAnswer(w Wait) json.RawMessage {
	return abi.EncodeErrorBody(abi.StatusTimeout, timeoutMessage(w))
}

func timeoutMessage(w Wait) string {
	return fmt.Sprintf("no signal %q before %s", w.Signal, utc(w.Until))
}

// utc formats unix nanos in UTC: every replica must write the same text.
func utc(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

func orNull(p json.RawMessage) json.RawMessage {
	if len(p) == 0 {
		return json.RawMessage("null")
	}
	return p
}

// describe says what a wait waits for, for the journal and the CLI.
func (w Wait) describe() string {
	switch w.Kind {
	case WaitSleep:
		return "sleep until " + utc(w.Until)
	case WaitSignal:
		if w.Until != 0 {
			return fmt.Sprintf("signal %q until %s", w.Signal, utc(w.Until))
		}
		return fmt.Sprintf("signal %q", w.Signal)
	case WaitApproval:
		return "approval of a call of " + w.Tool
	}
	return string(w.Kind)
}

func (a *applier) suspend(c *Suspend) any {
	t, err := a.fenced(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	for _, e := range c.Journal {
		a.journal(t.ID, c.Now, e)
	}
	w := c.Wait
	w.Token, w.Since = c.Token, c.Now
	var rec LedgerRecord
	if a.get(ledgerKey(t.ID, w.CallID), &rec) && rec.HasResult {
		return SuspendResult{Record: &rec, Task: *t}
	}
	switch w.Kind {
	case WaitSleep:
		if w.Until <= c.Now {
			rec := a.answer(t, w, abi.StatusOK, sleepAnswer(w.Until), c.Now)
			return SuspendResult{Record: &rec, Task: *t}
		}
	case WaitSignal:
		if sig, key, ok := a.pendingSignal(t.ID, w.Signal); ok {
			a.del(key)
			rec := a.answer(t, w, abi.StatusOK, orNull(sig.Payload), c.Now)
			a.journal(t.ID, c.Now, Event{Type: EventSignalDelivered, Attempt: t.Attempts, CallID: w.CallID, Tool: w.Tool,
				Message: fmt.Sprintf("signal %q, kept since %s", sig.Name, utc(sig.At))})
			return SuspendResult{Record: &rec, Task: *t}
		}
		if w.Until != 0 && w.Until <= c.Now {
			rec := a.answer(t, w, abi.StatusTimeout, timeoutAnswer(w), c.Now)
			return SuspendResult{Record: &rec, Task: *t}
		}
	case WaitApproval:
		approved, err := a.requestApproval(t, w, c.Params, c.Now)
		if err != nil {
			return err
		}
		if approved {
			return SuspendResult{Approved: true, Task: *t}
		}
	}
	if a.err != nil {
		return a.err
	}
	a.del(leaseKey(t.Lease.ExpiresAt, t.ID))
	if h := a.lastAttempt(t); h != nil {
		h.EndedAt, h.Outcome = c.Now, string(StateWaiting)
	}
	// Not a failed attempt: the run that follows the wake continues this
	// one, under the same attempt number.
	t.Attempts--
	t.State, t.Lease, t.Wait, t.NextAt, t.UpdatedAt = StateWaiting, nil, &w, 0, c.Now
	if w.Until != 0 {
		a.putRaw(wakeKey(w.Until, t.ID), nil)
	}
	a.put(taskKey(t.ID), t)
	a.journal(t.ID, c.Now, Event{Type: EventWaiting, Attempt: t.Attempts + 1, CallID: w.CallID, Tool: w.Tool, Message: w.describe()})
	return SuspendResult{Task: *t}
}

// answer records a wait's answer in the ledger under its call's ID, as made
// by the attempt that met the wait (a waiting task's counter has stepped
// back past it).
func (a *applier) answer(t *Task, w Wait, st abi.Status, body []byte, now int64) LedgerRecord {
	attempt := t.Attempts
	if t.State == StateWaiting {
		attempt++
	}
	rec := LedgerRecord{TaskID: t.ID, CallID: w.CallID, Tool: w.Tool, Attempt: attempt, Token: w.Token,
		IntentAt: w.Since, HasResult: true, Status: st.String(), Result: body, ResultAt: now, Seq: a.idx}
	if rec.IntentAt == 0 {
		rec.IntentAt = now
	}
	a.put(ledgerKey(t.ID, w.CallID), rec)
	return rec
}

// pendingSignal finds the oldest kept signal with the name: the first key
// under its name's prefix, so only that one value is read.
func (a *applier) pendingSignal(taskID, name string) (Signal, []byte, bool) {
	var s Signal
	ks := a.keys(signalNamePrefix(taskID, name), 1)
	if len(ks) == 0 || !a.get(ks[0], &s) {
		return Signal{}, nil, false
	}
	return s, ks[0], true
}

// resume queues a waiting task to run again.
func (a *applier) resume(t *Task, now int64, msg string) {
	if t.Wait != nil && t.Wait.Until != 0 {
		a.del(wakeKey(t.Wait.Until, t.ID))
	}
	t.State, t.Wait, t.NextAt, t.UpdatedAt = StateQueued, nil, now, now
	a.putRaw(runqKey(t.NextAt, t.Seq, t.ID), nil)
	a.put(taskKey(t.ID), t)
	a.journal(t.ID, now, Event{Type: EventWoken, Message: msg})
}

// wakes applies a WakeTask: with no More, the woken task (nil for a no-op)
// or an error, as one wake; with More, the number woken, a wait that
// cannot be woken being passed over.
func (a *applier) wakes(c *WakeTask) any {
	first := a.wake(WaitRef{TaskID: c.TaskID, Token: c.Token}, c.Now)
	if len(c.More) == 0 {
		return first
	}
	n := 0
	if _, ok := first.(Task); ok {
		n++
	}
	for _, r := range c.More {
		if a.err != nil {
			return a.err
		}
		if _, ok := a.wake(r, c.Now).(Task); ok {
			n++
		}
	}
	return n
}

func (a *applier) wake(c WaitRef, now int64) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	w := t.Wait
	if t.State != StateWaiting || w == nil || w.Token != c.Token || w.Until == 0 || w.Until > now {
		return nil // woken, signalled or cancelled since the leader looked
	}
	switch w.Kind {
	case WaitSleep:
		a.answer(t, *w, abi.StatusOK, sleepAnswer(w.Until), now)
		a.resume(t, now, "slept until "+utc(w.Until))
	case WaitSignal:
		a.answer(t, *w, abi.StatusTimeout, timeoutAnswer(*w), now)
		a.resume(t, now, timeoutMessage(*w)+": timed out")
	default:
		return fmt.Errorf("task %s waits for %q, which no wake time ends: %w", t.ID, w.Kind, ErrInvalidState)
	}
	return *t
}

func (a *applier) signal(c *SendSignal) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	if t.State.Final() {
		return fmt.Errorf("task %s is %s; it awaits no signal: %w", t.ID, t.State, ErrInvalidState)
	}
	if c.Key != "" {
		if _, ok := a.getRaw(signalIdemKey(t.ID, c.Key)); ok {
			return SignalResult{Task: *t, Duplicate: true}
		}
		if n := len(a.keys(signalIdemPrefix(t.ID), MaxSignalKeys)); n >= MaxSignalKeys {
			return fmt.Errorf("task %s: %w: it has accepted %d keyed signals, limit %d; send without a key", t.ID, ErrTooLarge, n, MaxSignalKeys)
		}
	}
	payload := orNull(c.Payload)
	var res SignalResult
	if w := t.Wait; t.State == StateWaiting && w != nil && w.Kind == WaitSignal && w.Signal == c.Name {
		a.answer(t, *w, abi.StatusOK, payload, c.Now)
		a.journal(t.ID, c.Now, Event{Type: EventSignalDelivered, CallID: w.CallID, Tool: w.Tool, Message: fmt.Sprintf("signal %q", c.Name)})
		a.resume(t, c.Now, fmt.Sprintf("signal %q arrived", c.Name))
		res.Delivered = true
	} else {
		if n := len(a.keys(signalPrefix(t.ID), MaxPendingSignals)); n >= MaxPendingSignals {
			return fmt.Errorf("task %s: %w: it keeps %d signals it has not awaited, limit %d", t.ID, ErrTooLarge, n, MaxPendingSignals)
		}
		a.put(signalKey(t.ID, c.Name, a.idx), Signal{TaskID: t.ID, Name: c.Name, Key: c.Key, Payload: payload, Seq: a.idx, At: c.Now})
		a.journal(t.ID, c.Now, Event{Type: EventSignalReceived, Message: fmt.Sprintf("signal %q kept until the task awaits it", c.Name)})
	}
	if c.Key != "" {
		a.putRaw(signalIdemKey(t.ID, c.Key), nil)
	}
	if a.err != nil {
		return a.err
	}
	res.Task = *t
	return res
}

// DueWake names a waiting task whose wake time has come.
type DueWake struct {
	TaskID string
	Token  uint64
	Until  int64
}

// DueWakes lists, soonest first and at most limit, the waits whose wake
// time or deadline is at or before now. It reads the wake index, not the
// tasks: its cost follows the waits that are due.
func (f *FSM) DueWakes(now int64, limit int) ([]DueWake, error) {
	if now < 0 || limit <= 0 {
		return nil, nil
	}
	// Keys sort by wake time: those due are the ones before now+1's.
	due := f.idx.wakes.below("wk/"+hex16(uint64(now)+1), limit)
	var out []DueWake
	err := f.view(func(tx *tx) error {
		for _, k := range due {
			var t Task
			if tx.get(taskKey(wakeKeyID(k)), &t) && t.State == StateWaiting && t.Wait != nil {
				out = append(out, DueWake{TaskID: t.ID, Token: t.Wait.Token, Until: t.Wait.Until})
			}
		}
		return nil
	})
	return out, err
}

// Signals lists the signals a task keeps, oldest first.
func (f *FSM) Signals(taskID string) ([]Signal, error) {
	out, err := decodeAll[Signal](f, signalPrefix(taskID), nil)
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, err
}

// maxWakesPerPass bounds the wakes one leader pass commits, so a pass over
// a burst of due waits still yields to the other duties (lease expiry
// first); at wakeParallel in flight it takes a few hundred milliseconds.
const maxWakesPerPass = 8192

// wakeParallel is how many WakeTask entries are in flight at once, each
// waking up to MaxWakesPerEntry waits: Raft batches concurrent proposals
// into one log write, so 10,000 waits due at one moment wake in a fraction
// of a second.
const wakeParallel = 8

// wakeDue commits WakeTask for every due wait, soonest first, in entries
// of up to MaxWakesPerEntry, wakeParallel at a time.
func (n *Node) wakeDue(ctx context.Context) {
	now := n.cfg.Clock().UnixNano()
	due, err := n.fsm.DueWakes(now, maxWakesPerPass)
	if err != nil {
		n.log.Error("list due wakes", "error", err)
		return
	}
	sem := make(chan struct{}, wakeParallel)
	var wg sync.WaitGroup
	var failed atomic.Bool
	for len(due) > 0 {
		if ctx.Err() != nil || failed.Load() {
			break
		}
		batch := due[:min(len(due), MaxWakesPerEntry)]
		due = due[len(batch):]
		cmd := &WakeTask{TaskID: batch[0].TaskID, Token: batch[0].Token, Now: now}
		for _, w := range batch[1:] {
			cmd.More = append(cmd.More, WaitRef{TaskID: w.TaskID, Token: w.Token})
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := n.Apply(ctx, cmd); err != nil {
				if !failed.Swap(true) { // the rest wait for the next pass
					n.log.Warn("wake tasks", "first", cmd.TaskID, "waits", len(cmd.More)+1, "error", err)
				}
				return
			}
			n.log.Debug("tasks woken", "first", cmd.TaskID, "waits", len(cmd.More)+1)
		}()
	}
	wg.Wait()
}
