// Package plugin is the Go plugin development kit for Orloj tool plugins:
// WebAssembly modules that serve one tool for the host, against the
// orloj_tool_v1 ABI (docs/plugins.md). A plugin describes itself (name,
// params schema, semantics) and answers invocations; its only route out is
// what the host grants it: HTTP to the hosts its definition allows, with
// the call's Idempotency-Key, and with secrets the host fills into headers
// without the plugin seeing them.
//
//	func main() {
//		plugin.Main(plugin.Tool{
//			Name: "slack", Semantics: plugin.Idempotent,
//			Schema: json.RawMessage(`{"type":"object","properties":{"channel":{"type":"string"},"text":{"type":"string"}}}`),
//			Invoke: post,
//		})
//	}
//
// Built with GOOS=wasip1 GOARCH=wasm it talks to the host; built natively,
// to a Fake, so plugin logic is tested with plain go test.
package plugin

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"github.com/orloj/orloj/abi"
	guestexchange "github.com/orloj/orloj/sdk/internal/exchange"
	"github.com/orloj/orloj/sdk/internal/jsonwarm"
)

// Semantics say what repeating a call does to the world.
const (
	ReadOnly   = "read_only"  // nothing
	Idempotent = "idempotent" // nothing more, given the same idempotency key
	Unsafe     = "unsafe"     // it may happen again: an unanswered call is held in doubt
)

// Errors a plugin returns to classify a failure (errors.Is works on them,
// and Errorf wraps them with a message).
const (
	ErrToolError       = abi.StatusToolError       // the call failed; the same call fails the same way
	ErrTransient       = abi.StatusTransient       // try again later
	ErrInvalidArgument = abi.StatusInvalidArgument // the params are wrong
	ErrNotFound        = abi.StatusNotFound
	ErrPermission      = abi.StatusPermissionDenied
)

// Errorf returns an error of status st with a message.
func Errorf(st abi.Status, format string, args ...any) error { return abi.Errorf(st, format, args...) }

// Tool is the one tool a plugin serves.
type Tool struct {
	Name        string
	Description string
	Schema      json.RawMessage // JSON Schema of the params
	Semantics   string          // ReadOnly, Idempotent or Unsafe
	// Invoke answers one call: a result marshalled as JSON, or an error
	// (an abi status via Errorf; any other error is a tool_error).
	Invoke func(c *Call) (any, error)
}

// Call is one invocation.
type Call struct {
	ID      string // the call's idempotency key: the same across retries
	TaskID  string
	Attempt int
	Params  json.RawMessage
}

// Decode unmarshals the params into v; a mismatch is invalid_argument.
func (c *Call) Decode(v any) error {
	if err := json.Unmarshal(c.Params, v); err != nil {
		return Errorf(ErrInvalidArgument, "params: %v", err)
	}
	return nil
}

// Main serves t: it reads the request, describes the tool or invokes it,
// and answers the host. It never returns.
func Main(t Tool) {
	os.Exit(serve(t))
}

var answerable = map[abi.Status]bool{abi.StatusToolError: true, abi.StatusTransient: true, abi.StatusInvalidArgument: true,
	abi.StatusNotFound: true, abi.StatusPermissionDenied: true}

func serve(t Tool) int {
	h, err := host()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	in, err := input(h)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin: read request:", err)
		return abi.ExitTransient
	}
	var req abi.ToolRequest
	if err := json.Unmarshal(in, &req); err != nil {
		fmt.Fprintln(os.Stderr, "plugin: request is not a tool request:", err)
		return 1
	}
	var ans abi.ToolAnswer
	if req.Describe {
		d, _ := json.Marshal(abi.ToolDescription{Name: t.Name, Description: t.Description, Schema: t.Schema, Semantics: t.Semantics})
		ans.Result = d
	} else {
		ans = invoke(t, &Call{ID: req.CallID, TaskID: req.TaskID, Attempt: req.Attempt, Params: req.Params})
	}
	out, err := json.Marshal(ans)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin: encode answer:", err)
		return 1
	}
	if st := h.output(out); st != abi.StatusOK {
		fmt.Fprintln(os.Stderr, "plugin: answer refused:", st)
		return 1
	}
	return 0
}

func invoke(t Tool, c *Call) (ans abi.ToolAnswer) {
	if t.Invoke == nil {
		return abi.ToolAnswer{Error: &abi.ErrorBody{Status: abi.StatusToolError.String(), Message: "the plugin has no Invoke"}}
	}
	res, err := t.Invoke(c)
	if err == nil {
		b, merr := json.Marshal(res)
		if raw, ok := res.(json.RawMessage); ok {
			b, merr = raw, nil
			if !json.Valid(raw) {
				merr = errors.New("raw result is not JSON")
			}
		}
		if merr != nil {
			err = Errorf(ErrToolError, "encode result: %v", merr)
		} else {
			return abi.ToolAnswer{Result: b}
		}
	}
	st, ok := abi.StatusOf(err)
	if !ok || !answerable[st] {
		st = abi.StatusToolError
	}
	msg := err.Error()
	var ae *abi.Error
	if errors.As(err, &ae) {
		msg = ae.Message
	}
	return abi.ToolAnswer{Error: &abi.ErrorBody{Status: st.String(), Message: msg}}
}

// Request is an HTTP request the host sends for the plugin. A header value
// is a string or a Secret.
type Request struct {
	Method  string         `json:"method,omitempty"`
	URL     string         `json:"url"`
	Headers map[string]any `json:"headers,omitempty"`
	Body    string         `json:"body,omitempty"`
}

// Response is the host's answer.
type Response struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body"`
}

// Secret is a header value the host replaces with the node's secret of that
// name, formatted ("Bearer %s"; "" means "%s"). The plugin never sees it.
func Secret(name, format string) abi.ToolSecretRef {
	return abi.ToolSecretRef{Secret: name, Format: format}
}

// HTTP sends req through the host, which allows only the hosts the tool's
// definition names and sets Idempotency-Key to the call's ID. An HTTP error
// status is a Response, not an error; errors are the host's (transient,
// permission_denied for a host not allowed, ...).
func HTTP(req Request) (*Response, error) {
	h, err := host()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(abi.CallRequest{Tool: abi.ToolCapHTTP, Params: mustJSON(req)})
	if err != nil {
		return nil, fmt.Errorf("plugin: http: %w", err)
	}
	st, body, err := exchange(func(buf []byte) (abi.Status, uint32) { return h.call(b, buf) }, h.response)
	if err != nil {
		return nil, fmt.Errorf("plugin: http: %w", err)
	}
	if st != abi.StatusOK {
		return nil, fmt.Errorf("plugin: http: %w", abi.DecodeErrorBody(st, body))
	}
	var resp Response
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("plugin: http: decode response: %w", err)
	}
	return &resp, nil
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v) // a Request always encodes
	return b
}

// Log writes a line to the node's log for this call (level: abi.LogDebug
// to abi.LogError).
func Log(level abi.LogLevel, format string, args ...any) {
	if h, err := host(); err == nil {
		h.log(level, []byte(fmt.Sprintf(format, args...)))
	}
}

func input(h rawHost) ([]byte, error) {
	st, body, err := exchange(h.input, h.input)
	if err != nil {
		return nil, err
	}
	if st != abi.StatusOK {
		return nil, abi.DecodeErrorBody(st, body)
	}
	return body, nil
}

// rawHost is the orloj_tool_v1 surface; see sdk/orloj for the protocol.
type rawHost interface {
	input(buf []byte) (abi.Status, uint32)
	call(req, buf []byte) (abi.Status, uint32)
	response(buf []byte) (abi.Status, uint32)
	output(b []byte) abi.Status
	log(level abi.LogLevel, msg []byte) abi.Status
}

// exchange is the host's buffer protocol, as sdk/orloj speaks it.
func exchange(first, fetch func(buf []byte) (abi.Status, uint32)) (abi.Status, []byte, error) {
	return guestexchange.Do(make([]byte, 16<<10), abi.MaxResponseBytes, first, fetch)
}

// Prepare has encoding/json learn the types of values in a package
// initializer, so a plugin built as a reactor (-buildmode=c-shared) pays
// for it once per version, not per call (see sdk/orloj.Prepare). It returns
// true so it can initialize a blank package-level variable.
func Prepare(values ...any) bool {
	jsonwarm.Prepare(values...)
	return true
}

// The PDK's own types.
var _ = Prepare(abi.ToolRequest{}, abi.ToolAnswer{}, abi.ToolDescription{}, abi.CallRequest{}, Request{}, Response{}, map[string]any{})
