//go:build !wasip1

package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/orloj/orloj/abi"
)

// Fake is an in-process host for native builds: Invoke runs a Tool's
// Invoke as the host would (params in, answer out), and HTTP requests the
// plugin sends go to the handler, with secrets filled in from SetSecret, so
// plugin logic is tested with plain go test.
type Fake struct {
	mu      sync.Mutex
	handler func(Request) (*Response, error)
	secrets map[string]string
	sent    []Request // as the service saw them (secrets filled in)
}

// NewFake returns a fake host that refuses every HTTP request until
// HandleHTTP.
func NewFake() *Fake { return &Fake{secrets: map[string]string{}} }

// HandleHTTP serves the plugin's HTTP requests.
func (f *Fake) HandleHTTP(h func(Request) (*Response, error)) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handler = h
	return f
}

// SetSecret gives the node a secret.
func (f *Fake) SetSecret(name, value string) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.secrets[name] = value
	return f
}

// Sent returns the HTTP requests the plugin sent, as the service saw them.
func (f *Fake) Sent() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.sent...)
}

var (
	installMu sync.Mutex
	installed *Fake
)

// Invoke runs t for one call with params and returns its answer: the
// result JSON, or the error the host would record.
func (f *Fake) Invoke(t Tool, callID string, params any) (json.RawMessage, error) {
	installMu.Lock()
	installed = f
	installMu.Unlock()
	defer func() {
		installMu.Lock()
		installed = nil
		installMu.Unlock()
	}()
	p, err := json.Marshal(params)
	if raw, ok := params.(json.RawMessage); ok {
		p, err = raw, nil
	}
	if err != nil {
		return nil, err
	}
	ans := invoke(t, &Call{ID: callID, TaskID: "fake-task", Attempt: 1, Params: p})
	if ans.Error != nil {
		st, _ := abi.ParseStatus(ans.Error.Status)
		return nil, &abi.Error{Status: st, Message: ans.Error.Message}
	}
	return ans.Result, nil
}

func host() (rawHost, error) {
	installMu.Lock()
	defer installMu.Unlock()
	if installed == nil {
		return nil, errors.New("plugin: no host: run the tool through Fake.Invoke in tests")
	}
	return fakeHost{installed}, nil
}

type fakeHost struct{ f *Fake }

func (h fakeHost) input(buf []byte) (abi.Status, uint32)    { return abi.StatusNotFound, 0 }
func (h fakeHost) response(buf []byte) (abi.Status, uint32) { return abi.StatusNotFound, 0 }
func (h fakeHost) output(b []byte) abi.Status               { return abi.StatusOK }
func (h fakeHost) log(abi.LogLevel, []byte) abi.Status      { return abi.StatusOK }

func (h fakeHost) call(req, buf []byte) (abi.Status, uint32) {
	reply := func(st abi.Status, body []byte) (abi.Status, uint32) {
		if len(body) > len(buf) {
			return abi.StatusFault, 0 // the fake keeps nothing for response: buffers are large enough for tests
		}
		return st, uint32(copy(buf, body))
	}
	fail := func(st abi.Status, format string, args ...any) (abi.Status, uint32) {
		return reply(st, abi.EncodeErrorBody(st, fmt.Sprintf(format, args...)))
	}
	cr, err := abi.DecodeCallRequest(req)
	if err != nil || cr.Tool != abi.ToolCapHTTP {
		return fail(abi.StatusPermissionDenied, "a plugin may call only %q", abi.ToolCapHTTP)
	}
	var r struct {
		Method  string                     `json:"method"`
		URL     string                     `json:"url"`
		Headers map[string]json.RawMessage `json:"headers"`
		Body    string                     `json:"body"`
	}
	if err := json.Unmarshal(cr.Params, &r); err != nil {
		return fail(abi.StatusInvalidArgument, "http params: %v", err)
	}
	sent := Request{Method: r.Method, URL: r.URL, Body: r.Body, Headers: map[string]any{}}
	h.f.mu.Lock()
	for k, v := range r.Headers {
		var s string
		if json.Unmarshal(v, &s) == nil {
			sent.Headers[k] = s
			continue
		}
		var ref abi.ToolSecretRef
		if json.Unmarshal(v, &ref) != nil || ref.Secret == "" {
			h.f.mu.Unlock()
			return fail(abi.StatusInvalidArgument, "header %s: want a string or a secret reference", k)
		}
		val, ok := h.f.secrets[ref.Secret]
		if !ok {
			h.f.mu.Unlock()
			return fail(abi.StatusTransient, "no secret %q on this node", ref.Secret)
		}
		format := ref.Format
		if format == "" {
			format = "%s"
		}
		sent.Headers[k] = fmt.Sprintf(format, val)
	}
	h.f.sent = append(h.f.sent, sent)
	handler := h.f.handler
	h.f.mu.Unlock()
	if handler == nil {
		return fail(abi.StatusPermissionDenied, "the fake allows no host (HandleHTTP)")
	}
	resp, err := handler(sent)
	if err != nil {
		st, ok := abi.StatusOf(err)
		if !ok {
			st = abi.StatusTransient
		}
		return fail(st, "%v", err)
	}
	b, _ := json.Marshal(resp)
	return reply(abi.StatusOK, b)
}
