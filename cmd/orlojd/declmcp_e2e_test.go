package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDeclaredMCPServers, through `orlojd serve`: MCP servers pushed as
// declared tools (a URL server with a secret header, a stdio server the
// operator allows) serve an agent's SERVER/TOOL calls; a task keeps the
// server version it was submitted with after the server is pushed again;
// an agent naming an undeclared server is refused at push, and a server
// whose command the node does not allow fails the task with that reason.
func TestDeclaredMCPServers(t *testing.T) {
	t.Parallel()
	needBinary(t)
	a, urlA := startMCP(t)
	b, urlB := startMCP(t)
	stdio := stdioServerBinary(t)
	const secret = "mcp-secret-value-5c1f0e"
	n := startNode(t, withEnv("ORLOJ_SECRET_DOCS_TOKEN="+secret), withArgs("--mcp-commands", stdio))

	dir := t.TempDir()
	push := func(doc string) string {
		t.Helper()
		f := filepath.Join(dir, "tool.json")
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return n.ok("tool", "push", f)
	}
	push(fmt.Sprintf(`{"name":"web","kind":"mcp","mcp":{"url":%q,"headers":{"Authorization":{"secret":"docs-token","format":"Bearer %%s"}}}}`, urlA))
	push(fmt.Sprintf(`{"name":"local","kind":"mcp","mcp":{"command":%q,"timeout":"20s"}}`, stdio))
	// Pushed to the cluster, where some nodes may allow it; this one does not.
	push(`{"name":"other","kind":"mcp","mcp":{"command":"/bin/sh","args":["-c","echo ran > ran.txt"]}}`)
	n.fails(1, []string{`"nosuch/echo" is neither a built-in tool`}, "agent", "push", agent("mcpcall"), "--name", "mcpcall", "--tools", "web/echo,nosuch/echo")
	n.ok("agent", "push", agent("mcpcall"), "--name", "mcpcall", "--tools", "web/echo,local/echo,other/echo", "--max-attempts", "1")

	run := func(tool string) (taskJSON, mcpOutput) {
		t.Helper()
		id := strings.TrimSpace(n.ok("task", "submit", "mcpcall", "--input", fmt.Sprintf(`{"tool": %q, "args": {"text": "hi"}}`, tool)))
		n.cli("task", "wait", id, "--timeout", "1m")
		var tk taskJSON
		n.okJSON(&tk, "task", "get", id)
		var out mcpOutput
		_ = json.Unmarshal(tk.Output, &out)
		return tk, out
	}
	for _, tool := range []string{"web/echo", "local/echo"} {
		tk, out := run(tool)
		if tk.State != "succeeded" || len(out.Content) != 1 || out.Content[0].Text != "hi" {
			t.Fatalf("%s: task %+v, output %s", tool, tk, tk.Output)
		}
	}
	if got := a.Auth(); len(got) != 1 || got[0] != "Bearer "+secret {
		t.Errorf("the URL server saw Authorization %q, want the secret's", got)
	}
	var shown struct {
		Tool struct {
			Secrets []string `json:"secrets"`
		} `json:"tool"`
	}
	if n.okJSON(&shown, "tool", "show", "web"); len(shown.Tool.Secrets) != 1 || shown.Tool.Secrets[0] != "docs-token" {
		t.Errorf("tool show names secrets %v, want docs-token", shown.Tool.Secrets)
	}
	if out := n.ok("tool", "show", "web", "-o", "json"); strings.Contains(out, secret) {
		t.Errorf("tool show carries the secret's value: %s", out)
	}

	// A new version of "web" points at another server: new tasks use it.
	push(fmt.Sprintf(`{"name":"web","kind":"mcp","mcp":{"url":%q}}`, urlB))
	if tk, _ := run("web/echo"); tk.State != "succeeded" {
		t.Fatalf("web/echo on version 2: %+v", tk)
	}
	if ra, _ := a.Counts("echo"); ra != 1 {
		t.Errorf("version 1's server saw %d calls, want 1", ra)
	}
	if rb, _ := b.Counts("echo"); rb != 1 {
		t.Errorf("version 2's server saw %d calls, want 1", rb)
	}

	// A command this node's operator did not allow is not run.
	tk, _ := run("other/echo")
	if tk.State != "dead_letter" || tk.Error == nil || !strings.Contains(tk.Error.StderrTail, "not in this node's mcp_commands") {
		t.Fatalf("a command not allowed: %+v %+v", tk, tk.Error)
	}
	if _, err := os.Stat(filepath.Join(n.dir, "mcp", "declared", "other@1", "ran.txt")); err == nil {
		t.Fatal("the command ran")
	}
}
