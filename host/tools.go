package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/sandbox"
)

// DeclaredTools builds the declared tools tasks pinned, from the
// definitions in the local replica, with this node's secrets. A version
// never changes, so each is built once per node and kept, with its
// client's connections. The executor and the outbox share one.
type DeclaredTools struct {
	c       Cluster
	secrets plugins.Secrets
	rt      *sandbox.Runtime // for wasm tools; nil refuses them
	log     hclog.Logger
	built   sync.Map // "name@version" → plugins.Tool
	mcp     MCPOptions
	servers sync.Map // "name@version" → *mcpEntry
	// approvals: "name@version" → whether its definition needs approval.
	approvals sync.Map
	closed    atomic.Bool
}

// MCPOptions are what a node gives the declared MCP servers it starts.
type MCPOptions struct {
	// Dir holds the working directory of each stdio server version;
	// required for them.
	Dir string
	// Commands are the commands a declared stdio server may run, exactly
	// as definitions name them (the serve setting mcp_commands). A
	// definition is pushed over the API; without this list, pushing one
	// would run any program on every node.
	Commands []string
	// Go launches the servers' goroutines (the node's tracked launcher).
	Go func(name string, f func())
}

// ErrCommandNotAllowed is a declared MCP server whose command this node's
// operator has not allowed.
var ErrCommandNotAllowed = errors.New("mcp command not allowed on this node")

// mcpEntry is one version of a declared MCP server on this node, started
// on first use and kept until the node stops.
type mcpEntry struct {
	mu  sync.Mutex // held while starting
	srv atomic.Pointer[mcp.Server]
}

// WithMCP lets d start declared MCP servers.
func (d *DeclaredTools) WithMCP(o MCPOptions) *DeclaredTools {
	d.mcp = o
	return d
}

// WithSandbox lets d build wasm tools, running their plugins in rt.
func (d *DeclaredTools) WithSandbox(rt *sandbox.Runtime, log hclog.Logger) *DeclaredTools {
	d.rt, d.log = rt, log
	return d
}

// NewDeclaredTools returns the node's declared-tool builder. secrets nil
// resolves none: a call that needs one fails, transient, naming it.
func NewDeclaredTools(c Cluster, secrets plugins.Secrets) *DeclaredTools {
	return &DeclaredTools{c: c, secrets: secrets}
}

// Tool returns version v of the declared tool name.
func (d *DeclaredTools) Tool(name string, v uint64) (plugins.Tool, error) {
	key := name + "@" + strconv.FormatUint(v, 10)
	if t, ok := d.built.Load(key); ok {
		return t.(plugins.Tool), nil
	}
	def, err := d.c.FSM().Tool(name, v)
	if err != nil {
		return nil, fmt.Errorf("load declared tool %s: %w", key, err)
	}
	doc, err := plugins.ParseDefinition(def.Spec)
	var t plugins.Tool
	switch {
	case err != nil:
	case doc.Kind == plugins.KindWASM:
		t, err = d.wasm(doc, def)
	case doc.Kind == plugins.KindMCP:
		err = fmt.Errorf("%w: %s is an mcp server; its tools are called %s/TOOL", plugins.ErrInvalidDefinition, name, name)
	default:
		t, err = plugins.NewDeclared(doc, plugins.DeclaredOptions{Secrets: d.secrets})
	}
	if err != nil {
		return nil, fmt.Errorf("build declared tool %s: %w", key, err)
	}
	kept, _ := d.built.LoadOrStore(key, t)
	return kept.(plugins.Tool), nil
}

// wasm builds a plugin tool: its module from the replica, checked against
// the digest the definition names, run in the node's sandbox.
func (d *DeclaredTools) wasm(doc plugins.Definition, def cluster.ToolDef) (plugins.Tool, error) {
	if d.rt == nil {
		return nil, fmt.Errorf("%w: this node runs no wasm tools", plugins.ErrKindNotSupported)
	}
	w := doc.WASM
	module, err := d.c.FSM().Module(w.Module)
	if err != nil {
		return nil, fmt.Errorf("module %.12s: %w", w.Module, err)
	}
	if sum := sha256.Sum256(module); hex.EncodeToString(sum[:]) != w.Module {
		return nil, fmt.Errorf("module %.12s: the stored bytes do not match the digest", w.Module)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return NewWASMTool(ctx, WASMToolConfig{Module: module, Runtime: d.rt, Name: doc.Name, Semantics: w.Semantics,
		AllowHosts: w.AllowHosts, Secrets: d.secrets, Timeout: w.TimeoutOrDefault(), MemoryLimit: w.MemoryLimit, Logger: d.log})
}

// forTask returns the declared tool name as task pinned it, or false when
// the task pinned no such tool. A name "<server>/<tool>" is a tool of the
// declared MCP server <server>, as the task pinned the server.
func (d *DeclaredTools) forTask(task cluster.Task, name string) (plugins.Tool, bool, error) {
	if d == nil {
		return nil, false, nil
	}
	if server, _, isMCP := strings.Cut(name, "/"); isMCP {
		v, pinned := task.Tools[server]
		if !pinned {
			return nil, false, nil
		}
		return d.mcpTool(server, v, name)
	}
	v, pinned := task.Tools[name]
	if !pinned {
		return nil, false, nil
	}
	t, err := d.Tool(name, v)
	return t, err == nil, err
}

// mcpTool returns tool name of version v of the declared MCP server, or
// false when the server does not list it. A server not reached yet is an
// error (transient): its tools are not known, not absent.
func (d *DeclaredTools) mcpTool(server string, v uint64, name string) (plugins.Tool, bool, error) {
	srv, err := d.mcpServer(server, v)
	if err != nil {
		return nil, false, err
	}
	t, reached := srv.Tool(name)
	if !reached {
		return nil, false, mcpUnavailable{fmt.Errorf("declared mcp server %s@%d: %w", server, v, mcp.ErrServerDown)}
	}
	return t, t != nil, nil
}

// mcpServer returns version v of the declared MCP server name, starting it
// on first use. A start that fails is not kept: the next attempt tries
// again (a secret or a command installed since may make it work).
func (d *DeclaredTools) mcpServer(name string, v uint64) (*mcp.Server, error) {
	key := name + "@" + strconv.FormatUint(v, 10)
	got, _ := d.servers.LoadOrStore(key, &mcpEntry{})
	e := got.(*mcpEntry)
	if s := e.srv.Load(); s != nil {
		return s, nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.srv.Load(); s != nil {
		return s, nil
	}
	if d.closed.Load() {
		return nil, fmt.Errorf("declared mcp server %s: the node is stopping", key)
	}
	def, err := d.c.FSM().Tool(name, v)
	if err != nil {
		return nil, fmt.Errorf("load declared tool %s: %w", key, err)
	}
	doc, err := plugins.ParseDefinition(def.Spec)
	if err == nil && doc.Kind != plugins.KindMCP {
		err = fmt.Errorf("%w: %s is a tool of kind %s, not an mcp server", plugins.ErrInvalidDefinition, key, doc.Kind)
	}
	if err != nil {
		return nil, fmt.Errorf("build declared tool %s: %w", key, err)
	}
	cfg, headers, err := d.mcpConfig(doc)
	if err != nil {
		return nil, mcpUnavailable{fmt.Errorf("declared mcp server %s: %w", key, err)}
	}
	log := d.log
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s, err := mcp.Start(cfg, mcp.Options{Logger: log.With("tool_version", v), Go: d.mcp.Go, Headers: headers,
		WorkDir: filepath.Join(d.mcp.Dir, name+"@"+strconv.FormatUint(v, 10))})
	if err != nil { // a command not found
		return nil, mcpUnavailable{fmt.Errorf("declared mcp server %s: %w", key, err)}
	}
	e.srv.Store(s)
	if d.closed.Load() { // Close ran while this one started
		if s := e.srv.Swap(nil); s != nil {
			s.Close()
		}
		return nil, fmt.Errorf("declared mcp server %s: the node is stopping", key)
	}
	return s, nil
}

// mcpConfig turns a declared MCP server into the client's configuration,
// its secrets resolved on this node now: a stdio server's environment is
// given once per process, and a URL server's headers once per connection.
func (d *DeclaredTools) mcpConfig(doc plugins.Definition) (mcp.ServerConfig, http.Header, error) {
	m := doc.MCP
	cfg := mcp.ServerConfig{Name: doc.Name, URL: m.URL, Command: m.Command, Args: m.Args, Tools: m.Tools,
		Timeout: m.TimeoutOrDefault(), MaxResponseBytes: m.MaxResponseBytes}
	if m.Command != "" {
		if !slices.Contains(d.mcp.Commands, m.Command) {
			return cfg, nil, fmt.Errorf("%w: command %q is not in this node's mcp_commands", ErrCommandNotAllowed, m.Command)
		}
		if d.mcp.Dir == "" {
			return cfg, nil, fmt.Errorf("%w: this node runs no declared stdio servers", plugins.ErrKindNotSupported)
		}
	}
	if len(m.Env) > 0 {
		cfg.Env = make(map[string]string, len(m.Env))
	}
	for _, k := range slices.Sorted(maps.Keys(m.Env)) {
		val, err := m.Env[k].Resolve(d.secrets)
		if err != nil {
			return cfg, nil, fmt.Errorf("env %s: %w", k, err)
		}
		cfg.Env[k] = val
	}
	var headers http.Header
	for _, k := range slices.Sorted(maps.Keys(m.Headers)) {
		val, err := m.Headers[k].Resolve(d.secrets)
		if err != nil {
			return cfg, nil, fmt.Errorf("header %s: %w", k, err)
		}
		if headers == nil {
			headers = http.Header{}
		}
		headers.Set(k, val)
	}
	return cfg, headers, nil
}

// Close stops the declared MCP servers this node started, at once.
func (d *DeclaredTools) Close() {
	if d == nil {
		return
	}
	d.closed.Store(true)
	var wg sync.WaitGroup
	d.servers.Range(func(_, v any) bool {
		if s := v.(*mcpEntry).srv.Swap(nil); s != nil {
			wg.Add(1)
			go func() { defer wg.Done(); s.Close() }()
		}
		return true
	})
	wg.Wait()
}

// WithDeclaredTools lets the executor run the declared tools tasks pinned;
// without it, only the node's built-in tools are offered.
func WithDeclaredTools(d *DeclaredTools) ExecutorOption {
	return func(e *Executor) { e.declared = d }
}

// toolsFor returns the tools one attempt of task may call: the node's
// built-in tools, then the declared tools the task pinned at submission,
// for the names of its agent's manifest that no built-in tool has (a
// declared name cannot shadow a built-in one). Without pins it is the
// built-in registry itself. A declared MCP server this node cannot use now
// (not reached, its command not allowed here) fails only the calls of its
// tools, not an attempt that may not call them.
func (e *Executor) toolsFor(task cluster.Task, agent cluster.Agent) (*plugins.Registry, error) {
	var more []plugins.Tool
	for _, name := range agent.Manifest.Tools {
		if _, builtin := e.tools.Get(name); builtin {
			continue
		}
		t, ok, err := e.declared.forTask(task, name)
		var down mcpUnavailable
		if errors.As(err, &down) {
			t, ok, err = unavailableTool{name: name, err: err}, true, nil
		}
		if err != nil {
			return nil, err
		}
		if ok {
			more = append(more, t)
		}
	}
	if len(more) == 0 {
		return e.tools, nil
	}
	reg, err := e.tools.With(more...)
	if err != nil {
		return nil, fmt.Errorf("task %s: declared tools: %w", task.ID, err)
	}
	return reg, nil
}

// mcpUnavailable is a declared MCP server that cannot serve calls on this
// node now; another node, or this one later, may.
type mcpUnavailable struct{ error }

func (e mcpUnavailable) Unwrap() error { return e.error }

// unavailableTool stands for a tool of an MCP server that cannot be used
// now: each call fails, transient, with why, and nothing is sent, so it is
// safe to repeat whatever the real tool's semantics.
type unavailableTool struct {
	name string
	err  error
}

func (u unavailableTool) Name() string                 { return u.name }
func (u unavailableTool) Semantics() plugins.Semantics { return plugins.ReadOnly }
func (u unavailableTool) Schema() json.RawMessage      { return json.RawMessage(`{"type":"object"}`) }
func (u unavailableTool) Invoke(context.Context, plugins.Call) (plugins.Result, error) {
	return plugins.Result{}, plugins.NotSent(abi.Errorf(abi.StatusTransient, "%v", u.err))
}

// withApprovals returns agent with the declared tools whose pinned
// definition says approval "required" added to its manifest's Approve.
func (e *Executor) withApprovals(task cluster.Task, agent cluster.Agent) cluster.Agent {
	var add []string
	for _, name := range agent.Manifest.Tools {
		if _, builtin := e.tools.Get(name); builtin || slices.Contains(agent.Manifest.Approve, name) {
			continue
		}
		if e.declared.needsApproval(task, name) {
			add = append(add, name)
		}
	}
	if len(add) > 0 {
		agent.Manifest.Approve = append(slices.Clone(agent.Manifest.Approve), add...)
	}
	return agent
}

// needsApproval reports whether the declared tool name, as task pinned it
// (for "<server>/<tool>", the server), is declared approval "required". A
// definition that cannot be read says no here; building the tool fails.
func (d *DeclaredTools) needsApproval(task cluster.Task, name string) bool {
	if d == nil {
		return false
	}
	server, _, _ := strings.Cut(name, "/")
	v, pinned := task.Tools[server]
	if !pinned {
		return false
	}
	key := server + "@" + strconv.FormatUint(v, 10)
	if b, ok := d.approvals.Load(key); ok {
		return b.(bool)
	}
	def, err := d.c.FSM().Tool(server, v)
	if err != nil {
		return false
	}
	doc, err := plugins.ParseDefinition(def.Spec)
	if err != nil {
		return false
	}
	need := doc.Approval == plugins.ApprovalRequired
	d.approvals.Store(key, need)
	return need
}

// toolsError classifies a failure to resolve an attempt's tools: a
// definition this node cannot build yet (a kind it does not know, in a
// rolling upgrade) or cannot read now may work elsewhere or later; a
// definition that is wrong, or gone, is so everywhere.
func toolsError(err error) cluster.ErrorClass {
	if errors.Is(err, plugins.ErrInvalidDefinition) || errors.Is(err, cluster.ErrUnknownTool) {
		return cluster.ClassPermanent
	}
	return cluster.ClassTransient
}
