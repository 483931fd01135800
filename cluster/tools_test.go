package cluster

import (
	"encoding/json"
	"errors"
	"testing"
)

func putTool(h *harness, name, spec string, now int64) ToolDef {
	h.t.Helper()
	return h.ok(&PutTool{Tool: ToolDef{Name: name, Kind: "http", Spec: json.RawMessage(spec)}, Now: now}).(ToolDef)
}

// TestToolVersions: a push with changed content is the next version, the
// same content again is the newest version unchanged, and reverting to an
// older content is a new version too (the newest is what runs). Removing a
// name hides it from "latest" but keeps its versions; pushing again brings
// it back as the next version.
func TestToolVersions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	a := `{"kind":"http","name":"pay","v":1}`
	b := `{"kind":"http","name":"pay","v":2}`
	v1 := putTool(h, "pay", a, 1)
	if v1.Version != 1 || len(v1.Digest) != 64 || v1.CreatedAt != 1 {
		t.Fatalf("first push = %+v", v1)
	}
	if again := putTool(h, "pay", a, 2); again.Version != 1 || again.CreatedAt != 1 {
		t.Fatalf("same content again = %+v, want version 1 unchanged", again)
	}
	if v2 := putTool(h, "pay", b, 3); v2.Version != 2 {
		t.Fatalf("changed content = version %d, want 2", v2.Version)
	}
	if v3 := putTool(h, "pay", a, 4); v3.Version != 3 || v3.Digest != v1.Digest {
		t.Fatalf("reverted content = %+v, want version 3 with version 1's digest", v3)
	}
	if d, err := h.fsm.Tool("pay", 0); err != nil || d.Version != 3 {
		t.Fatalf("latest = %+v, %v", d, err)
	}
	if d, err := h.fsm.Tool("pay", 2); err != nil || string(d.Spec) != b {
		t.Fatalf("version 2 = %+v, %v", d, err)
	}
	if _, err := h.fsm.Tool("pay", 9); !errors.Is(err, ErrUnknownTool) {
		t.Fatalf("version 9: %v, want ErrUnknownTool", err)
	}

	h.ok(&RemoveTool{Name: "pay", Now: 5})
	if _, err := h.fsm.Tool("pay", 0); !errors.Is(err, ErrUnknownTool) {
		t.Fatalf("latest after rm: %v, want ErrUnknownTool", err)
	}
	if d, err := h.fsm.Tool("pay", 3); err != nil || d.Version != 3 {
		t.Fatalf("a pinned version after rm = %+v, %v", d, err)
	}
	if ts, _ := h.fsm.Tools(); len(ts) != 0 {
		t.Fatalf("list after rm = %+v", ts)
	}
	if err, _ := h.apply(&RemoveTool{Name: "pay", Now: 6}).(error); !errors.Is(err, ErrUnknownTool) {
		t.Fatalf("second rm: %v, want ErrUnknownTool", err)
	}
	if v4 := putTool(h, "pay", a, 7); v4.Version != 4 {
		t.Fatalf("push after rm = version %d, want 4", v4.Version)
	}
	vs, removed, err := h.fsm.ToolVersions("pay")
	if err != nil || removed || len(vs) != 4 || vs[0].Version != 1 || vs[3].Version != 4 {
		t.Fatalf("versions = %+v removed=%v %v", vs, removed, err)
	}
}

// TestSubmitPinsToolVersions: a task records the newest version of each
// declared tool its agent names, and keeps it when the tool changes later;
// built-in names (not declared) are not pinned.
func TestSubmitPinsToolVersions(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	putTool(h, "pay", `{"kind":"http","name":"pay","v":1}`, 1)
	h.ok(&PutAgent{Agent: Agent{Name: "doc", Version: "v1", Manifest: AgentManifest{Tools: []string{"http", "pay"}}}, Module: []byte("m"), Now: 1})
	first := h.submit("t1", RetryPolicy{}, 2)
	putTool(h, "pay", `{"kind":"http","name":"pay","v":2}`, 3)
	second := h.submit("t2", RetryPolicy{}, 4)
	if len(first.Tools) != 1 || first.Tools["pay"] != 1 {
		t.Fatalf("first task pins %v, want pay:1", first.Tools)
	}
	if second.Tools["pay"] != 2 {
		t.Fatalf("second task pins %v, want pay:2", second.Tools)
	}
	if got := h.task("t1").Tools["pay"]; got != 1 {
		t.Fatalf("first task's pin changed to %d", got)
	}
	// A dead letter retried after the tool was fixed runs the fix.
	h.finish("t1", 0, nil, true, 5)
	h.ok(&RetryDLQ{TaskID: "t1", Now: 6})
	if got := h.task("t1").Tools["pay"]; got != 2 {
		t.Fatalf("retried dead letter pins pay:%d, want the newest, 2", got)
	}
}

// TestSubmitPinsMCPServers: an agent's "<server>/<tool>" names pin the
// declared MCP server <server>, once however many of its tools are named;
// a declared tool of another kind is not a server, and is not pinned.
func TestSubmitPinsMCPServers(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.ok(&PutTool{Tool: ToolDef{Name: "docs", Kind: "mcp", Spec: json.RawMessage(`{"kind":"mcp","name":"docs","v":1}`)}, Now: 1})
	h.ok(&PutTool{Tool: ToolDef{Name: "docs", Kind: "mcp", Spec: json.RawMessage(`{"kind":"mcp","name":"docs","v":2}`)}, Now: 1})
	putTool(h, "pay", `{"kind":"http","name":"pay"}`, 1)
	h.ok(&PutAgent{Agent: Agent{Name: "doc", Version: "v1", Manifest: AgentManifest{
		Tools: []string{"docs/search", "docs/fetch", "pay/x", "web/echo"}}}, Module: []byte("m"), Now: 1})
	task := h.submit("t1", RetryPolicy{}, 2)
	if len(task.Tools) != 1 || task.Tools["docs"] != 2 {
		t.Fatalf("task pins %v, want docs:2 only", task.Tools)
	}
}

func TestPutToolValidate(t *testing.T) {
	t.Parallel()
	for name, c := range map[string]*PutTool{
		"no name":     {Tool: ToolDef{Kind: "http", Spec: json.RawMessage(`{}`)}},
		"nul in name": {Tool: ToolDef{Name: "a\x00b", Kind: "http", Spec: json.RawMessage(`{}`)}},
		"slash name":  {Tool: ToolDef{Name: "a/b", Kind: "http", Spec: json.RawMessage(`{}`)}},
		"no kind":     {Tool: ToolDef{Name: "x", Spec: json.RawMessage(`{}`)}},
		"not object":  {Tool: ToolDef{Name: "x", Kind: "http", Spec: json.RawMessage(`[1]`)}},
		"bad json":    {Tool: ToolDef{Name: "x", Kind: "http", Spec: json.RawMessage(`{`)}},
		"too large":   {Tool: ToolDef{Name: "x", Kind: "http", Spec: json.RawMessage(`{"a":"` + string(make([]byte, MaxToolSpecBytes)) + `"}`)}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrInvalidCmd) && !errors.Is(err, ErrTooLarge) {
			t.Errorf("%s: Validate = %v", name, err)
		}
	}
}
