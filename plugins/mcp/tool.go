package mcp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/google/jsonschema-go/jsonschema"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

// excerptBytes bounds the text of an isError result or a server's error
// message that goes into the call's error: enough to read, not a flood.
const excerptBytes = 512

// Tool is one tool of an MCP server as an Orloj tool, "<server>/<tool>".
// Its definition follows the server's latest tools/list.
type Tool struct {
	srv  *Server
	name string
	def  atomic.Pointer[toolDef]
}

// toolDef is what one tools/list said about a tool.
type toolDef struct {
	mcpName string
	sem     plugins.Semantics
	schema  json.RawMessage
	// resolved validates params before anything is sent; nil when the
	// server's schema is one the validator cannot use (the server still
	// validates).
	resolved *jsonschema.Resolved
}

func (s *Server) newDef(mt *mcpsdk.Tool) (*toolDef, error) {
	if err := abi.ValidToolName(s.cfg.Name + "/" + mt.Name); err != nil {
		return nil, err
	}
	schema := json.RawMessage(`{"type":"object"}`)
	if mt.InputSchema != nil {
		b, err := json.Marshal(mt.InputSchema)
		if err != nil {
			return nil, fmt.Errorf("input schema: %w", err)
		}
		schema = b
	}
	d := &toolDef{mcpName: mt.Name, sem: s.cfg.semanticsOf(mt), schema: schema}
	var js jsonschema.Schema
	if err := json.Unmarshal(schema, &js); err == nil {
		if rs, err := js.Resolve(nil); err == nil {
			d.resolved = rs
		} else {
			s.log.Debug("mcp tool schema not used to check params", "tool", mt.Name, "error", err)
		}
	}
	return d, nil
}

func (t *Tool) Name() string                 { return t.name }
func (t *Tool) Semantics() plugins.Semantics { return t.def.Load().sem }
func (t *Tool) Schema() json.RawMessage      { return t.def.Load().schema }

// result is the body of a successful call: the CallToolResult as MCP has
// it, without its _meta.
type result struct {
	Content           []mcpsdk.Content `json:"content"`
	StructuredContent any              `json:"structuredContent,omitempty"`
	IsError           bool             `json:"isError"`
}

// Invoke sends tools/call with call.ID as its idempotency key. Errors:
// not_found when the server no longer lists the tool; invalid_argument for
// params that are not an object or do not match the input schema (both
// before anything is sent) and for the server's invalid-params error;
// tool_error for an isError result, another JSON-RPC error or a result over
// the size cap; transient for a server that cannot be reached, a
// connection lost and a timeout, wrapping plugins.ErrNotSent when nothing
// can have reached the server.
func (t *Tool) Invoke(ctx context.Context, call plugins.Call) (plugins.Result, error) {
	d := t.def.Load()
	s := t.srv
	if !s.isListed(d.mcpName) {
		return plugins.Result{}, abi.Errorf(abi.StatusNotFound, "mcp server %s no longer lists tool %q", s.cfg.Name, d.mcpName)
	}
	args, err := d.checkParams(call.Params)
	if err != nil {
		return plugins.Result{}, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sess, err := s.connected(cctx)
	if err != nil {
		return plugins.Result{}, notSent{abi.Errorf(abi.StatusTransient, "%s: %v", t.name, err)}
	}
	sent := &sendState{key: call.ID, unsafe: d.sem == plugins.Unsafe}
	cctx = context.WithValue(cctx, sendStateKey{}, sent)
	res, err := sess.CallTool(cctx, &mcpsdk.CallToolParams{
		Meta:      mcpsdk.Meta{MetaIdempotencyKey: call.ID},
		Name:      d.mcpName,
		Arguments: args,
	})
	if err != nil {
		if brokenSession(s.cfg.Transport(), err, cctx) {
			// Calls after this one wait for the next connection rather
			// than fail on this one before the session loop notices.
			s.drop(sess)
		}
		return plugins.Result{}, t.callError(ctx, cctx, sent, err)
	}
	if res.IsError {
		return plugins.Result{}, abi.Errorf(abi.StatusToolError, "%s: %s", t.name, contentText(res.Content))
	}
	body, err := marshalResult(result{Content: res.Content, StructuredContent: res.StructuredContent})
	if err != nil {
		return plugins.Result{}, abi.Errorf(abi.StatusToolError, "%s: %v", t.name, err)
	}
	if int64(len(body)) > s.cfg.MaxResponseBytes {
		return plugins.Result{}, abi.Errorf(abi.StatusToolError, "%s: result is %d bytes, limit %d", t.name, len(body), s.cfg.MaxResponseBytes)
	}
	return plugins.Result{Body: body}, nil
}

// brokenSession reports whether a call's error means its session is dead:
// a closed connection, or on stdio any failure that is not an answer (a
// pipe that fails once stays failed).
func brokenSession(tr Transport, err error, cctx context.Context) bool {
	if errors.Is(err, mcpsdk.ErrConnectionClosed) {
		return true
	}
	var rpc *jsonrpc.Error
	answered := errors.As(err, &rpc) && !transportCodes[rpc.Code]
	return tr == TransportStdio && !answered && cctx.Err() == nil
}

// checkParams refuses params that are not an object, or do not match the
// input schema.
func (d *toolDef) checkParams(params json.RawMessage) (json.RawMessage, error) {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return nil, abi.Errorf(abi.StatusInvalidArgument, "params must be a JSON object (the tool's arguments)")
	}
	if d.resolved != nil {
		var v any
		if err := json.Unmarshal(trimmed, &v); err != nil {
			return nil, abi.Errorf(abi.StatusInvalidArgument, "params: %v", err)
		}
		if err := d.resolved.Validate(v); err != nil {
			return nil, abi.Errorf(abi.StatusInvalidArgument, "params do not match the input schema of %s: %s", d.mcpName, clip(err.Error()))
		}
	}
	return trimmed, nil
}

// transportCodes are the JSON-RPC codes the SDK itself gives a call that
// failed on its way, with no answer from the server: unknown, client
// closing, server closing, rejected by the transport.
var transportCodes = map[int64]bool{-32001: true, -32003: true, -32004: true, -32005: true}

// callError classifies a failed tools/call. parent is the host's context,
// cctx the call's own (with the timeout).
func (t *Tool) callError(parent, cctx context.Context, sent *sendState, err error) error {
	var rpc *jsonrpc.Error
	if errors.As(err, &rpc) && !transportCodes[rpc.Code] {
		// The server answered: the call itself is at fault.
		st := abi.StatusToolError
		if rpc.Code == jsonrpc.CodeInvalidParams {
			st = abi.StatusInvalidArgument
		}
		return abi.Errorf(st, "%s: server error %d: %s", t.name, rpc.Code, clip(rpc.Message))
	}
	var out error
	switch {
	case parent.Err() != nil:
		out = abi.Errorf(abi.StatusTransient, "%s: call abandoned: %v", t.name, context.Cause(parent))
	case cctx.Err() != nil:
		out = abi.Errorf(abi.StatusTransient, "%s: no answer within %s", t.name, t.srv.cfg.Timeout)
	default:
		out = abi.Errorf(abi.StatusTransient, "%s: %s", t.name, clip(err.Error()))
	}
	if sent.notSent() && cctx.Err() == nil {
		return notSent{out}
	}
	return out
}

// contentText is the text of a result's text contents, for an error.
func contentText(cs []mcpsdk.Content) string {
	var parts []string
	for _, c := range cs {
		if tc, ok := c.(*mcpsdk.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	if len(parts) == 0 {
		return "the tool reported an error"
	}
	return clip(strings.Join(parts, "; "))
}

// clip makes s safe for a message: valid UTF-8, at most excerptBytes.
func clip(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= excerptBytes {
		return s
	}
	cut := excerptBytes
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}

// marshalResult encodes without HTML escaping, as the built-in tools do:
// results go to programs, and escaping can multiply a body's size.
func marshalResult(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode result: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// notSent is an error that also matches plugins.ErrNotSent.
type notSent struct{ error }

func (e notSent) Unwrap() []error { return []error{e.error, plugins.ErrNotSent} }
