package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// WASMToolConfig configures a tool served by a plugin module (orloj_tool_v1,
// docs/plugins.md).
type WASMToolConfig struct {
	Module  []byte
	Runtime *sandbox.Runtime
	// Name and Semantics override what the plugin describes; "" keeps it.
	Name      string
	Semantics plugins.Semantics
	// AllowHosts are the hosts the plugin's HTTP requests may reach (as
	// plugins.HTTPConfig.AllowHosts); none when empty.
	AllowHosts []string
	// Secrets resolves the secrets the plugin names in its headers; nil
	// means the node has none.
	Secrets plugins.Secrets
	// Timeout and MemoryLimit bound one invocation (sandbox defaults
	// when zero).
	Timeout     time.Duration
	MemoryLimit uint64
	Logger      hclog.Logger
}

// WASMTool is a plugins.Tool served by a plugin module: each call runs in a
// fresh sandboxed instance whose only route out is HTTP to the allowed
// hosts, through the host's http tool.
type WASMTool struct {
	cfg  WASMToolConfig
	mod  *sandbox.Module
	desc abi.ToolDescription
	sem  plugins.Semantics
	http *plugins.HTTPTool
	log  hclog.Logger
}

var _ plugins.Tool = (*WASMTool)(nil)

// ErrBadPlugin is returned by NewWASMTool for a module that is not a tool
// plugin (it does not compile, or does not describe a valid tool).
var ErrBadPlugin = errors.New("not a tool plugin")

// NewWASMTool compiles the plugin and asks it to describe itself.
func NewWASMTool(ctx context.Context, cfg WASMToolConfig) (*WASMTool, error) {
	if cfg.Runtime == nil {
		return nil, fmt.Errorf("wasm tool: Runtime: %w", ErrNilDependency)
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	mod, err := cfg.Runtime.Compile(ctx, cfg.Module)
	if err != nil {
		return nil, fmt.Errorf("wasm tool: %w: %w", ErrBadPlugin, err)
	}
	if err := (plugins.HTTPConfig{AllowHosts: cfg.AllowHosts}).Validate(); err != nil {
		return nil, fmt.Errorf("wasm tool: AllowHosts: %w", err)
	}
	t := &WASMTool{cfg: cfg, mod: mod, log: cfg.Logger.Named("wasm_tool")}
	ans, err := t.run(ctx, abi.ToolRequest{Describe: true}, nil)
	if err == nil && ans.Error != nil {
		err = errors.New(ans.Error.Message)
	}
	if err == nil {
		err = json.Unmarshal(ans.Result, &t.desc)
	}
	if err != nil {
		return nil, fmt.Errorf("wasm tool: %w: describe: %w", ErrBadPlugin, err)
	}
	if cfg.Name != "" {
		t.desc.Name = cfg.Name
	}
	if err := abi.ValidToolName(t.desc.Name); err != nil {
		return nil, fmt.Errorf("wasm tool: %w: name: %w", ErrBadPlugin, err)
	}
	t.sem = cmpSemantics(cfg.Semantics, plugins.Semantics(t.desc.Semantics))
	switch t.sem {
	case plugins.ReadOnly, plugins.Idempotent, plugins.Unsafe:
	default:
		return nil, fmt.Errorf("wasm tool %s: %w: semantics %q: want read_only, idempotent or unsafe", t.desc.Name, ErrBadPlugin, t.sem)
	}
	if len(t.desc.Schema) > 0 && !json.Valid(t.desc.Schema) {
		return nil, fmt.Errorf("wasm tool %s: %w: schema is not JSON", t.desc.Name, ErrBadPlugin)
	}
	// The plugin's requests carry its semantics: an unsafe plugin's are
	// never re-sent by the transport on its own.
	if t.http, err = plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: cfg.AllowHosts, Semantics: t.sem}); err != nil {
		return nil, fmt.Errorf("wasm tool %s: %w", t.desc.Name, err)
	}
	return t, nil
}

func cmpSemantics(a, b plugins.Semantics) plugins.Semantics {
	if a != "" {
		return a
	}
	return b
}

func (t *WASMTool) Name() string                 { return t.desc.Name }
func (t *WASMTool) Semantics() plugins.Semantics { return t.sem }
func (t *WASMTool) Schema() json.RawMessage {
	if len(t.desc.Schema) == 0 {
		return json.RawMessage(`{}`)
	}
	return t.desc.Schema
}

// Invoke runs the plugin for one call.
func (t *WASMTool) Invoke(ctx context.Context, call plugins.Call) (plugins.Result, error) {
	used := &secretsUsed{}
	ans, err := t.run(ctx, abi.ToolRequest{CallID: call.ID, TaskID: call.TaskID, Attempt: call.Attempt, Params: call.Params}, &pluginCall{call: call, used: used})
	if err != nil {
		return plugins.Result{}, err
	}
	if ans.Error != nil {
		st, ok := abi.ParseStatus(ans.Error.Status)
		switch {
		case !ok, st == abi.StatusOK, st == abi.StatusBufferTooSmall, st == abi.StatusFault, st == abi.StatusInDoubt, st == abi.StatusBudgetExceeded:
			st = abi.StatusToolError
		}
		return plugins.Result{}, abi.Errorf(st, "%s", used.redact(ans.Error.Message))
	}
	if len(ans.Result) == 0 {
		return plugins.Result{Body: json.RawMessage("null")}, nil
	}
	return plugins.Result{Body: json.RawMessage(used.redact(string(ans.Result)))}, nil
}

// run executes one request in a fresh instance and returns the plugin's
// answer. Failures of the plugin itself (a trap, its deadline, its memory
// limit, no answer) are transient: the call did not complete.
func (t *WASMTool) run(ctx context.Context, req abi.ToolRequest, pc *pluginCall) (abi.ToolAnswer, error) {
	in, _ := json.Marshal(req) // plain struct: cannot fail
	d := &pluginDispatcher{t: t, in: in, pc: pc}
	res := t.cfg.Runtime.Run(ctx, t.mod, sandbox.RunConfig{Dispatcher: d, TaskID: req.TaskID, Name: "plugin",
		Timeout: t.cfg.Timeout, MemoryLimit: t.cfg.MemoryLimit})
	name := t.desc.Name
	if name == "" {
		name = "plugin"
	}
	if res.Outcome != sandbox.OutcomeSuccess {
		tail := strings.TrimSpace(string(lastBytes(res.Stderr, 512)))
		if pc != nil {
			tail = pc.used.redact(tail)
		}
		return abi.ToolAnswer{}, abi.Errorf(abi.StatusTransient, "tool %s: the plugin failed (%v): %v %s", name, res.Outcome, res.Err, tail)
	}
	if d.out == nil {
		return abi.ToolAnswer{}, abi.Errorf(abi.StatusTransient, "tool %s: the plugin ended without an answer", name)
	}
	var ans abi.ToolAnswer
	dec := json.NewDecoder(bytes.NewReader(d.out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ans); err != nil {
		return abi.ToolAnswer{}, abi.Errorf(abi.StatusToolError, "tool %s: the plugin's answer is not a tool answer: %v", name, err)
	}
	return ans, nil
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// pluginCall is what an invocation's capabilities act for.
type pluginCall struct {
	call plugins.Call
	used *secretsUsed
}

// secretsUsed remembers the secret values one invocation had filled in,
// so whatever the plugin answers has them cut out before it is recorded.
type secretsUsed struct {
	mu     sync.Mutex
	values []string
}

func (s *secretsUsed) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v != "" {
		s.values = append(s.values, v)
	}
}

func (s *secretsUsed) redact(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.values {
		text = strings.ReplaceAll(text, v, "[redacted]")
	}
	return text
}

// pluginDispatcher serves orloj_tool_v1 for one run.
type pluginDispatcher struct {
	t     *WASMTool
	in    []byte
	out   []byte
	pc    *pluginCall // nil while describing: no capabilities
	calls int         // HTTP requests so far
}

// maxPluginHTTPCalls bounds the HTTP requests one invocation of a plugin
// sends: a plugin in a loop must not turn one call into a flood.
const maxPluginHTTPCalls = 64

func (d *pluginDispatcher) Input(context.Context) ([]byte, error) { return d.in, nil }

func (d *pluginDispatcher) Output(_ context.Context, b []byte) error {
	d.out = b
	return nil
}

func (d *pluginDispatcher) Log(_ context.Context, level abi.LogLevel, line []byte) error {
	msg := string(line)
	if d.pc != nil {
		msg = d.pc.used.redact(msg)
	}
	d.t.log.Debug("plugin log", "tool", d.t.desc.Name, "level", level.String(), "line", msg)
	return nil
}

func (d *pluginDispatcher) Now(context.Context) (time.Time, error) { return time.Now(), nil }

func (d *pluginDispatcher) Emit(context.Context, abi.Effect) error {
	return abi.Errorf(abi.StatusPermissionDenied, "a tool plugin cannot emit effects")
}

// Call serves the capabilities: only http, to the allowed hosts, with the
// call's Idempotency-Key and the node's secrets filled into headers.
func (d *pluginDispatcher) Call(ctx context.Context, req abi.CallRequest) ([]byte, error) {
	if d.pc == nil {
		return nil, abi.Errorf(abi.StatusPermissionDenied, "a plugin has no capabilities while it describes itself")
	}
	if req.Tool != abi.ToolCapHTTP {
		return nil, abi.Errorf(abi.StatusPermissionDenied, "a tool plugin may call only %q, not %q", abi.ToolCapHTTP, req.Tool)
	}
	if d.calls++; d.calls > maxPluginHTTPCalls {
		return nil, abi.Errorf(abi.StatusBudgetExceeded, "a tool plugin may send at most %d HTTP requests per call", maxPluginHTTPCalls)
	}
	var p map[string]json.RawMessage
	if err := json.Unmarshal(req.Params, &p); err != nil {
		return nil, abi.Errorf(abi.StatusInvalidArgument, "http params: %v", err)
	}
	if raw, ok := p["headers"]; ok {
		var hs map[string]json.RawMessage
		if err := json.Unmarshal(raw, &hs); err != nil {
			return nil, abi.Errorf(abi.StatusInvalidArgument, "http headers: want an object: %v", err)
		}
		plain := make(map[string]string, len(hs))
		for k, v := range hs {
			var s string
			if json.Unmarshal(v, &s) == nil {
				plain[k] = s
				continue
			}
			var ref abi.ToolSecretRef
			if err := json.Unmarshal(v, &ref); err != nil || ref.Secret == "" {
				return nil, abi.Errorf(abi.StatusInvalidArgument, "http header %s: want a string or {\"secret\": NAME, \"format\": ...}", k)
			}
			if d.t.cfg.Secrets == nil {
				// Another node may hold it: not the call's fault.
				return nil, abi.Errorf(abi.StatusTransient, "no secret %q on this node", ref.Secret)
			}
			val, err := d.t.cfg.Secrets.Secret(ref.Secret)
			if err != nil {
				return nil, err // transient, naming the secret, never a value
			}
			format := ref.Format
			if format == "" {
				format = "%s"
			}
			if strings.Count(format, "%s") != 1 || strings.Count(format, "%") != 1 {
				return nil, abi.Errorf(abi.StatusInvalidArgument, "http header %s: format %q: want one %%s", k, format)
			}
			d.pc.used.add(val)
			plain[k] = fmt.Sprintf(format, val)
		}
		b, _ := json.Marshal(plain)
		p["headers"] = b
	}
	params, _ := json.Marshal(p)
	res, err := d.t.http.Invoke(ctx, plugins.Call{ID: d.pc.call.ID, TaskID: d.pc.call.TaskID, Attempt: d.pc.call.Attempt, Params: params})
	if err != nil {
		if _, ok := abi.StatusOf(err); !ok {
			err = abi.Errorf(abi.StatusTransient, "%s", d.pc.used.redact(err.Error()))
		}
		return nil, err
	}
	return res.Body, nil
}
