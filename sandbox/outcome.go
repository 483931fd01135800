package sandbox

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/sys"

	"github.com/orloj/orloj/abi"
)

// Outcome says how an attempt ended. The host maps it onto the task's
// lifecycle: success completes, guest errors and traps are failures of the
// agent, deadline and memory limit are failures of budget, host faults and
// cancellations are the host's own problem.
type Outcome int

const (
	// OutcomeSuccess: _start returned, or the guest called proc_exit(0).
	OutcomeSuccess Outcome = iota
	// OutcomeGuestError: the guest called proc_exit with a non-zero code,
	// in Result.ExitCode. abi.ExitTransient (75) asks for a retry.
	OutcomeGuestError
	// OutcomeTrap: the guest hit a WebAssembly trap (unreachable, an
	// out-of-bounds access, division by zero, stack overflow, ...).
	// Result.Err carries the wasm stack trace when wazero has one.
	OutcomeTrap
	// OutcomeDeadline: RunConfig.Timeout (or the caller's context deadline)
	// passed; the guest was interrupted wherever it was.
	OutcomeDeadline
	// OutcomeMemoryLimit: the guest needed more memory than
	// RunConfig.MemoryLimit and failed because of it.
	OutcomeMemoryLimit
	// OutcomeInvalidModule: the module cannot run (nil, or refused at
	// instantiation).
	OutcomeInvalidModule
	// OutcomeHostFault: the host failed, not the guest: the Dispatcher
	// returned an error without an abi.Status, or host code panicked. The
	// instance was closed at once.
	OutcomeHostFault
	// OutcomeCanceled: the caller's context was canceled (e.g. the lease was
	// lost) or the Runtime closed; the guest was interrupted.
	OutcomeCanceled
	// OutcomeSuspended: the guest reached a wait the WaitDispatcher could
	// not answer yet (it returned ErrSuspend); the guest was stopped there.
	// Not a failure: the host runs the task again when the wait is over.
	OutcomeSuspended
)

var outcomeNames = [...]string{
	OutcomeSuccess:       "success",
	OutcomeGuestError:    "guest_error",
	OutcomeTrap:          "trap",
	OutcomeDeadline:      "deadline",
	OutcomeMemoryLimit:   "memory_limit",
	OutcomeInvalidModule: "invalid_module",
	OutcomeHostFault:     "host_fault",
	OutcomeCanceled:      "canceled",
	OutcomeSuspended:     "suspended",
}

// String returns the snake_case name used in logs, metrics and the journal.
func (o Outcome) String() string {
	if o >= 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// Result is what Run reports about one attempt.
type Result struct {
	Outcome Outcome
	// ExitCode is the guest's proc_exit code for OutcomeGuestError (and
	// for OutcomeMemoryLimit when the guest's runtime exited rather than
	// trapped).
	ExitCode uint32
	// Err is nil only on success. Its first line explains itself; later
	// lines may carry a wasm stack trace.
	Err error
	// Stdout and Stderr are the captured streams, each bounded by
	// RunConfig.OutputCap; a dropped middle is marked in place.
	Stdout, Stderr []byte
	// Duration is the wall time from instantiation to exit.
	Duration time.Duration
	// PeakMemory is the largest size the guest's linear memory reached,
	// in bytes (0 if it never started).
	PeakMemory uint64
	// HostStack is set with OutcomeHostFault when host code panicked: the
	// Go stack, for the node's log. Err never carries it, since Err
	// becomes the task's error, which the API shows.
	HostStack []byte
}

// runState is what classify needs to know about a finished attempt.
type runState struct {
	err      error           // from InstantiateModule (which runs _start)
	runCtx   context.Context // the attempt's context, deadline included
	fault    *hostFault      // set when a host function gave up
	memory   *memoryStats    // what the allocator saw
	limit    uint64          // RunConfig.MemoryLimit after defaults
	timeout  time.Duration
	duration time.Duration
}

// classify turns how _start ended into an Outcome. Order matters: a context
// that ended explains whatever failure followed it; a refused memory.grow
// explains the abort that follows it (the Go runtime exits with code 2, other
// guests trap); only then is a failure the guest's own.
func classify(s runState) Result {
	res := Result{Duration: s.duration}
	ctxErr := s.runCtx.Err()

	if s.fault != nil && errors.Is(s.fault.err, ErrSuspend) {
		res.Outcome = OutcomeSuspended
		res.Err = s.fault.err
		return res
	}
	if s.fault != nil {
		if ctxErr != nil && (errors.Is(s.fault.err, context.DeadlineExceeded) || errors.Is(s.fault.err, context.Canceled)) {
			return ctxResult(res, ctxErr, s)
		}
		res.Outcome = OutcomeHostFault
		res.Err = s.fault
		res.HostStack = s.fault.stack
		return res
	}
	if s.err == nil {
		return res // _start returned
	}

	var exit *sys.ExitError
	if errors.As(s.err, &exit) {
		code := exit.ExitCode()
		switch {
		case code == 0:
			return res
		// wazero closes the module with these codes when the context ends.
		// A guest can pass them to proc_exit too, so believe them only
		// when the context really did end.
		case code == sys.ExitCodeDeadlineExceeded && ctxErr != nil,
			code == sys.ExitCodeContextCanceled && ctxErr != nil:
			return ctxResult(res, ctxErr, s)
		case s.memory.refused():
			res.Outcome = OutcomeMemoryLimit
			res.ExitCode = code
			res.Err = memoryLimitError(s, fmt.Sprintf("the guest exited with code %d", code))
			return res
		}
		res.Outcome = OutcomeGuestError
		res.ExitCode = code
		res.Err = &GuestExitError{Code: code}
		return res
	}

	if ctxErr != nil {
		// Interrupted before _start ran (e.g. the context ended during
		// instantiation).
		return ctxResult(res, ctxErr, s)
	}
	if s.memory.refused() {
		res.Outcome = OutcomeMemoryLimit
		res.Err = memoryLimitError(s, "the guest trapped: "+firstLine(unwrapStart(s.err).Error()))
		return res
	}
	// wazero recovers panics of host code as runtime.Error (a nil pointer, an
	// index out of range); guest traps are wasm errors. Never blame the
	// guest for our bug.
	var hf *hostFault
	if errors.As(s.err, &hf) {
		res.Outcome = OutcomeHostFault
		res.Err = hf
		res.HostStack = hf.stack
		return res
	}
	var rtErr runtime.Error
	if errors.As(s.err, &rtErr) {
		// wazero appends the wasm and Go stacks to the panic's text.
		res.Outcome = OutcomeHostFault
		res.Err = &hostPanicError{err: s.err}
		if _, stack, ok := strings.Cut(s.err.Error(), "\n"); ok {
			res.HostStack = []byte(stack)
		}
		return res
	}
	res.Outcome = OutcomeTrap
	res.Err = &TrapError{err: unwrapStart(s.err)}
	return res
}

// hostPanicError is a panic of host code that wazero recovered: its
// message is the panic's first line; the stacks wazero added after it are in
// Result.HostStack.
type hostPanicError struct{ err error }

func (e *hostPanicError) Error() string {
	return "sandbox: host panic while running the guest: " + firstLine(e.err.Error())
}

func (e *hostPanicError) Unwrap() error { return e.err }

// unwrapStart drops wazero's "module[] function[_start] failed: " wrapper,
// which says nothing the caller does not know, so the first line of the
// error names the trap.
func unwrapStart(err error) error {
	if inner := errors.Unwrap(err); inner != nil && strings.HasPrefix(err.Error(), "module[") {
		return inner
	}
	return err
}

func ctxResult(res Result, ctxErr error, s runState) Result {
	if errors.Is(ctxErr, context.DeadlineExceeded) {
		res.Outcome = OutcomeDeadline
		res.Err = fmt.Errorf("sandbox: deadline exceeded: the attempt ran %v (timeout %v) and was interrupted: %w",
			s.duration.Round(time.Millisecond), s.timeout, ctxErr)
		return res
	}
	res.Outcome = OutcomeCanceled
	cause := context.Cause(s.runCtx)
	res.Err = fmt.Errorf("sandbox: attempt canceled after %v and interrupted: %w", s.duration.Round(time.Millisecond), cause)
	return res
}

func memoryLimitError(s runState, how string) error {
	return fmt.Errorf("sandbox: memory limit reached: the guest asked for %s of linear memory, limit %s; %s: %w",
		formatBytes(s.memory.refusedBytes), formatBytes(s.limit), how, ErrMemoryLimit)
}

// GuestExitError reports a non-zero proc_exit code.
type GuestExitError struct{ Code uint32 }

func (e *GuestExitError) Error() string {
	if e.Code == abi.ExitTransient {
		return fmt.Sprintf("sandbox: guest exited with code %d (transient: it asks to be retried)", e.Code)
	}
	return fmt.Sprintf("sandbox: guest exited with code %d", e.Code)
}

// TrapError reports a WebAssembly trap; Error's first line names the trap,
// the following lines are wazero's wasm stack trace.
type TrapError struct{ err error }

func (e *TrapError) Error() string { return "sandbox: guest trapped: " + e.err.Error() }
func (e *TrapError) Unwrap() error { return e.err }

func firstLine(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			return s[:i]
		}
	}
	return s
}

func formatBytes(n uint64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
