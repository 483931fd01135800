package host

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

func pushToolDef(t *testing.T, e *env, name, sem string) {
	t.Helper()
	d, err := plugins.ParseDefinition([]byte(`{"name":"` + name + `","kind":"http","http":{"base_url":"http://127.0.0.1:1","methods":["POST"],"semantics":"` + sem + `"}}`))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := d.Canonical()
	if err != nil {
		t.Fatal(err)
	}
	e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: name, Kind: "http", Spec: spec}, Now: time.Now().UnixNano()})
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
	// A version that cannot be read is permanent; one this node cannot
	// build yet (an unsupported kind) is transient.
	_, err = e.exec.toolsFor(cluster.Task{ID: "t3", Tools: map[string]uint64{"pay": 9}}, agent)
	if !errors.Is(err, cluster.ErrUnknownTool) || toolsError(err) != cluster.ClassPermanent {
		t.Fatalf("missing version: %v (%s)", err, toolsError(err))
	}
	e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: "pay", Kind: "mcp", Spec: json.RawMessage(`{"kind":"mcp","name":"pay","mcp":{"url":"http://m"}}`)}, Now: 9})
	_, err = e.exec.toolsFor(cluster.Task{ID: "t4", Tools: map[string]uint64{"pay": 3}}, agent)
	if !errors.Is(err, plugins.ErrKindNotSupported) || toolsError(err) != cluster.ClassTransient {
		t.Fatalf("unsupported kind: %v (%s)", err, toolsError(err))
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
