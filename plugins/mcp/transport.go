package mcp

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/plugins"
)

// sendStateKey carries a call's *sendState in its context, down to the
// HTTP requests the SDK makes for it.
type sendStateKey struct{}

// sendState is what the HTTP transport learns about one tools/call: its
// idempotency key, and whether a request for it was ever written whole.
type sendState struct {
	key     string
	unsafe  bool        // the tool's calls must not be repeated
	posted  atomic.Bool // a request for the call was handed to the transport
	written atomic.Bool // ... and written whole to a connection
	// unknownSession: the server answered 404 to a request naming a
	// session, which the streamable HTTP transport defines as "session
	// not found": it processed nothing (a server that restarted).
	unknownSession atomic.Bool
}

// notSent reports that a request was tried and never written whole, so no
// server can have read the call: a JSON-RPC request cut short is not a
// request. (A reused keep-alive connection the server had closed counts
// as not written, which "had no connection" would miss.) For stdio, with
// no request at all, it is false: what a pipe took may have been read.
func (s *sendState) notSent() bool {
	return s.posted.Load() && (!s.written.Load() || s.unknownSession.Load())
}

// keyTransport puts the server's fixed headers on every request, and the
// call's Idempotency-Key on each request made for a tools/call, and records
// whether the request was written.
type keyTransport struct {
	base    http.RoundTripper
	headers http.Header
}

// maxJSONBody bounds a response body of type application/json: the SDK
// reads one whole into memory (an event stream it bounds per event).
const maxJSONBody = 16 << 20

// ErrResponseTooLarge is a server's JSON response over maxJSONBody.
var ErrResponseTooLarge = errors.New("mcp server's response is larger than 16 MiB")

func (t keyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	if err == nil && strings.HasPrefix(strings.ToLower(resp.Header.Get("Content-Type")), "application/json") {
		resp.Body = &cappedBody{ReadCloser: resp.Body, left: maxJSONBody}
	}
	return resp, err
}

// cappedBody fails a read past its limit, so a server cannot make the node
// hold an unbounded answer.
type cappedBody struct {
	io.ReadCloser
	left int64
}

func (b *cappedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// At the limit: fine only if the body ends here.
		var one [1]byte
		m, err := io.ReadFull(b.ReadCloser, one[:])
		if m > 0 {
			return 0, ErrResponseTooLarge
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.ReadCloser.Read(p)
	b.left -= int64(n)
	return n, err
}

func (t keyTransport) roundTrip(req *http.Request) (*http.Response, error) {
	if len(t.headers) > 0 {
		req = req.Clone(req.Context())
		for k, v := range t.headers {
			req.Header[k] = v
		}
	}
	st, ok := req.Context().Value(sendStateKey{}).(*sendState)
	if !ok {
		return t.base.RoundTrip(req)
	}
	st.posted.Store(true)
	trace := &httptrace.ClientTrace{WroteRequest: func(i httptrace.WroteRequestInfo) {
		if i.Err == nil {
			st.written.Store(true)
		}
	}}
	r := req.Clone(httptrace.WithClientTrace(req.Context(), trace))
	// Set, not added: the key must be the call ID. An unsafe call is not
	// re-sent by net/http on its own: the failure comes back here, and the
	// host decides.
	plugins.SetIdempotencyKey(r, st.key, !st.unsafe)
	plugins.SetTraceContext(r)
	resp, err := t.base.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusNotFound && r.Header.Get("Mcp-Session-Id") != "" {
		st.unknownSession.Store(true)
	}
	return resp, err
}

func (s *Server) httpClient() *http.Client {
	var c http.Client
	if s.opts.HTTPClient != nil {
		c = *s.opts.HTTPClient
	}
	base := c.Transport
	if base == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConnsPerHost = 64 // a node's workers call one server at once
		base = tr
	}
	c.Transport = keyTransport{base: base, headers: s.opts.Headers}
	return &c
}

// maxLineBytes bounds one stderr line of a stdio server in the node's log.
const maxLineBytes = 1024

// lineLogger writes a stdio server's stderr to the node's log, a line at a
// time, each clipped: a server must not flood the log with one endless
// line.
type lineLogger struct {
	log     hclog.Logger
	mu      sync.Mutex
	buf     []byte
	discard bool // the current line is past maxLineBytes
}

func (l *lineLogger) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !l.discard {
			room := maxLineBytes - len(l.buf)
			if len(chunk) > room {
				l.buf = append(l.buf, chunk[:room]...)
				l.discard = true
			} else {
				l.buf = append(l.buf, chunk...)
			}
		}
		if i < 0 {
			break
		}
		l.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (l *lineLogger) flush() {
	line := strings.ToValidUTF8(string(l.buf), "\uFFFD")
	if l.discard {
		line += "…"
	}
	l.buf, l.discard = l.buf[:0], false
	if line != "" {
		l.log.Info("mcp server stderr", "line", line)
	}
}
