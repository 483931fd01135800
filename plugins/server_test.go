package plugins_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/orloj/orloj/abi"
)

// recorder is a real local HTTP server that counts requests and remembers the
// last one, so tests can check what went over the wire and that a refused call
// never reached it.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	hits int
	last seenRequest
	// release is closed when the test ends; handlers that must hang wait on it
	// instead of sleeping.
	release chan struct{}
}

type seenRequest struct {
	Method string
	Path   string
	Header http.Header
	Body   string
}

func newRecorder(t *testing.T, h http.HandlerFunc) *recorder {
	t.Helper()
	r := &recorder{release: make(chan struct{})}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		req.Body = io.NopCloser(bytes.NewReader(body)) // the handler may read it too
		r.mu.Lock()
		r.hits++
		r.last = seenRequest{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Body: string(body)}
		r.mu.Unlock()
		if h != nil {
			h(w, req)
		}
	}))
	// Cleanups run last-in first-out: release hung handlers, then close.
	t.Cleanup(r.Close)
	t.Cleanup(func() { close(r.release) })
	return r
}

// hang blocks the handler until the test ends or the client goes away.
func (r *recorder) hang(w http.ResponseWriter, req *http.Request) {
	select {
	case <-r.release:
	case <-req.Context().Done():
	}
}

// host is the server's host:port, as an allow-list entry.
func (r *recorder) host() string { return r.Listener.Addr().String() }

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.hits
}

func (r *recorder) seen() seenRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// wantStatus fails unless err carries want and its text contains every part.
func wantStatus(t *testing.T, err error, want abi.Status, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil; want %s", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("err = %v; want status %s", err, want)
	}
	if s, ok := abi.StatusOf(err); !ok || s != want {
		t.Fatalf("abi.StatusOf(%v) = %v, %v; want %s", err, s, ok, want)
	}
	var ae *abi.Error
	if !errors.As(err, &ae) || ae.Status != want {
		t.Fatalf("err = %v; want an *abi.Error with status %s for the guest", err, want)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("err = %q; want it to mention %q", err, p)
		}
	}
}

// decode unmarshals a result body strictly into v.
func decode(t *testing.T, body json.RawMessage, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("result body %s: %v", body, err)
	}
}

func canceled(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}
