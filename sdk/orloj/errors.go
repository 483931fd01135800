package orloj

import (
	"errors"
	"fmt"
	"os"

	"github.com/orloj/orloj/abi"
)

// Error is a host status with the host's message. Every error the SDK returns
// for a non-OK host answer wraps one, or wraps a bare status when the host
// sent no message.
type Error = abi.Error

// Statuses callers branch on with errors.Is. They are constants, not
// variables, so no package can reassign them; each is the abi.Status that the
// host returns, so errors.Is(err, orloj.ErrTransient) and
// errors.Is(err, abi.StatusTransient) agree.
const (
	// ErrNotFound: the tool does not exist.
	ErrNotFound = abi.StatusNotFound
	// ErrPermissionDenied: the agent's manifest does not allow the tool, or
	// a person denied the call (the message says who, and why).
	ErrPermissionDenied = abi.StatusPermissionDenied
	// ErrToolError: the tool ran and failed; the same call fails the same way.
	ErrToolError = abi.StatusToolError
	// ErrTransient: the tool failed in a way a later attempt may not. Return it
	// from run and Main exits with abi.ExitTransient so the task is retried.
	ErrTransient = abi.StatusTransient
	// ErrInDoubt: an earlier attempt may have applied the effect; stop.
	ErrInDoubt = abi.StatusInDoubt
	// ErrBudgetExceeded: a per-task budget (calls, tokens, time) is spent.
	ErrBudgetExceeded = abi.StatusBudgetExceeded
	// ErrInvalidArgument: the request was malformed or over a limit, whether
	// the host said so or the SDK found it before asking.
	ErrInvalidArgument = abi.StatusInvalidArgument
	// ErrFault: a pointer/length pair lay outside guest memory, or the host
	// broke the memory protocol. Either is a bug, never the agent's input.
	ErrFault = abi.StatusFault
	// ErrTimeout: Await's timeout passed before the signal came.
	ErrTimeout = abi.StatusTimeout
)

// ExitCode is the process exit code Main uses for the error run returned:
// abi.ExitOK for nil, abi.ExitTransient when err is (or wraps) ErrTransient,
// 1 otherwise. Tests use it to assert that a failure will be retried rather
// than dead-lettered.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return abi.ExitOK
	case errors.Is(err, ErrTransient):
		return abi.ExitTransient
	default:
		return 1
	}
}

// Main runs the agent and exits the way the host expects: normally when run
// returns nil, otherwise with the error on stderr (which the host keeps in the
// attempt log) and ExitCode(err). Call it from main and nothing after it.
func Main(run func() error) {
	err := run()
	if err == nil {
		return
	}
	code := ExitCode(err)
	fmt.Fprintf(os.Stderr, "agent failed (exit %d): %v\n", code, err)
	os.Exit(code)
}
