package sandbox

import (
	"context"
	"time"

	"github.com/orloj/orloj/abi"
)

// Dispatcher serves one attempt's orloj_v1 calls. The sandbox has already
// checked every pointer and limit and decoded every request; the Dispatcher
// decides what the call means (ledger lookup, tool invocation, recording).
//
// Errors: an error that carries an abi.Status (abi.StatusOf(err) reports
// ok) is returned to the guest as that status; for Input and Call with an
// abi.ErrorBody body whose message is the *abi.Error's Message, or the
// error's text. An error without a status is a host fault: the instance is
// closed at once and Run returns OutcomeHostFault with that error. StatusOK,
// StatusBufferTooSmall, StatusFault and unknown statuses belong to the
// sandbox's memory protocol, so a Dispatcher returning one is a host fault
// too. A panic in a Dispatcher method is a host fault.
//
// The methods are called on the guest's goroutine, one at a time per
// attempt; ctx is the attempt's context and ends with its deadline, so a
// blocking method should return when ctx is done. Byte slices passed in are
// the Dispatcher's to keep; slices returned are not modified by the sandbox.
type Dispatcher interface {
	// Input returns the task input. It may be called more than once.
	// At most abi.MaxResponseBytes, else the guest gets
	// StatusInvalidArgument.
	Input(ctx context.Context) ([]byte, error)
	// Call invokes a tool. req was validated by abi.DecodeCallRequest (its
	// Params are canonical). A result larger than abi.MaxResponseBytes
	// reaches the guest as StatusToolError.
	Call(ctx context.Context, req abi.CallRequest) ([]byte, error)
	// Output sets the task output (at most abi.MaxOutputBytes), replacing
	// an earlier one.
	Output(ctx context.Context, output []byte) error
	// Log records one line, at most abi.MaxLogBytes.
	Log(ctx context.Context, level abi.LogLevel, line []byte) error
	// Now returns the time the guest should see, recorded so a replay
	// sees the same.
	Now(ctx context.Context) (time.Time, error)
	// Emit stages an outbox effect, validated like a call request.
	Emit(ctx context.Context, effect abi.Effect) error
}

// BatchDispatcher is a Dispatcher that serves call_batch itself, so it can
// run the calls at once. Without it the sandbox makes the calls one at a
// time through Call, in order, which gives the same results.
type BatchDispatcher interface {
	Dispatcher
	// CallBatch invokes every request (each validated as for Call) and
	// returns one CallResult per request, in order. Each Err follows
	// Call's rules: a status for the guest, or none for a host fault,
	// which ends the attempt.
	CallBatch(ctx context.Context, reqs []abi.CallRequest) []CallResult
}

// WaitDispatcher is a Dispatcher that serves durable waits (abi.FuncWait).
// Without it the guest's waits answer StatusNotFound.
type WaitDispatcher interface {
	Dispatcher
	// Wait answers a wait that abi.DecodeWaitRequest accepted; canonical
	// is the request's canonical form, for its identity. It returns the
	// answer's body (StatusOK), an error with a status (StatusTimeout,
	// with the wait's message), or, when the wait cannot be answered now,
	// an error wrapping ErrSuspend: the instance is closed at once and Run
	// returns OutcomeSuspended. Any other error without a status is a host
	// fault, as for Call.
	Wait(ctx context.Context, req abi.WaitRequest, canonical []byte) ([]byte, error)
}

// CallResult is what one call of a batch returned.
type CallResult struct {
	Body []byte
	Err  error
}
