package plugins

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/orloj/orloj/abi"
)

// This file holds what the http and model tools share about talking HTTP:
// how a failure is classified, and how much of a response is read.

// excerptBytes is how much of an error response goes into the error message:
// enough to show an API's error text, not enough to flood the journal.
const excerptBytes = 256

// maxIdlePerHost is how many idle connections a tool keeps to one host.
// net/http's default is 2: with a node's workers calling one API at once,
// every call beyond the second closed its connection and the next dialled
// again, and dialling was 8 % of a node's CPU under load.
const maxIdlePerHost = 64

// newTransport is the transport a tool gets when its config brings no
// client: net/http's default, keeping enough idle connections per host for
// every worker of a node.
func newTransport() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxIdlePerHost
	tr.MaxIdleConns = max(tr.MaxIdleConns, 4*maxIdlePerHost)
	return tr
}

// errResponseTooLarge is returned by readCapped.
var errResponseTooLarge = errors.New("response too large")

// transportError classifies an error from http.Client.Do or from reading a
// response body. parent is the context the host gave the call, and timeout
// the tool's own deadline, which distinguish "the host gave up" from "the
// server was too slow". Both are transient: neither says anything about the
// call itself. A status the error already carries wins, so a redirect refused
// by the allow-list stays permission_denied.
func transportError(parent context.Context, timeout time.Duration, what string, err error) error {
	if ns := (notSent{}); errors.As(err, &ns) {
		return notSent{transportError(parent, timeout, what, ns.error)}
	}
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		err = ue.Err // url.Error repeats the method and URL, which what already names
	}
	if s, ok := abi.StatusOf(err); ok && s != abi.StatusOK {
		return annotate(err, "%s", what)
	}
	if parent.Err() != nil {
		return statusErrorf(abi.StatusTransient, context.Cause(parent), "%s: call abandoned", what)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return statusErrorf(abi.StatusTransient, err, "%s: timed out after %s", what, timeout)
	}
	return statusErrorf(abi.StatusTransient, err, "%s", what)
}

// responseError turns an HTTP error status into an error. 5xx, 429 (rate
// limited) and 408 (request timeout) say "not now" and are transient; every
// other 4xx says the request itself is wrong, so asking again gives the same
// answer: a tool error, recorded. detail is an excerpt of the body or an API's
// own error message.
func responseError(resp *http.Response, what, detail string) error {
	code := resp.StatusCode
	msg := fmt.Sprintf("%s: status %s", what, resp.Status)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		msg += fmt.Sprintf(" (retry after %s)", excerpt([]byte(ra)))
	}
	if detail != "" {
		msg += ": " + detail
	}
	if code >= 500 || code == http.StatusTooManyRequests || code == http.StatusRequestTimeout {
		return abi.Errorf(abi.StatusTransient, "%s", msg)
	}
	return abi.Errorf(abi.StatusToolError, "%s", msg)
}

// do sends req with client, with the call's trace context, and, when it fails without ever having had a
// connection (a refused or unreachable dial, a name that does not
// resolve), wraps the error with ErrNotSent: not a byte of the request can
// have reached the service.
func do(client *http.Client, req *http.Request) (*http.Response, error) {
	SetTraceContext(req)
	var connected atomic.Bool
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { connected.Store(true) }}
	resp, err := client.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
	if err != nil && !connected.Load() && req.Context().Err() == nil {
		return nil, notSent{err}
	}
	return resp, err
}

// SetIdempotencyKey puts key on req as its Idempotency-Key, replacing any
// the caller set. For a call that is not safe to repeat it also keeps
// net/http from re-sending req on its own: net/http re-sends a request
// when a reused connection dies before the answer if it judges the request
// replayable, and it judges any request carrying the canonical
// "Idempotency-Key" header so, whatever its method. That is exactly the
// case the ledger holds in doubt, so the header goes under its lower-case
// name (header names are case-insensitive on the wire) and the body cannot
// be rewound. Every tool that speaks HTTP sets its key here.
func SetIdempotencyKey(req *http.Request, key string, repeatable bool) {
	req.Header.Set("Idempotency-Key", key)
	if repeatable {
		return
	}
	delete(req.Header, "Idempotency-Key")
	req.Header["idempotency-key"] = []string{key}
	req.GetBody = nil
}

// traceHeaders are the W3C trace context headers: the node's to set, from
// the host's span of the call, never the guest's (or a definition's).
var traceHeaders = map[string]bool{"Traceparent": true, "Tracestate": true}

// refuseTraceHeader refuses a header a guest may not send because the node
// sets it. Refused rather than silently replaced: the same params get the
// same answer on every node, traced or not.
func refuseTraceHeader(tool, name string) error {
	if !traceHeaders[http.CanonicalHeaderKey(name)] {
		return nil
	}
	return abi.Errorf(abi.StatusPermissionDenied, "tool %s: header %s carries the node's trace context; the agent may not send it", tool, http.CanonicalHeaderKey(name))
}

// SetTraceContext puts the W3C trace context of the span in req's context
// (the host's span of the call) on req as traceparent and tracestate,
// replacing any already there; with no span in the context (tracing off)
// it sends none. Every tool that speaks HTTP sets it here, after the
// headers of the guest and of a definition.
func SetTraceContext(req *http.Request) {
	delete(req.Header, "Traceparent")
	delete(req.Header, "Tracestate")
	propagation.TraceContext{}.Inject(req.Context(), propagation.HeaderCarrier(req.Header))
}

// notSent is an error that also matches ErrNotSent.
type notSent struct{ error }

func (e notSent) Unwrap() []error { return []error{e.error, ErrNotSent} }

// excerpt quotes at most excerptBytes of b, so a hostile server cannot put
// control characters, invalid UTF-8 or megabytes into messages and logs.
func excerpt(b []byte) string {
	cut := len(b) > excerptBytes
	if cut {
		b = b[:excerptBytes]
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	if s == "" {
		return ""
	}
	q := fmt.Sprintf("%q", s)
	if cut {
		q += "..."
	}
	return q
}

// readCapped reads all of body, or fails with errResponseTooLarge once it
// passes limit bytes, without reading further: a tool must not buffer what
// the host could never return.
func readCapped(body io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, errResponseTooLarge
	}
	return b, nil
}
