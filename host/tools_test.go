package host

import (
	"encoding/json"
	"errors"
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
	e.apply(&cluster.PutTool{Tool: cluster.ToolDef{Name: "pay", Kind: "wasm", Spec: json.RawMessage(`{"kind":"wasm","name":"pay","wasm":{}}`)}, Now: 9})
	_, err = e.exec.toolsFor(cluster.Task{ID: "t4", Tools: map[string]uint64{"pay": 3}}, agent)
	if !errors.Is(err, plugins.ErrKindNotSupported) || toolsError(err) != cluster.ClassTransient {
		t.Fatalf("unsupported kind: %v (%s)", err, toolsError(err))
	}
}
