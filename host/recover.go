package host

import (
	"fmt"
	"runtime/debug"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
)

// PanicError is a panic recovered in host code (a tool the outbox called, a
// pass of a background loop), turned into an error so the loop goes on.
// The stack is in the node's log at Debug under ID, never in the error:
// the error may reach the journal and the API.
type PanicError struct {
	In    string // what was running: "tool kv", "outbox pass"
	Value string // the panic value, printed
	ID    string // names the log lines of this panic
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("panic in %s: %s (error id %s)", e.In, e.Value, e.ID)
}

// CatchPanic runs fn and turns a panic into a *PanicError, logged at Error
// with its value and at Debug with its stack, both under one error ID.
func CatchPanic(log hclog.Logger, in string, fn func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		pe := &PanicError{In: in, Value: clipUTF8(fmt.Sprint(r), 1024), ID: NewErrorID()}
		log.Error("recovered from a panic; carrying on", "in", in, "panic", pe.Value, "error_id", pe.ID)
		log.Debug("stack of the recovered panic", "error_id", pe.ID, "stack", string(debug.Stack()))
		err = pe
	}()
	return fn()
}

// clipUTF8 makes s valid UTF-8 and cuts it to at most n bytes without
// splitting a character: it goes into logs, the journal and API answers.
func clipUTF8(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
