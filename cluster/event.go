package cluster

// EventType names what a journal Event records. It is stored and served as
// its string, so a constant's value never changes once released; a new kind
// of event gets a new constant here, with a line saying who writes it and
// when. The FSM stores any type a proposer sends (a journal is a record, not
// a state machine), but everything Orloj itself writes is listed below.
type EventType string

// Written by the FSM as it applies a command.
const (
	// EventSubmitted: a task was accepted (SubmitTask). Message is agent@version.
	EventSubmitted EventType = "submitted"
	// EventLeased: a worker claimed the task and an attempt began
	// (ClaimTask). Message names the node and the fencing token.
	EventLeased EventType = "leased"
	// EventLeaseExpired: the running attempt's lease ran out before it
	// finished (ExpireLease); the attempt ends as lease_expired.
	EventLeaseExpired EventType = "lease_expired"
	// EventAttemptFailed: a worker reported a failed attempt (FailAttempt).
	// Message is class: message.
	EventAttemptFailed EventType = "attempt_failed"
	// EventRetryScheduled: a failed or expired attempt will be retried after
	// the backoff the message states; the task is retry_pending.
	EventRetryScheduled EventType = "retry_scheduled"
	// EventDeadLettered: the task moved to the dead-letter queue (a
	// permanent, policy, budget or in-doubt failure, or attempts exhausted).
	EventDeadLettered EventType = "dead_lettered"
	// EventSucceeded: the attempt completed (CompleteTask); output, staged
	// writes and the outbox are applied.
	EventSucceeded EventType = "succeeded"
	// EventDLQRetried: a person requeued the dead letter (RetryDLQ).
	// Message is agent@version, the version it will run.
	EventDLQRetried EventType = "dlq_retried"
	// EventDiscarded: a person discarded the dead letter (DiscardDLQ).
	// Message is their reason.
	EventDiscarded EventType = "discarded"
	// EventCancelled: the task was cancelled before it finished
	// (CancelTask). Message is the reason.
	EventCancelled EventType = "cancelled"
	// EventEffectDispatched: an outbox effect was delivered after the task
	// succeeded (MarkEffectDone). CallID is the effect's idempotency key.
	EventEffectDispatched EventType = "effect_dispatched"
	// EventEffectFailed: an outbox effect failed permanently and will not be
	// tried again (MarkEffectDone with an error). Message is the error.
	EventEffectFailed EventType = "effect_failed"
	// EventCallResolved: a person said whether a call left in doubt was
	// applied (ResolveCall). CallID names it; Message is who, the answer
	// and the note.
	EventCallResolved EventType = "call_resolved"
	// EventIntentCleared: a call whose INTENT was committed failed before
	// anything was sent (ClearIntent), so it is not in doubt.
	EventIntentCleared EventType = "intent_cleared"
	// EventWaiting: an attempt suspended on a durable wait (Suspend): the
	// lease is released, the attempt not counted. CallID names the
	// waiting call; Message says what it waits for.
	EventWaiting EventType = "waiting"
	// EventWoken: the wait ended (WakeTask at its time, or the awaited
	// signal arrived) and the task is queued again. Message says why.
	EventWoken EventType = "woken"
	// EventSignalReceived: a signal the task does not await yet was kept
	// for a later await (SendSignal).
	EventSignalReceived EventType = "signal_received"
	// EventSignalDelivered: a signal became the answer of the call CallID.
	EventSignalDelivered EventType = "signal_delivered"
	// EventApprovalRequested: a call of a tool that needs approval waits
	// for a person (CallID, Tool).
	EventApprovalRequested EventType = "approval_requested"
	// EventApprovalGranted, EventApprovalDenied: a person decided
	// (DecideApproval); Message says who, and why.
	EventApprovalGranted EventType = "approval_granted"
	EventApprovalDenied  EventType = "approval_denied"
)

// Written by the host while an attempt runs, and journaled through
// AppendJournal, RecordResult, CompleteTask or FailAttempt.
const (
	// EventCall: one tool call of the guest, whatever became of it. Detail
	// is the host's CallDetail: outcome, status, duration_us, reason.
	EventCall EventType = "call"
	// EventLog: one line the guest logged (at most a bounded number per
	// attempt). Message is level: line.
	EventLog EventType = "log"
	// EventDivergence: the attempt's calls stopped matching the calls an
	// earlier attempt recorded at the same point (written once per attempt).
	EventDivergence EventType = "divergence"
	// EventCallsRefused: the count of refused calls past the number
	// journaled one by one, written when the attempt ends.
	EventCallsRefused EventType = "calls_refused"
	// EventEffectRefused: the guest emitted an effect past the task's
	// effects budget; the effect was dropped.
	EventEffectRefused EventType = "effect_refused"
)

// EventTypes lists every EventType Orloj writes, FSM-written first, in the
// order a task's journal usually shows them.
func EventTypes() []EventType {
	return []EventType{
		EventSubmitted, EventLeased, EventLeaseExpired, EventAttemptFailed, EventRetryScheduled,
		EventDeadLettered, EventSucceeded, EventDLQRetried, EventDiscarded, EventCancelled,
		EventEffectDispatched, EventEffectFailed, EventCallResolved, EventIntentCleared,
		EventWaiting, EventWoken, EventSignalReceived, EventSignalDelivered,
		EventApprovalRequested, EventApprovalGranted, EventApprovalDenied,
		EventCall, EventLog, EventDivergence, EventCallsRefused, EventEffectRefused,
	}
}
