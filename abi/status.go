package abi

import (
	"errors"
	"fmt"
)

// Status is the i32 every host function returns. Zero is success. Status
// implements error so callers can branch with errors.Is(err, abi.StatusTransient).
type Status int32

// Status codes. Values are part of the ABI and never change.
const (
	StatusOK Status = iota
	// StatusNotFound: the named thing does not exist (unknown tool, no
	// pending response).
	StatusNotFound
	// StatusPermissionDenied: the agent's manifest does not allow the tool.
	StatusPermissionDenied
	// StatusToolError: the tool ran and failed permanently; retrying the same
	// call gives the same answer.
	StatusToolError
	// StatusTransient: the tool failed in a way a later attempt may not
	// (timeout, 5xx). Not recorded; the next attempt re-invokes.
	StatusTransient
	// StatusInDoubt: an earlier attempt may have applied the effect and the
	// tool cannot tell; the attempt must stop and a person must decide.
	StatusInDoubt
	// StatusBudgetExceeded: a per-task budget (calls, tokens, time) is spent.
	StatusBudgetExceeded
	// StatusBufferTooSmall: the response did not fit; *len_ptr holds its
	// length and FuncResponse fetches it without repeating the call.
	StatusBufferTooSmall
	// StatusInvalidArgument: the request is malformed or over a limit.
	StatusInvalidArgument
	// StatusFault: a pointer/length pair lies outside guest memory.
	StatusFault
	// StatusTimeout: a wait ended at its timeout without what it waited
	// for (FuncWait, kind signal). Recorded: a replay times out again.
	StatusTimeout
)

var statusNames = [...]string{
	StatusOK:               "ok",
	StatusNotFound:         "not_found",
	StatusPermissionDenied: "permission_denied",
	StatusToolError:        "tool_error",
	StatusTransient:        "transient",
	StatusInDoubt:          "in_doubt",
	StatusBudgetExceeded:   "budget_exceeded",
	StatusBufferTooSmall:   "buffer_too_small",
	StatusInvalidArgument:  "invalid_argument",
	StatusFault:            "fault",
	StatusTimeout:          "timeout",
}

// String returns the snake_case name used in ErrorBody and logs.
func (s Status) String() string {
	if s >= 0 && int(s) < len(statusNames) {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", int32(s))
}

// Error makes a Status usable as a sentinel error.
func (s Status) Error() string { return s.String() }

// ParseStatus is the inverse of String.
func ParseStatus(name string) (Status, bool) {
	for i, n := range statusNames {
		if n == name {
			return Status(i), true
		}
	}
	return 0, false
}

// Error is a status with a message, as carried by ErrorBody. It unwraps to its
// Status so errors.Is(err, abi.StatusToolError) works.
type Error struct {
	Status  Status
	Message string
}

// Errorf returns an *Error with a formatted message.
func Errorf(s Status, format string, args ...any) *Error {
	return &Error{Status: s, Message: fmt.Sprintf(format, args...)}
}

func (e *Error) Error() string {
	if e.Message == "" {
		return e.Status.String()
	}
	return e.Status.String() + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Status }

// StatusOf returns the Status carried by err, StatusOK for nil, and false when
// err carries none (the host treats such an error as its own fault).
func StatusOf(err error) (Status, bool) {
	if err == nil {
		return StatusOK, true
	}
	var s Status
	if errors.As(err, &s) {
		return s, true
	}
	return 0, false
}
