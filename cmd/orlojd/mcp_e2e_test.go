package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orloj/orloj/plugins/mcp/mcptest"
)

// startMCP serves an mcptest server over streamable HTTP on loopback.
func startMCP(t *testing.T) (*mcptest.Server, string) {
	t.Helper()
	ts := mcptest.New()
	hs := httptest.NewServer(ts.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(ts.Close) // first: releases a held call
	return ts, hs.URL
}

var (
	stdioServerOnce sync.Once
	stdioServer     string
	stdioServerErr  error
)

// stdioServerBinary builds plugins/mcp/testdata/stdioserver once.
func stdioServerBinary(t *testing.T) string {
	t.Helper()
	stdioServerOnce.Do(func() {
		stdioServer = filepath.Join(binDir, "mcp-stdioserver")
		out, err := exec.Command("go", "build", "-o", stdioServer, "../../plugins/mcp/testdata/stdioserver").CombinedOutput()
		if err != nil {
			stdioServerErr = fmt.Errorf("build stdioserver: %v\n%s", err, out)
		}
	})
	if stdioServerErr != nil {
		t.Fatal(stdioServerErr)
	}
	return stdioServer
}

// mcpConfig writes a config file whose mcp_servers is servers.
func mcpConfig(t *testing.T, servers string) nodeOpt {
	file := filepath.Join(t.TempDir(), "orlojd.json")
	if err := os.WriteFile(file, []byte(`{"mcp_servers": `+servers+`}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return withArgs("--config", file)
}

type mcpOutput struct {
	Content []struct {
		Type, Text string
	} `json:"content"`
	StructuredContent map[string]any `json:"structuredContent"`
	IsError           bool           `json:"isError"`
}

// An agent calls tools of an HTTP and of a stdio MCP server, by
// SERVER/TOOL, each call carrying its call ID as the idempotency key.
func TestMCPCallThroughNode(t *testing.T) {
	t.Parallel()
	needBinary(t)
	_, url := startMCP(t)
	n := startNode(t, mcpConfig(t, fmt.Sprintf(`[{"name": "web", "url": %q}, {"name": "local", "command": %q, "timeout": "20s"}]`,
		url, stdioServerBinary(t))))
	n.ok("agent", "push", agent("mcpcall"), "--name", "mcpcall", "--tools", "web/echo,local/echo,local/fail")
	for _, tool := range []string{"web/echo", "local/echo"} {
		id := strings.TrimSpace(n.ok("task", "submit", "mcpcall", "--input", fmt.Sprintf(`{"tool": %q, "args": {"text": "hi"}}`, tool)))
		n.ok("task", "wait", id, "--timeout", "1m")
		var tk taskJSON
		n.okJSON(&tk, "task", "get", id)
		var out mcpOutput
		if err := json.Unmarshal(tk.Output, &out); err != nil || len(out.Content) != 1 || out.Content[0].Text != "hi" {
			t.Fatalf("%s: output %s (%v)", tool, tk.Output, err)
		}
		var calls []callJSON
		n.okJSON(&calls, "task", "calls", id)
		if len(calls) != 1 || out.StructuredContent["key"] != calls[0].ID {
			t.Errorf("%s: the server saw key %v; the call is %+v", tool, out.StructuredContent["key"], calls)
		}
		if tool == "web/echo" && out.StructuredContent["header"] != calls[0].ID {
			t.Errorf("web/echo: Idempotency-Key %v, want the call ID", out.StructuredContent["header"])
		}
	}
	// An isError result is a tool error: the task dead-letters with its text.
	id := strings.TrimSpace(n.ok("task", "submit", "mcpcall", "--input", `{"tool": "local/fail", "args": {}}`))
	n.fails(1, []string{"dead_letter"}, "task", "wait", id, "--timeout", "1m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	if tk.Error == nil || !strings.Contains(tk.Error.StderrTail, "tool_error: local/fail: card declined") {
		t.Errorf("error %+v, want the tool's text", tk.Error)
	}
}

// mcpKilledMidCall submits a call of tool, held by the server, SIGKILLs the
// node while the server holds it, and restarts the node. It returns the
// node, the task and the key the held call carried.
func mcpKilledMidCall(t *testing.T, ts *mcptest.Server, url, tool string, args string) (*node, string, string) {
	t.Helper()
	ts.Hold(tool)
	n := startNode(t, mcpConfig(t, fmt.Sprintf(`[{"name": "web", "url": %q}]`, url)))
	n.ok("agent", "push", agent("mcpcall"), "--name", "mcpcall", "--tools", "web/"+tool)
	id := strings.TrimSpace(n.ok("task", "submit", "mcpcall", "--input", fmt.Sprintf(`{"tool": "web/%s", "args": %s}`, tool, args)))
	var key string
	select {
	case key = <-ts.Arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("the call never reached the server")
	}
	if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
		t.Fatalf("exit %d after SIGKILL", code)
	}
	n.start()
	return n, id, key
}

// A non-idempotent MCP tool (destructiveHint) whose answer was lost with
// the node: the task dead-letters in_doubt, the call not sent again.
func TestMCPUnsafeCallInDoubt(t *testing.T) {
	t.Parallel()
	needBinary(t)
	ts, url := startMCP(t)
	n, id, _ := mcpKilledMidCall(t, ts, url, "charge", `{"amount": 5}`)
	n.fails(1, []string{"dead_letter"}, "task", "wait", id, "--timeout", "2m")
	var entry struct {
		Task  taskJSON
		Calls []struct {
			Tool      string `json:"tool"`
			HasResult bool   `json:"has_result"`
		}
	}
	n.okJSON(&entry, "dlq", "show", id)
	if entry.Task.Error == nil || entry.Task.Error.Class != "in_doubt" || len(entry.Calls) != 1 || entry.Calls[0].Tool != "web/charge" || entry.Calls[0].HasResult {
		t.Fatalf("dead letter %+v calls %+v; want in_doubt with the charge and no result", entry.Task.Error, entry.Calls)
	}
	if req, applied := ts.Counts("charge"); req != 1 || applied != 1 {
		t.Errorf("server saw %d charge calls, applied %d; want 1 and 1", req, applied)
	}
}

// An idempotent MCP tool (idempotentHint) whose answer was lost with the
// node: after the restart the call is sent again with the same key, and
// the server, deduping by it, applied it once.
func TestMCPIdempotentCallResent(t *testing.T) {
	t.Parallel()
	needBinary(t)
	ts, url := startMCP(t)
	n, id, key := mcpKilledMidCall(t, ts, url, "put", `{"k": "a", "v": "b"}`)
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var out mcpOutput
	if err := json.Unmarshal(tk.Output, &out); err != nil || out.StructuredContent["applied"] != float64(1) {
		t.Errorf("output %s (%v); want the first application's result", tk.Output, err)
	}
	if req, applied := ts.Counts("put"); req != 2 || applied != 1 {
		t.Errorf("server saw %d put calls and applied %d; want 2 and 1", req, applied)
	}
	if h := ts.Headers(); len(h) != 2 || h[0] != key || h[1] != key || key == "" {
		t.Errorf("Idempotency-Key headers %q; want the held call's key %q twice", h, key)
	}
}
