package host

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/plugins/mcp/mcptest"
)

func pushToolDef(t *testing.T, e *env, name, sem string) {
	t.Helper()
	pushDefinition(t, e, `{"name":"`+name+`","kind":"http","http":{"base_url":"http://127.0.0.1:1","methods":["POST"],"semantics":"`+sem+`"}}`)
}

// pushDefinition parses a definition document and applies it as the
// cluster's API would.
func pushDefinition(t *testing.T, e *env, doc string) {
	t.Helper()
	d, err := plugins.ParseDefinition([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := d.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: d.Name, Kind: string(d.Kind), Spec: spec}, Now: time.Now().UnixNano()})
}

// TestToolsForPinnedAndBuiltins: an attempt gets the node's built-in tools
// and the declared tools its task pinned, at the pinned version (a newer
// definition, with other semantics, does not change it); a built-in tool
// wins over a declared one of the same name; a task without pins gets the
// node's registry as it is.
func TestToolsForPinnedAndBuiltins(t *testing.T) {
	t.Parallel()
	reg, err := plugins.NewRegistry(plugins.NewStub("http", plugins.Idempotent, nil))
	if err != nil {
		t.Fatal(err)
	}
	e := newMemEnv(t, reg)
	e.exec.declared = NewDeclaredTools(e.node, plugins.MapSecrets{})
	pushToolDef(t, e, "pay", "unsafe")
	pushToolDef(t, e, "http", "unsafe") // as if pushed through a node without a built-in http
	e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "a", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"http", "pay"}}},
		Module: []byte("\x00asm\x01\x00\x00\x00"), Now: 1})
	e.submit("t1", "a", "v1", nil, cluster.RetryPolicy{})
	pushToolDef(t, e, "pay", "idempotent")

	task, err := e.node.FSM().Task("t1")
	if err != nil {
		t.Fatal(err)
	}
	if task.Tools["pay"] != 1 || task.Tools["http"] != 1 {
		t.Fatalf("pins = %v", task.Tools)
	}
	agent, _ := e.node.FSM().Agent("a", "v1")
	tools, err := e.exec.toolsFor(task, agent)
	if err != nil {
		t.Fatal(err)
	}
	pay, ok := tools.Get("pay")
	if !ok || pay.Semantics() != plugins.Unsafe {
		t.Fatalf("pay = %v %v, want the pinned version 1 (unsafe)", pay, ok)
	}
	if h, _ := tools.Get("http"); h.Semantics() != plugins.Idempotent {
		t.Fatal("the declared http shadowed the built-in one")
	}
	if _, ok := e.tools.Get("pay"); ok {
		t.Fatal("the node's registry gained the declared tool")
	}
	if got, _ := e.exec.toolsFor(cluster.Task{ID: "t2"}, agent); got != e.tools {
		t.Fatal("a task without pins got a copy of the registry")
	}
	// A version that cannot be read is permanent, as is a name that became
	// an MCP server; one this node cannot build (a wasm tool without a
	// sandbox) is transient.
	_, err = e.exec.toolsFor(cluster.Task{ID: "t3", Tools: map[string]uint64{"pay": 9}}, agent)
	if !errors.Is(err, cluster.ErrUnknownTool) || toolsError(err) != cluster.ClassPermanent {
		t.Fatalf("missing version: %v (%s)", err, toolsError(err))
	}
	e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: "pay", Kind: "mcp", Spec: json.RawMessage(`{"kind":"mcp","name":"pay","mcp":{"url":"http://m"}}`)}, Now: 9})
	_, err = e.exec.toolsFor(cluster.Task{ID: "t4", Tools: map[string]uint64{"pay": 3}}, agent)
	if !errors.Is(err, plugins.ErrInvalidDefinition) || toolsError(err) != cluster.ClassPermanent {
		t.Fatalf("an mcp server called as a tool: %v (%s)", err, toolsError(err))
	}
	e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: "pay", Kind: "wasm", Spec: json.RawMessage(`{"kind":"wasm","name":"pay","wasm":{"module":"` + strings.Repeat("a", 64) + `"}}`)}, Now: 10})
	_, err = e.exec.toolsFor(cluster.Task{ID: "t5", Tools: map[string]uint64{"pay": 4}}, agent)
	if !errors.Is(err, plugins.ErrKindNotSupported) || toolsError(err) != cluster.ClassTransient {
		t.Fatalf("a kind this node cannot build: %v (%s)", err, toolsError(err))
	}
}

// TestOutboxDeclaredEffect: an effect emitted to a declared tool is
// dispatched after its task succeeded, through the version the task
// pinned, with the node's secret in its header.
func TestOutboxDeclaredEffect(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		got.Store(r.Method + " " + r.URL.Path + " " + r.Header.Get("Authorization") + " " + r.Header.Get("Idempotency-Key"))
	}))
	defer srv.Close()
	s := newOutboxSetup(t)
	s.ob.cfg.Declared = NewDeclaredTools(s.e.node, plugins.MapSecrets{"hook-token": "tok-1"})
	d, err := plugins.ParseDefinition([]byte(`{"name":"notify","kind":"http","http":{"base_url":"` + srv.URL + `","methods":["POST"],
	  "headers":{"Authorization":{"secret":"hook-token","format":"Token %s"}},"semantics":"idempotent"}}`))
	if err != nil {
		t.Fatal(err)
	}
	spec, _ := d.Canonical()
	s.e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: "notify", Kind: "http", Spec: spec}, Now: 1})
	s.e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "fx", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"notify"}}},
		Module: []byte("\x00asm"), Now: 1})
	s.e.succeededWithEffects("t1", cluster.Effect{Tool: "notify", Params: json.RawMessage(`{"method":"POST","path":"/hook"}`), Key: "k1"})
	s.drain(t)
	if hits.Load() != 1 || got.Load() != "POST /hook Token tok-1 k1" {
		t.Fatalf("the service saw %d requests, last %v", hits.Load(), got.Load())
	}
	evs := effectEvents(t, s.e, "t1")
	if len(evs) != 1 || evs[0].Type != cluster.EventEffectDispatched {
		t.Fatalf("effect events = %+v", evs)
	}
}

func pushMCPDef(t *testing.T, e *env, name, mcpSection string) {
	t.Helper()
	pushDefinition(t, e, `{"name":"`+name+`","kind":"mcp","mcp":`+mcpSection+`}`)
}

// TestToolsForDeclaredMCP: a task's "<server>/<tool>" names resolve to the
// version of the declared MCP server it pinned, each version its own
// connection with its secrets resolved on this node; a tool the server
// does not list is absent; a server not reached, or whose command this
// node does not allow, fails the attempt as transient.
func TestToolsForDeclaredMCP(t *testing.T) {
	t.Parallel()
	startMCP := func() (*mcptest.Server, string) {
		ts := mcptest.New()
		hs := httptest.NewServer(ts.Handler())
		t.Cleanup(hs.Close)
		t.Cleanup(ts.Close)
		return ts, hs.URL
	}
	a, urlA := startMCP()
	b, urlB := startMCP()
	reg, err := plugins.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	e := newMemEnv(t, reg)
	d := NewDeclaredTools(e.node, plugins.MapSecrets{"docs-token": "tok-A"}).WithMCP(MCPOptions{Dir: t.TempDir()})
	t.Cleanup(d.Close)
	e.exec.declared = d
	pushMCPDef(t, e, "docs", `{"url":"`+urlA+`","headers":{"Authorization":{"secret":"docs-token","format":"Bearer %s"}}}`)
	e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "a", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"docs/echo", "docs/nope"}}},
		Module: []byte("\x00asm\x01\x00\x00\x00"), Now: 1})
	e.submit("t1", "a", "v1", nil, cluster.RetryPolicy{})
	pushMCPDef(t, e, "docs", `{"url":"`+urlB+`"}`)
	e.submit("t2", "a", "v1", nil, cluster.RetryPolicy{})
	agent, _ := e.node.FSM().Agent("a", "v1")

	call := func(taskID string) {
		t.Helper()
		task, err := e.node.FSM().Task(taskID)
		if err != nil {
			t.Fatal(err)
		}
		tools, err := e.exec.toolsFor(task, agent)
		if err != nil {
			t.Fatalf("%s: %v", taskID, err)
		}
		if _, ok := tools.Get("docs/nope"); ok {
			t.Fatalf("%s: a tool the server does not list resolved", taskID)
		}
		echo, ok := tools.Get("docs/echo")
		if !ok || echo.Semantics() != plugins.ReadOnly {
			t.Fatalf("%s: docs/echo = %v %v, want the server's read-only echo", taskID, echo, ok)
		}
		if _, err := echo.Invoke(context.Background(), plugins.Call{ID: "c-" + taskID, Params: json.RawMessage(`{"text":"hi"}`)}); err != nil {
			t.Fatalf("%s: %v", taskID, err)
		}
	}
	call("t1")
	call("t2")
	call("t1")
	if ra, _ := a.Counts("echo"); ra != 2 {
		t.Errorf("version 1's server saw %d calls, want 2", ra)
	}
	if rb, _ := b.Counts("echo"); rb != 1 {
		t.Errorf("version 2's server saw %d calls, want 1", rb)
	}
	if got := a.Auth(); len(got) != 2 || got[0] != "Bearer tok-A" {
		t.Errorf("version 1's server saw Authorization %q, want the secret's header", got)
	}
	if got := b.Auth(); len(got) != 1 || got[0] != "" {
		t.Errorf("version 2 declares no header; its server saw %q", got)
	}

	// Not reached (nothing listens), and a command not allowed: the
	// attempt gets the tool, whose calls fail transient with nothing sent.
	pushMCPDef(t, e, "gone", `{"url":"http://127.0.0.1:1/mcp","timeout":"300ms"}`)
	pushMCPDef(t, e, "local", `{"command":"/bin/sh","args":["-c","exit 0"]}`)
	for name, want := range map[string]string{"gone": mcp.ErrServerDown.Error(), "local": "not in this node's mcp_commands"} {
		ag := cluster.Agent{Name: "b", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{name + "/x"}}}
		tools, err := e.exec.toolsFor(cluster.Task{ID: "t-" + name, Tools: map[string]uint64{name: 1}}, ag)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		x, ok := tools.Get(name + "/x")
		if !ok {
			t.Fatalf("%s: no tool %s/x", name, name)
		}
		_, err = x.Invoke(context.Background(), plugins.Call{ID: "c"})
		if st, _ := abi.StatusOf(err); st != abi.StatusTransient || !errors.Is(err, plugins.ErrNotSent) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v (%s), want transient, not sent, saying %q", name, err, st, want)
		}
	}

	// Close stops the servers, and a stopping node starts none again.
	d.Close()
	task, _ := e.node.FSM().Task("t1")
	if _, err := e.exec.toolsFor(task, agent); err == nil || !strings.Contains(err.Error(), "stopping") {
		t.Errorf("after Close: %v, want the node stopping", err)
	}
}

// TestDeclaredApproval: a declared tool whose pinned definition says
// approval "required" (for an MCP server, each of its tools) joins the
// agent's Approve list for the attempt; a later version without it does
// not change the task that pinned the first.
func TestDeclaredApproval(t *testing.T) {
	t.Parallel()
	reg, err := plugins.NewRegistry(plugins.NewStub("http", plugins.Idempotent, nil))
	if err != nil {
		t.Fatal(err)
	}
	e := newMemEnv(t, reg)
	e.exec.declared = NewDeclaredTools(e.node, plugins.MapSecrets{})
	pushDefinition(t, e, `{"name":"pay","kind":"http","approval":"required","http":{"base_url":"http://127.0.0.1:1","methods":["POST"],"semantics":"unsafe"}}`)
	pushDefinition(t, e, `{"name":"docs","kind":"mcp","approval":"required","mcp":{"url":"http://127.0.0.1:1/mcp"}}`)
	pushToolDef(t, e, "notes", "idempotent")
	e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "a", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"http", "pay", "docs/search", "notes"}}},
		Module: []byte("\x00asm\x01\x00\x00\x00"), Now: 1})
	e.submit("t1", "a", "v1", nil, cluster.RetryPolicy{})
	pushDefinition(t, e, `{"name":"pay","kind":"http","http":{"base_url":"http://127.0.0.1:1","methods":["POST"],"semantics":"unsafe"}}`)
	e.submit("t2", "a", "v1", nil, cluster.RetryPolicy{})
	agent, _ := e.node.FSM().Agent("a", "v1")
	for id, want := range map[string][]string{"t1": {"pay", "docs/search"}, "t2": {"docs/search"}} {
		task, _ := e.node.FSM().Task(id)
		if got := e.exec.withApprovals(task, agent).Manifest.Approve; strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s: approve %v, want %v", id, got, want)
		}
	}
	if len(agent.Manifest.Approve) != 0 {
		t.Error("withApprovals changed the stored agent")
	}
	if _, err := plugins.ParseDefinition([]byte(`{"name":"x","kind":"http","approval":"yes","http":{"base_url":"http://h","semantics":"unsafe"}}`)); !errors.Is(err, plugins.ErrInvalidDefinition) {
		t.Errorf("approval yes: %v", err)
	}
}
