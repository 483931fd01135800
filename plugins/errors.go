package plugins

import (
	"errors"
	"fmt"

	"github.com/orloj/orloj/abi"
)

// ErrDuplicateTool is returned by Registry.Register for a name already taken.
var ErrDuplicateTool = errors.New("duplicate tool name")

// ErrNotSent marks a failed call that is known not to have reached the
// service: nothing of the request left the node (no connection was made).
// A tool wraps its error with it (errors.Is finds it) only when that is
// certain; the host then does not hold an unsafe call in doubt.
var ErrNotSent = errors.New("nothing was sent")

// NotSent marks err as known not to have reached the service (ErrNotSent).
func NotSent(err error) error { return notSent{err} }

// callError is an error a tool returns with a cause. It unwraps to an
// *abi.Error, so abi.StatusOf and errors.As(err, **abi.Error) find the status
// and the message the guest will see, and to the cause, so callers can still
// branch on it (errors.Is(err, context.DeadlineExceeded)). abi.Error alone
// carries only text, which would cut the %w chain.
type callError struct {
	status *abi.Error
	cause  error
}

func (e *callError) Error() string   { return e.status.Error() }
func (e *callError) Unwrap() []error { return []error{e.status, e.cause} }

// statusErrorf returns an error carrying s whose message is the formatted text
// followed by the cause's, and which wraps cause (which may be nil).
func statusErrorf(s abi.Status, cause error, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cause == nil {
		return abi.Errorf(s, "%s", msg)
	}
	return &callError{status: abi.Errorf(s, "%s: %v", msg, cause), cause: cause}
}

// annotate puts context in front of err's message, keeping the status err
// carries, or, when it carries none, marking it transient: a backend that
// fails without saying why (a lost leader, a closed store) may well succeed on
// the next attempt, and the host would treat it as transient anyway; saying so
// here keeps the tool's contract explicit. The context goes into the
// *abi.Error, not around it, so the message the guest sees has it too.
func annotate(err error, format string, args ...any) error {
	prefix := fmt.Sprintf(format, args...)
	var ae *abi.Error
	if errors.As(err, &ae) {
		msg := prefix
		if ae.Message != "" {
			msg += ": " + ae.Message
		}
		return &callError{status: abi.Errorf(ae.Status, "%s", msg), cause: err}
	}
	if s, ok := abi.StatusOf(err); ok && s != abi.StatusOK {
		return &callError{status: abi.Errorf(s, "%s", prefix), cause: err}
	}
	return statusErrorf(abi.StatusTransient, err, "%s", prefix)
}
