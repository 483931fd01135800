package cluster

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Claim is the response to a granted ClaimTask.
type Claim struct {
	Task  Task  `json:"task"`
	Lease Lease `json:"lease"`
}

// SubmitResult is the response to SubmitTask.
type SubmitResult struct {
	Task     Task `json:"task"`
	Existing bool `json:"existing"` // the idempotency key matched an earlier task
}

// applier applies one log entry. Every command is validated first (the same
// Validate the proposer ran), and every apply function checks state before
// it writes, so a rejected command leaves no trace but its response (and a
// fence rejection counted).
type applier struct {
	*tx
	idx    uint64
	events int
}

func (a *applier) apply(cmd Command) any {
	if err := cmd.Validate(); err != nil {
		return err
	}
	switch c := cmd.(type) {
	case *PutAgent:
		return a.putAgent(c)
	case *SubmitTask:
		return a.submit(c)
	case *ClaimTask:
		return a.claim(c)
	case *RenewLease:
		return a.renew(c)
	case *ExpireLease:
		return a.expire(c)
	case *ExtendLeases:
		return a.extendLeases(c)
	case *RecordIntent:
		return a.intent(c)
	case *RecordResult:
		return a.result(c)
	case *CompleteTask:
		return a.complete(c)
	case *FailAttempt:
		return a.fail(c)
	case *RetryDLQ:
		return a.retryDLQ(c)
	case *DiscardDLQ:
		return a.discard(c)
	case *CancelTask:
		return a.cancel(c)
	case *StageWrite:
		return a.stage(c)
	case *AppendJournal:
		return a.appendJournal(c)
	case *MarkEffectDone:
		return a.effectDone(c)
	case *PutModuleChunk:
		return a.putModuleChunk(c)
	case *SetMember:
		a.put(memberKey(c.Member.ID), c.Member)
		return c.Member
	case *CompactTasks:
		return a.compact(c)
	case *ResolveCall:
		return a.resolveCall(c)
	case *ClearIntent:
		return a.clearIntent(c)
	case *PutTool:
		return a.putTool(c)
	case *RemoveTool:
		return a.removeTool(c)
	case *PutSchedule:
		return a.putSchedule(c)
	case *PauseSchedule:
		return a.pauseSchedule(c)
	case *DeleteSchedule:
		return a.deleteSchedule(c)
	case *FireSchedule:
		return a.fireSchedule(c)
	case *Suspend:
		return a.suspend(c)
	case *WakeTask:
		return a.wakes(c)
	case *SendSignal:
		return a.signal(c)
	case *DecideApproval:
		return a.decideApproval(c)
	}
	return fmt.Errorf("%w: no handler for %T", ErrInvalidCmd, cmd)
}

func (a *applier) journal(taskID string, now int64, e Event) {
	e.Seq = a.idx<<16 | uint64(a.events)
	a.events++
	if e.At == 0 {
		e.At = now
	}
	a.put(journalKey(taskID, e.Seq), e)
}

func (a *applier) loadTask(id string) (*Task, error) {
	var t Task
	if !a.get(taskKey(id), &t) {
		if a.err != nil {
			return nil, a.err
		}
		return nil, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	a.loaded(&t)
	return &t, nil
}

// fenced loads a running task and checks the caller's fencing token.
func (a *applier) fenced(id string, token uint64) (*Task, error) {
	t, err := a.loadTask(id)
	if err != nil {
		return nil, err
	}
	var held uint64
	if t.Lease != nil {
		held = t.Lease.Token
	}
	if err := a.checkFence(id, token, t.State, t.Lease != nil, held); err != nil {
		return nil, err
	}
	return t, nil
}

// taskFence is what an entry that leaves its task record as it is (a
// ledger or staged write) reads of it.
type taskFence struct {
	State    TaskState `json:"state"`
	Attempts int       `json:"attempts"`
	Lease    *struct {
		Token uint64 `json:"token"`
	} `json:"lease"`
}

// fencedHead is fenced for such an entry. Decoding the whole record (input,
// history, budget) was a third of a RecordResult's apply, paid on every
// replica for every call (docs/BENCHMARKS.md, "The fencing check").
func (a *applier) fencedHead(id string, token uint64) (taskFence, error) {
	var f taskFence
	if !a.get(taskKey(id), &f) {
		if a.err != nil {
			return f, a.err
		}
		return f, fmt.Errorf("task %s: %w", id, ErrNotFound)
	}
	if a.states != nil {
		a.states[id] = f.State
	}
	var held uint64
	if f.Lease != nil {
		held = f.Lease.Token
	}
	return f, a.checkFence(id, token, f.State, f.Lease != nil, held)
}

// checkFence refuses a token that is not the running task's lease's, and
// counts the refusal.
func (a *applier) checkFence(id string, token uint64, state TaskState, leased bool, held uint64) error {
	if state == StateRunning && leased && held == token {
		return nil
	}
	var n uint64
	if b, ok := a.getRaw(keyFenceRejects); ok {
		n = u64(b)
	}
	a.putRaw(keyFenceRejects, putU64(n+1))
	return fmt.Errorf("task %s: token %d, lease holds %d (state %s): %w", id, token, held, state, ErrStaleToken)
}

func (a *applier) putAgent(c *PutAgent) any {
	ag := c.Agent
	module := c.Module
	if len(module) == 0 {
		// Chunked upload: the chunks are already applied; check them whole.
		var err error
		if module, err = a.module(ag.Digest, ag.Size); err != nil {
			return err
		}
	}
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])
	if ag.Digest != "" && ag.Digest != digest {
		return fmt.Errorf("%w: agent %s@%s digest %s does not match its module (%s)", ErrInvalidCmd, ag.Name, ag.Version, ag.Digest, digest)
	}
	var old Agent
	if a.get(agentKey(ag.Name, ag.Version), &old) {
		if old.Digest == digest {
			return old
		}
		return fmt.Errorf("agent %s version %s exists with another module: %w", ag.Name, ag.Version, ErrAlreadyExists)
	}
	ag.Digest, ag.Size, ag.CreatedAt = digest, len(module), c.Now
	if len(c.Module) > 0 {
		// At most two chunks: they land in this entry's transaction.
		for n, off := 0, 0; off < len(module) || n == 0; n, off = n+1, off+moduleChunk {
			a.putRaw(moduleKey(digest, n), module[off:min(off+moduleChunk, len(module))])
		}
	}
	a.put(agentKey(ag.Name, ag.Version), ag)
	return ag
}

// module reassembles a chunked module, checking every chunk is there.
func (a *applier) module(digest string, size int) ([]byte, error) {
	if digest == "" || size <= 0 {
		return nil, fmt.Errorf("%w: a chunked agent needs its digest and size", ErrInvalidCmd)
	}
	out := make([]byte, 0, size)
	for n := 0; len(out) < size; n++ {
		b, ok := a.getRaw(moduleKey(digest, n))
		if !ok {
			if a.err != nil {
				return nil, a.err
			}
			return nil, fmt.Errorf("%w: module %.12s: chunk %d of %d bytes is missing", ErrInvalidCmd, digest, n, size)
		}
		out = append(out, b...)
	}
	if len(out) != size {
		return nil, fmt.Errorf("%w: module %.12s: chunks hold %d bytes, want %d", ErrInvalidCmd, digest, len(out), size)
	}
	return out, nil
}

func (a *applier) putModuleChunk(c *PutModuleChunk) any {
	a.putRaw(moduleKey(c.Digest, c.N), c.Data)
	return nil
}

func (a *applier) submit(c *SubmitTask) any {
	t := c.Task
	if t.IdempotencyKey != "" {
		if b, ok := a.getRaw(idemKey(t.IdempotencyKey)); ok {
			existing, err := a.loadTask(string(b))
			if err != nil {
				return err
			}
			return SubmitResult{Task: *existing, Existing: true}
		}
	}
	if _, ok := a.getRaw(taskKey(t.ID)); ok {
		return fmt.Errorf("task %s: %w", t.ID, ErrAlreadyExists)
	}
	var ag Agent
	if !a.get(agentKey(t.Agent, t.Version), &ag) {
		return fmt.Errorf("agent %s version %s: %w", t.Agent, t.Version, ErrUnknownAgent)
	}
	if len(t.Input) == 0 {
		t.Input = []byte("null")
	}
	if t.Policy.MaxAttempts <= 0 && ag.Manifest.MaxAttempts > 0 {
		t.Policy.MaxAttempts = ag.Manifest.MaxAttempts
	}
	t.Policy = t.Policy.withDefaults()
	// The task's budget: the manifest's, what the submitter overrode, then
	// the defaults. The manifest's was valid when registered; the sum is
	// checked again because that is what the executor enforces.
	t.Budget = ag.Manifest.Budget.Override(t.Budget).WithDefaults()
	if err := validateBudget("task "+t.ID, t.Budget); err != nil {
		return err
	}
	t.Tools = a.pinTools(ag.Manifest.Tools)
	t.State, t.Seq, t.Attempts = StateQueued, a.idx, 0
	t.CreatedAt, t.UpdatedAt, t.NextAt = c.Now, c.Now, c.Now
	t.Lease, t.Output, t.Error, t.History = nil, nil, nil, nil
	a.put(taskKey(t.ID), t)
	a.putRaw(runqKey(t.NextAt, t.Seq, t.ID), nil)
	if t.IdempotencyKey != "" {
		a.putRaw(idemKey(t.IdempotencyKey), []byte(t.ID))
	}
	a.journal(t.ID, c.Now, Event{Type: EventSubmitted, Message: t.Agent + "@" + t.Version})
	return SubmitResult{Task: t}
}

func (a *applier) claim(c *ClaimTask) any {
	first, ok := a.tx.idx.runq.first()
	if !ok {
		return nil
	}
	rest := strings.TrimPrefix(first, "rq/")
	var nextAt uint64
	if _, err := fmt.Sscanf(rest[:16], "%x", &nextAt); err != nil {
		return fmt.Errorf("corrupt runnable index %q: %w", first, err)
	}
	if int64(nextAt) > c.Now {
		return nil
	}
	id := rest[33:]
	t, err := a.loadTask(id)
	if err != nil {
		return err
	}
	t.Attempts++
	l := Lease{TaskID: id, Token: a.idx, Node: c.Node, Attempt: t.Attempts, GrantedAt: c.Now, ExpiresAt: c.Now + int64(c.TTL), TTL: c.TTL}
	t.State, t.Lease, t.LastToken, t.UpdatedAt, t.NextAt = StateRunning, &l, a.idx, c.Now, 0
	t.History = append(t.History, AttemptRecord{N: t.Attempts, Node: c.Node, Token: a.idx, StartedAt: c.Now})
	a.del([]byte(first))
	a.putRaw(leaseKey(l.ExpiresAt, id), nil)
	a.put(taskKey(id), t)
	a.journal(id, c.Now, Event{Type: EventLeased, Attempt: t.Attempts, Message: fmt.Sprintf("node %s, token %d", c.Node, a.idx)})
	return &Claim{Task: *t, Lease: l}
}

func (a *applier) renew(c *RenewLease) any {
	t, err := a.fenced(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	a.del(leaseKey(t.Lease.ExpiresAt, t.ID))
	t.Lease.ExpiresAt, t.Lease.TTL, t.UpdatedAt = c.Now+int64(c.TTL), c.TTL, c.Now
	a.putRaw(leaseKey(t.Lease.ExpiresAt, t.ID), nil)
	a.put(taskKey(t.ID), t)
	return *t.Lease
}

func (a *applier) expire(c *ExpireLease) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	if t.State != StateRunning || t.Lease == nil || t.Lease.Token != c.Token || t.Lease.ExpiresAt > c.Now {
		return nil // renewed, finished or replaced since the leader looked
	}
	// UTC: every replica must write the same message.
	msg := fmt.Sprintf("lease expired: node %s held token %d past %s", t.Lease.Node, t.Lease.Token,
		time.Unix(0, t.Lease.ExpiresAt).UTC().Format(time.RFC3339Nano))
	a.journal(t.ID, c.Now, Event{Type: EventLeaseExpired, Attempt: t.Attempts, Message: msg})
	a.endAttempt(t, TaskError{Class: ClassExpired, Message: msg}, c.Jitter, c.Now)
	return *t
}

func (a *applier) extendLeases(c *ExtendLeases) any {
	n := 0
	for _, key := range a.tx.idx.leases.all() {
		k := []byte(key)
		id := key[len("le/")+17:]
		t, err := a.loadTask(id)
		if err != nil || t.Lease == nil {
			continue
		}
		if until := c.Now + int64(t.Lease.TTL); until > t.Lease.ExpiresAt {
			a.del(k)
			t.Lease.ExpiresAt = until
			a.putRaw(leaseKey(until, id), nil)
			a.put(taskKey(id), t)
			n++
		}
	}
	return n
}

// endAttempt closes the running attempt of t with a failure and moves the task
// to retry_pending or dead_letter.
func (a *applier) endAttempt(t *Task, e TaskError, jitter uint64, now int64) {
	if t.Lease != nil {
		a.del(leaseKey(t.Lease.ExpiresAt, t.ID))
	}
	t.Lease, t.UpdatedAt = nil, now
	h := a.lastAttempt(t)
	if h != nil {
		h.EndedAt, h.Outcome, h.Error = now, string(e.Class), truncate(e.Message, maxHistoryError)
	}
	retryable := e.Class == ClassTransient || e.Class == ClassExpired
	switch {
	case retryable && t.Attempts < t.Policy.MaxAttempts:
		delay := Backoff(t.Policy, t.Attempts, jitter)
		if h != nil {
			h.Delay = int64(delay)
		}
		t.State, t.NextAt, t.Error = StateRetryPending, now+int64(delay), &e
		a.putRaw(runqKey(t.NextAt, t.Seq, t.ID), nil)
		a.journal(t.ID, now, Event{Type: EventRetryScheduled, Attempt: t.Attempts,
			Message: fmt.Sprintf("%s: retry in %s", e.Class, delay)})
	default:
		if retryable {
			e.Message = fmt.Sprintf("attempts exhausted (%d of %d); last: %s", t.Attempts, t.Policy.MaxAttempts, e.Message)
			e.Class = ClassExhausted
		}
		t.State, t.Error, t.NextAt = StateDeadLetter, &e, 0
		a.journal(t.ID, now, Event{Type: EventDeadLettered, Attempt: t.Attempts, Message: string(e.Class) + ": " + e.Message})
	}
	a.put(taskKey(t.ID), t)
}

func (a *applier) lastAttempt(t *Task) *AttemptRecord {
	if len(t.History) == 0 {
		return nil
	}
	return &t.History[len(t.History)-1]
}

func (a *applier) intent(c *RecordIntent) any {
	t, err := a.fencedHead(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	var rec LedgerRecord
	if a.get(ledgerKey(c.TaskID, c.CallID), &rec) && rec.HasResult {
		return rec // already recorded: the caller replays it
	}
	if rec.CallID == "" {
		rec = LedgerRecord{TaskID: c.TaskID, CallID: c.CallID, Tool: c.Tool, Seq: a.idx}
	}
	rec.Attempt, rec.Token, rec.IntentAt, rec.NotApplied = t.Attempts, c.Token, c.Now, false
	a.put(ledgerKey(c.TaskID, c.CallID), rec)
	return rec
}

// resolveCall records a person's answer about a call left in doubt: only a
// dead-lettered task's, only a call with an INTENT and no RESULT.
func (a *applier) resolveCall(c *ResolveCall) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	if t.State != StateDeadLetter {
		return fmt.Errorf("task %s is %s, not dead_letter: %w", t.ID, t.State, ErrInvalidState)
	}
	var rec LedgerRecord
	if !a.get(ledgerKey(t.ID, c.CallID), &rec) {
		if a.err != nil {
			return a.err
		}
		return fmt.Errorf("task %s has no call %s: %w", t.ID, c.CallID, ErrNotFound)
	}
	if rec.HasResult {
		return fmt.Errorf("call %s of task %s has a recorded result; nothing is in doubt: %w", c.CallID, t.ID, ErrInvalidState)
	}
	answer := "not applied"
	if c.Applied {
		answer = "applied"
		rec.HasResult, rec.Status, rec.Result, rec.ResultAt = true, "ok", c.Result, c.Now
	} else {
		rec.NotApplied = true
	}
	a.put(ledgerKey(t.ID, c.CallID), rec)
	a.journal(t.ID, c.Now, Event{Type: EventCallResolved, CallID: c.CallID, Tool: rec.Tool,
		Message: truncate(fmt.Sprintf("%s resolved it as %s: %s", c.By, answer, c.Note), MaxEventMessageBytes)})
	return rec
}

// clearIntent marks a call the worker knows was never sent.
func (a *applier) clearIntent(c *ClearIntent) any {
	t, err := a.fencedHead(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	var rec LedgerRecord
	if !a.get(ledgerKey(c.TaskID, c.CallID), &rec) || rec.HasResult {
		return rec // nothing to clear (or a result won): a no-op
	}
	rec.NotApplied = true
	a.put(ledgerKey(c.TaskID, c.CallID), rec)
	a.journal(c.TaskID, c.Now, Event{Type: EventIntentCleared, Attempt: t.Attempts, CallID: c.CallID, Tool: rec.Tool,
		Message: "the call failed before anything was sent; it is not in doubt"})
	return rec
}

func (a *applier) result(c *RecordResult) any {
	t, err := a.fencedHead(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	var rec LedgerRecord
	if !a.get(ledgerKey(c.TaskID, c.CallID), &rec) {
		if c.Tool == "" {
			return fmt.Errorf("call %s of task %s has no intent: %w", c.CallID, c.TaskID, ErrInvalidState)
		}
		rec = LedgerRecord{TaskID: c.TaskID, CallID: c.CallID, Tool: c.Tool, IntentAt: c.Now, Seq: a.idx}
	}
	if rec.HasResult {
		return rec
	}
	rec.HasResult, rec.Status, rec.Result, rec.Usage, rec.ResultAt = true, c.Status, c.Result, c.Usage, c.Now
	rec.Attempt, rec.Token = t.Attempts, c.Token
	a.put(ledgerKey(c.TaskID, c.CallID), rec)
	if c.Event != nil {
		a.journal(c.TaskID, c.Now, *c.Event)
	}
	return rec
}

func (a *applier) complete(c *CompleteTask) any {
	t, err := a.fenced(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	for _, e := range c.Journal {
		a.journal(t.ID, c.Now, e)
	}
	a.del(leaseKey(t.Lease.ExpiresAt, t.ID))
	if h := a.lastAttempt(t); h != nil {
		h.EndedAt, h.Outcome = c.Now, string(StateSucceeded)
	}
	t.State, t.Lease, t.Output, t.Error, t.UpdatedAt = StateSucceeded, nil, c.Output, nil, c.Now
	if len(t.Output) == 0 {
		t.Output = []byte("null")
	}
	for _, k := range a.keys(stagePrefix(t.ID), 0) {
		var w KVWrite
		if a.get(k, &w) {
			if w.Delete {
				a.del(kvKey(w.Key))
			} else {
				a.putRaw(kvKey(w.Key), w.Value)
			}
		}
		a.del(k)
	}
	a.dropStageCount(t.ID)
	for i, e := range c.Outbox {
		e.TaskID, e.N, e.Done = t.ID, i, false
		a.put(outboxKey(t.ID, i), e)
	}
	a.put(taskKey(t.ID), t)
	a.journal(t.ID, c.Now, Event{Type: EventSucceeded, Attempt: t.Attempts})
	return *t
}

func (a *applier) fail(c *FailAttempt) any {
	t, err := a.fenced(c.TaskID, c.Token)
	if err != nil {
		return err
	}
	for _, e := range c.Journal {
		a.journal(t.ID, c.Now, e)
	}
	a.journal(t.ID, c.Now, Event{Type: EventAttemptFailed, Attempt: t.Attempts, Message: string(c.Error.Class) + ": " + c.Error.Message})
	a.endAttempt(t, c.Error, c.Jitter, c.Now)
	return *t
}

func (a *applier) retryDLQ(c *RetryDLQ) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	if t.State != StateDeadLetter {
		return fmt.Errorf("task %s is %s, not dead_letter: %w", t.ID, t.State, ErrInvalidState)
	}
	if c.Version != "" {
		if _, ok := a.getRaw(agentKey(t.Agent, c.Version)); !ok {
			return fmt.Errorf("agent %s version %s: %w", t.Agent, c.Version, ErrUnknownAgent)
		}
		t.Version = c.Version
	}
	// A retry is a person's decision to run again, often after fixing a
	// tool's definition: the task takes the newest versions of its
	// declared tools, as a new submission would.
	var ag Agent
	if a.get(agentKey(t.Agent, t.Version), &ag) {
		t.Tools = a.pinTools(ag.Manifest.Tools)
	}
	budget := t.Budget.Override(c.Budget).WithDefaults()
	if err := validateBudget("task "+t.ID, budget); err != nil {
		return err
	}
	t.Budget = budget
	a.del(dlqKey(t.ID))
	t.State, t.Attempts, t.NextAt, t.UpdatedAt = StateQueued, 0, c.Now, c.Now
	a.putRaw(runqKey(t.NextAt, t.Seq, t.ID), nil)
	a.put(taskKey(t.ID), t)
	a.journal(t.ID, c.Now, Event{Type: EventDLQRetried, Message: t.Agent + "@" + t.Version})
	return *t
}

func (a *applier) discard(c *DiscardDLQ) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	if t.State != StateDeadLetter {
		return fmt.Errorf("task %s is %s, not dead_letter: %w", t.ID, t.State, ErrInvalidState)
	}
	a.del(dlqKey(t.ID))
	a.dropStaged(t.ID)
	t.State, t.DiscardReason, t.UpdatedAt = StateDiscarded, c.Reason, c.Now
	a.put(taskKey(t.ID), t)
	a.journal(t.ID, c.Now, Event{Type: EventDiscarded, Message: c.Reason})
	return *t
}

func (a *applier) cancel(c *CancelTask) any {
	t, err := a.loadTask(c.TaskID)
	if err != nil {
		return err
	}
	switch t.State {
	case StateQueued, StateRetryPending:
		a.del(runqKey(t.NextAt, t.Seq, t.ID))
	case StateRunning:
		a.del(leaseKey(t.Lease.ExpiresAt, t.ID))
		if h := a.lastAttempt(t); h != nil {
			h.EndedAt, h.Outcome = c.Now, string(StateCancelled)
		}
	case StateDeadLetter:
		a.del(dlqKey(t.ID))
	case StateWaiting:
		if t.Wait != nil && t.Wait.Until != 0 {
			a.del(wakeKey(t.Wait.Until, t.ID))
		}
		a.withdrawApproval(t, c.Now)
	default:
		return fmt.Errorf("task %s is %s: %w", t.ID, t.State, ErrInvalidState)
	}
	a.dropStaged(t.ID)
	t.State, t.Lease, t.Wait, t.NextAt, t.UpdatedAt = StateCancelled, nil, nil, 0, c.Now
	a.put(taskKey(t.ID), t)
	a.journal(t.ID, c.Now, Event{Type: EventCancelled, Message: c.Reason})
	return *t
}

// dropStaged forgets a task's staged writes: it will never complete.
func (a *applier) dropStaged(taskID string) {
	for _, k := range a.keys(stagePrefix(taskID), 0) {
		a.del(k)
	}
	a.dropStageCount(taskID)
}

func (a *applier) dropStageCount(taskID string) {
	if _, ok := a.getRaw(stageCountKey(taskID)); ok {
		a.del(stageCountKey(taskID))
	}
}

// stage records a kv write for the task's completion. Every staged write is
// applied by the one CompleteTask entry, so a task may stage at most
// MaxStagedWrites of at most MaxStagedBytes in all, counted in
// stageCountKey as they are staged.
func (a *applier) stage(c *StageWrite) any {
	if _, err := a.fencedHead(c.TaskID, c.Token); err != nil {
		return err
	}
	var n, size uint64
	if b, ok := a.getRaw(stageCountKey(c.TaskID)); ok && len(b) == 16 {
		n, size = u64(b[:8]), u64(b[8:])
	}
	w := uint64(stagedBytes(c.Write))
	if n+1 > MaxStagedWrites {
		return fmt.Errorf("task %s: %w: staged writes would be %d, limit %d", c.TaskID, ErrTooLarge, n+1, MaxStagedWrites)
	}
	if size+w > MaxStagedBytes {
		return fmt.Errorf("task %s: %w: staged writes would hold %d bytes, limit %d", c.TaskID, ErrTooLarge, size+w, MaxStagedBytes)
	}
	a.putRaw(stageCountKey(c.TaskID), append(putU64(n+1), putU64(size+w)...))
	a.put(stageKey(c.TaskID, a.idx), c.Write)
	return nil
}

// appendJournal adds events; with a token, only while the lease holds.
func (a *applier) appendJournal(c *AppendJournal) any {
	var err error
	if c.Token != 0 {
		_, err = a.fencedHead(c.TaskID, c.Token)
	} else {
		_, err = a.loadTask(c.TaskID)
	}
	if err != nil {
		return err
	}
	for _, e := range c.Events {
		a.journal(c.TaskID, c.Now, e)
	}
	return nil
}

func (a *applier) effectDone(c *MarkEffectDone) any {
	var e Effect
	if !a.get(outboxKey(c.TaskID, c.N), &e) {
		return fmt.Errorf("effect %d of task %s: %w", c.N, c.TaskID, ErrNotFound)
	}
	if e.Done {
		return nil
	}
	if err := a.effectWrites(c); err != nil {
		return err
	}
	e.Done, e.Error = true, c.Error
	a.put(outboxKey(c.TaskID, c.N), e)
	ev := Event{Type: EventEffectDispatched, Tool: e.Tool, CallID: e.Key}
	if c.Error != "" {
		ev.Type, ev.Message = EventEffectFailed, c.Error
	}
	a.journal(c.TaskID, c.Now, ev)
	return nil
}

// maxHistoryError bounds the error an attempt's history line keeps (the task's
// last error and the journal keep it whole): a task record carries a line
// per attempt and is rewritten by every claim.
const maxHistoryError = 256

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
