package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// A declared wasm tool through a started node: the plugin module is
// uploaded with its definition, the node fills the secret into the
// plugin's request, a new version is pushed while the node runs and the
// next task uses it, and a module that is not a plugin is refused.
func TestDeclaredWASMToolThroughServe(t *testing.T) {
	t.Parallel()
	const secret = "xoxb-e2e-SECRET-4711"
	var mu sync.Mutex
	var auths, keys []string
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auths, keys = append(auths, r.Header.Get("Authorization")), append(keys, r.Header.Get("Idempotency-Key"))
		mu.Unlock()
		fmt.Fprintf(w, `{"ok":true,"channel":"C1","ts":"1.1","echo":%q}`, r.Header.Get("Authorization"))
	}))
	t.Cleanup(slack.Close)
	n := startNode(t, withEnv("ORLOJ_SECRET_SLACK_TOKEN="+secret))

	def := filepath.Join(t.TempDir(), "slack.json")
	write := func(allow string) {
		doc := fmt.Sprintf(`{"name":"slack","kind":"wasm","wasm":{"allow_hosts":[%q]}}`, allow)
		if err := os.WriteFile(def, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("127.0.0.1")
	n.fails(1, []string{"not a tool plugin"}, "tool", "push", def, "--module", agent("hello"))
	out := n.ok("tool", "push", def, "--module", agent("slack-plugin"))
	if !strings.Contains(out, "version 1") || !strings.Contains(out, "wasm") {
		t.Fatalf("push printed %q", out)
	}
	n.ok("agent", "push", agent("slackpost"), "--name", "slackpost", "--tools", "slack")
	input := fmt.Sprintf(`{"api_url":%q,"text":"hello"}`, slack.URL)
	id := strings.TrimSpace(n.ok("task", "submit", "slackpost", "--input", input))
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var res struct {
		OK       bool
		TS, Echo string
	}
	if err := json.Unmarshal(tk.Output, &res); err != nil || !res.OK || res.TS != "1.1" {
		t.Fatalf("output %s (%v)", tk.Output, err)
	}
	if strings.Contains(string(tk.Output), secret) {
		t.Errorf("the output holds the secret: %s", tk.Output)
	}
	mu.Lock()
	if len(auths) != 1 || auths[0] != "Bearer "+secret || keys[0] == "" {
		t.Errorf("the service saw %v, keys %v", auths, keys)
	}
	mu.Unlock()

	// Version 2 allows another host only: the next task, on the same
	// running node, is refused before anything is sent.
	write("slack.com")
	if out := n.ok("tool", "push", def, "--module", agent("slack-plugin")); !strings.Contains(out, "version 2") {
		t.Fatalf("second push printed %q", out)
	}
	id2 := strings.TrimSpace(n.ok("task", "submit", "slackpost", "--input", input, "--max-attempts", "1"))
	n.fails(1, []string{"dead_letter"}, "task", "wait", id2, "--timeout", "2m")
	var calls []struct{ Status string }
	n.okJSON(&calls, "task", "calls", id2)
	if len(calls) != 1 || calls[0].Status != "permission_denied" {
		t.Errorf("calls of the task on version 2: %+v, want one permission_denied", calls)
	}
	mu.Lock()
	if len(auths) != 1 {
		t.Errorf("the service was reached %d times, want 1", len(auths))
	}
	mu.Unlock()
	if strings.Contains(n.log.String(), secret) {
		t.Error("the node's log holds the secret")
	}
}
