package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestDeclaredToolSecretNeverRecorded, on a two-node cluster of `orlojd
// serve`: a declared http tool with a secret header, pushed as YAML on the
// leader, is seen by the follower; an agent pushed on the follower names
// it; a task calls it three ways (a success, a failure whose error body
// echoes the Authorization header, a method the definition forbids). The
// service saw the secret, and nothing else did: the secret's value is in no
// file of either data dir (Raft log and Badger included; the follower's
// secrets dir aside), no node log, no API answer and no CLI output, while
// the redaction marker that replaced it is (so the search can see).
func TestDeclaredToolSecretNeverRecorded(t *testing.T) {
	t.Parallel()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	secret := "sk-e2e-" + hex.EncodeToString(b)

	var mu sync.Mutex
	var auths []string
	svc := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		auth := r.Header.Get("Authorization")
		mu.Lock()
		auths = append(auths, auth)
		mu.Unlock()
		if strings.HasSuffix(r.URL.Path, "/fail") {
			// A service that puts what it was sent into its error.
			http.Error(w, "bad credentials: "+auth, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"ok":true,"saw":%q,"body":%q}`, auth, body)
	})

	const token = "e2e-shared-token-0123456789abcdef"
	n1 := startNode(t, withEnv("ORLOJ_TOKEN="+token, "ORLOJ_SECRET_SLACK_TOKEN="+secret))
	n2dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(n2dir, "secrets"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n2dir, "secrets", "slack-token"), []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n2 := startNode(t, func(n *node) { n.dir = n2dir }, withEnv("ORLOJ_TOKEN="+token),
		withArgs("--node-id", "n2", "--join", n1.raft, "--join-token-file", filepath.Join(n1.dir, "join-token")))

	var cliOut bytes.Buffer // every CLI answer, to search for the secret
	run := func(n *node, args ...string) string {
		t.Helper()
		out := n.ok(args...)
		cliOut.WriteString(out)
		return out
	}
	runJSON := func(n *node, out any, args ...string) {
		t.Helper()
		raw := run(n, append(args, "-o", "json")...)
		if err := json.Unmarshal([]byte(raw), out); err != nil {
			t.Fatalf("orlojd %s -o json: %v\n%s", strings.Join(args, " "), err, raw)
		}
	}

	def := filepath.Join(t.TempDir(), "slack.yaml")
	if err := os.WriteFile(def, []byte(`# a declared tool, in YAML
name: slack
kind: http
description: Post to the stub service.
http:
  base_url: `+svc.url+`/api
  methods: [POST]
  path_prefixes: [/chat.postMessage, /fail]
  headers:
    Content-Type: application/json
    Authorization: {secret: slack-token, format: "Bearer %s"}
  timeout: 5s
  semantics: idempotent
`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := run(n1, "tool", "push", def); !strings.Contains(out, "pushed tool slack version 1") || !strings.Contains(out, "secrets: slack-token") {
		t.Fatalf("tool push: %s", out)
	}
	if out := run(n1, "tool", "push", def); !strings.Contains(out, "version 1") {
		t.Fatalf("pushing the same definition again: %s, want version 1", out)
	}

	// The follower sees the definition (it applies the entry a moment later).
	var shown struct {
		Tool struct {
			Name       string          `json:"name"`
			Version    uint64          `json:"version"`
			Semantics  string          `json:"semantics"`
			Definition json.RawMessage `json:"definition"`
		} `json:"tool"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := n2.cli("tool", "show", "slack", "-o", "json")
		if r.code == 0 {
			cliOut.WriteString(r.stdout)
			if err := json.Unmarshal([]byte(r.stdout), &shown); err != nil {
				t.Fatal(err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the follower does not see the tool: %s", r)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, not synchronisation
	}
	if shown.Tool.Version != 1 || shown.Tool.Semantics != "idempotent" ||
		!strings.Contains(compact(shown.Tool.Definition), `"secret":"slack-token"`) {
		t.Fatalf("tool show on the follower: %+v %s", shown.Tool, shown.Tool.Definition)
	}
	if out := run(n2, "tool", "ls"); !strings.Contains(out, "slack") || !strings.Contains(out, "idempotent") {
		t.Fatalf("tool ls on the follower:\n%s", out)
	}

	// What is refused, with a message that says why.
	bad := filepath.Join(t.TempDir(), "bad.json")
	for doc, want := range map[string]string{
		`{"name":"http","kind":"http","http":{"base_url":"http://127.0.0.1:1","semantics":"unsafe"}}`:   "built-in tool",
		`{"name":"plug","kind":"wasm","wasm":{"module":"x.wasm"}}`:                                      "not a module digest",
		`{"name":"srv","kind":"mcp","mcp":{}}`:                                                          "set url",
		`{"name":"pay","kind":"http","http":{"base_url":"http://127.0.0.1:1","semantics":"reconcile"}}`: "status_url",
	} {
		if err := os.WriteFile(bad, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		n1.fails(1, []string{want}, "tool", "push", bad)
	}
	n2.fails(1, []string{`"nosuch" is neither a built-in tool`}, "agent", "push", agent("declared"), "--name", "declared", "--tools", "slack,nosuch")
	run(n2, "agent", "push", agent("declared"), "--name", "declared", "--tools", "slack", "--max-attempts", "2")

	in, _ := json.Marshal(map[string]any{"tool": "slack", "calls": []map[string]any{
		{"method": "POST", "path": "/chat.postMessage", "body": "hello"},
		{"method": "POST", "path": "/fail"},
		{"method": "GET", "path": "/chat.postMessage"},
		{"method": "POST", "path": "/chat.postMessage", "headers": map[string]string{"Authorization": "Bearer guess"}},
	}})
	id := strings.TrimSpace(run(n1, "task", "submit", "declared", "--input", string(in)))
	run(n1, "task", "wait", id, "--timeout", "2m")
	// The follower answers from its replica: wait there too, so it has
	// applied the end before it is read.
	run(n2, "task", "wait", id, "--timeout", "1m")
	var tk struct {
		taskJSON
		Tools map[string]uint64 `json:"tools"`
	}
	runJSON(n2, &tk, "task", "get", id)
	var outs []struct {
		Result struct {
			Status int    `json:"status"`
			Body   string `json:"body"`
		} `json:"result"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(tk.Output, &outs); err != nil || tk.State != "succeeded" || len(outs) != 4 {
		t.Fatalf("task = %+v, output %s (%v)", tk.taskJSON, tk.Output, err)
	}
	if tk.Tools["slack"] != 1 {
		t.Fatalf("the task pins tools %v, want slack:1", tk.Tools)
	}
	const marker = "[secret slack-token]"
	if outs[0].Result.Status != 200 || !strings.Contains(outs[0].Result.Body, `"saw":"Bearer `+marker+`"`) {
		t.Fatalf("call 1: %+v", outs[0])
	}
	if !strings.Contains(outs[1].Error, "401") || !strings.Contains(outs[1].Error, marker) {
		t.Fatalf("call 2 (the echoing failure): %+v", outs[1])
	}
	if !strings.Contains(outs[2].Error, `method "GET" is not allowed`) {
		t.Fatalf("call 3 (a forbidden method): %+v", outs[2])
	}
	if !strings.Contains(outs[3].Error, "set by the tool's definition") {
		t.Fatalf("call 4 (the agent's own Authorization): %+v", outs[3])
	}
	mu.Lock()
	saw := append([]string(nil), auths...)
	mu.Unlock()
	if len(saw) != 2 || saw[0] != "Bearer "+secret || saw[1] != "Bearer "+secret {
		t.Fatalf("the service saw Authorization %q, want the secret twice", saw)
	}

	// Everything a person or a program can read back.
	for _, n := range []*node{n1, n2} {
		run(n, "task", "get", id, "-o", "json")
		run(n, "task", "events", id, "-o", "json")
		run(n, "task", "calls", id, "-o", "json")
		run(n, "task", "ls", "-o", "json")
		run(n, "tool", "show", "slack@1", "-o", "json")
		run(n, "tool", "show", "slack")
		run(n, "agent", "show", "declared", "-o", "json")
	}
	// Removed on the follower (forwarded): new agent pushes may not name it;
	// the task's version stays readable.
	if out := run(n2, "tool", "rm", "slack"); !strings.Contains(out, "removed tool slack") {
		t.Fatalf("tool rm: %s", out)
	}
	n1.fails(1, []string{"was removed"}, "tool", "show", "slack")
	n1.fails(1, []string{`"slack" is neither a built-in tool`}, "agent", "push", agent("declared"), "--name", "declared2", "--tools", "slack")
	run(n1, "tool", "show", "slack@1")

	if !strings.Contains(cliOut.String(), marker) {
		t.Fatal("the redaction marker is in no CLI answer: the search below would prove nothing")
	}
	if strings.Contains(cliOut.String(), secret) {
		t.Fatalf("a CLI answer holds the secret:\n%s", cliOut.String())
	}
	for _, n := range []*node{n1, n2} {
		if strings.Contains(n.log.String(), secret) {
			t.Fatalf("the log of node %s holds the secret:\n%s", n.api, n.log)
		}
	}
	markerSeen := false
	for _, dir := range []string{n1.dir, n2.dir} {
		err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && path == filepath.Join(dir, "secrets") {
				return filepath.SkipDir // where the follower keeps it, on purpose
			}
			if !e.Type().IsRegular() {
				return nil
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s holds the secret", path)
			}
			markerSeen = markerSeen || bytes.Contains(data, []byte(marker))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if !markerSeen {
		t.Fatal("the redaction marker is in no data file: the search proves nothing")
	}
}
