package host

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/sandbox"
)

// NewErrorID names one failure, so an answer or a task's error that must
// not carry the detail (a stack, file paths) can point at the log line
// that does.
func NewErrorID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// faultError is a host fault's error with the ID of the log line that
// holds its stack.
type faultError struct {
	err error
	id  string
}

func (e *faultError) Error() string {
	return fmt.Sprintf("%v (error id %s; the node's log has the stack)", e.err, e.id)
}

func (e *faultError) Unwrap() error { return e.err }

// logHostFault logs the stack of a host fault that came from a panic, with
// a fresh error ID that the result's error then cites. The error becomes
// the task's error message (replicated, shown by the API and the CLI), so
// the stack and the host's file paths stay in this node's log.
func logHostFault(res sandbox.Result, log hclog.Logger) sandbox.Result {
	if res.Outcome != sandbox.OutcomeHostFault || len(res.HostStack) == 0 || res.Err == nil {
		return res
	}
	id := NewErrorID()
	log.Error("host fault", "error_id", id, "error", res.Err, "stack", string(res.HostStack))
	res.Err = &faultError{err: res.Err, id: id}
	return res
}
