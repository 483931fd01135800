package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/orloj/orloj/plugins"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*Config)
		field  string
	}{
		{"defaults are valid", func(*Config) {}, ""},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "DataDir"},
		{"api addr without port", func(c *Config) { c.APIAddr = "localhost" }, "APIAddr"},
		{"raft addr garbage", func(c *Config) { c.RaftAddr = "::::" }, "RaftAddr"},
		{"join not an address", func(c *Config) { c.Join = "ftp://x" }, "Join"},
		{"join a URL", func(c *Config) { c.Join = "http://127.0.0.1:7071" }, "Join"},
		{"join token with a space", func(c *Config) { c.JoinToken = "a b" }, "JoinToken"},
		{"no workers", func(c *Config) { c.Workers = 0 }, "Workers"},
		{"tiny lease", func(c *Config) { c.LeaseTTL = time.Millisecond }, "LeaseTTL"},
		{"wildcard host", func(c *Config) { c.HTTPAllow = []string{"*"} }, "HTTPAllow"},
		{"model url without model", func(c *Config) { c.ModelURL = "http://127.0.0.1:1/v1" }, "Model"},
		{"model url not http", func(c *Config) { c.ModelURL, c.Model = "file:///x", "m" }, "ModelURL"},
		{"webhook not a url", func(c *Config) { c.DLQWebhook = "hooks.example.com" }, "DLQWebhook"},
		{"token with a space", func(c *Config) { c.Token = "a b" }, "Token"},
		{"no module size", func(c *Config) { c.MaxModuleBytes = 0 }, "MaxModuleBytes"},
		{"an unsafe http tool", func(c *Config) { c.HTTPTools = []HTTPTool{{"payments", plugins.Unsafe}, {"lookups", plugins.ReadOnly}} }, ""},
		{"an http tool named http", func(c *Config) { c.HTTPTools = []HTTPTool{{"http", plugins.Unsafe}} }, "HTTPTools"},
		{"two http tools of one name", func(c *Config) { c.HTTPTools = []HTTPTool{{"pay", plugins.Unsafe}, {"pay", plugins.Idempotent}} }, "HTTPTools"},
		{"an http tool that reconciles", func(c *Config) { c.HTTPTools = []HTTPTool{{"pay", plugins.Reconcile}} }, "HTTPTools"},
		{"an http tool of unknown semantics", func(c *Config) { c.HTTPTools = []HTTPTool{{"pay", "careful"}} }, "HTTPTools"},
		{"negative batch concurrency", func(c *Config) { c.BatchConcurrency = -1 }, "BatchConcurrency"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tt.field || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("err = %v, want a ConfigError naming %s", err, tt.field)
			}
		})
	}
}

// TestDaemonTokenAndHealth: the first start writes a random token with mode
// 0600 and a restart reuses it; the node answers /healthz and
// /readyz; Stop is safe twice and before Start.
func TestDaemonTokenAndHealth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	d := startDaemon(t, &cfg)
	tok := d.Token()
	st, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || len(tok) < 32 {
		t.Fatalf("token file mode %v, token %q", st.Mode().Perm(), tok)
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + d.APIAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
	}
	if err := d.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(time.Second); err != nil {
		t.Fatalf("second Stop: %v", err)
	}

	cfg.RaftAddr = freeAddr(t)
	d2 := startDaemon(t, &cfg)
	if d2.Token() != tok {
		t.Fatalf("restart made a new token %q, want %q", d2.Token(), tok)
	}

	never, err := New(testConfig(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	if err := never.Stop(time.Second); err != nil {
		t.Fatalf("Stop before Start: %v", err)
	}
	if err := never.Start(); err == nil {
		t.Fatal("Start after Stop succeeded")
	}
}

// TestDaemonRefusesTakenPort: a taken API port fails Start, and the Raft
// port it would have used is free again afterwards.
func TestDaemonRefusesTakenPort(t *testing.T) {
	t.Parallel()
	taken := httptest.NewServer(http.NotFoundHandler())
	defer taken.Close()
	cfg := testConfig(t, t.TempDir())
	cfg.APIAddr = strings.TrimPrefix(taken.URL, "http://")
	d, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err == nil || !strings.Contains(err.Error(), "api listener") {
		t.Fatalf("Start = %v, want an api listener error", err)
	}
	cfg.APIAddr = "127.0.0.1:0"
	startDaemon(t, &cfg) // same data dir and Raft port
}

// A node that learns it was removed stops, and will not start again on its
// old data: it must come back fresh (wiped data dir, --join).
func TestDaemonStopsWhenRemoved(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir)
	d := startDaemon(t, &cfg)
	// Wait until the node has recorded itself, as it does on start.
	deadline := time.After(10 * time.Second)
	for {
		ch := d.Node().FSM().Changed()
		if m, ok := d.Node().FSM().Member(cfg.NodeID); ok && m.APIAddr == d.APIAddr() {
			break
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatal("the node did not record its member entry")
		}
	}
	m, _ := d.Node().FSM().Member(cfg.NodeID)
	m.Removed = true
	apply(t, d.Node(), &cluster.SetMember{Member: m, Now: time.Now().UnixNano()})
	select {
	case err := <-d.Err():
		if !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), "wipe") {
			t.Fatalf("daemon error = %v; want ErrRemoved saying what to do", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a removed node kept running")
	}
	if err := d.Stop(time.Second); err != nil {
		t.Fatal(err)
	}
	again, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(); !errors.Is(err, ErrRemoved) {
		again.Stop(0)
		t.Fatalf("restart of a removed node: %v; want ErrRemoved", err)
	}
}

// TestDaemonKVTool: through a started daemon (its own tools, forwarder and
// outbox), a task puts and reads a kv key and emits a kv put; both are
// visible after it succeeds, and the daemon still serves.
func TestDaemonKVTool(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, t.TempDir())
	d := startDaemon(t, &cfg)
	n := d.Node()
	ctx := context.Background()
	wasm, err := os.ReadFile(stepsAgent(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cluster.ProposeAgent(ctx, n, cluster.Agent{Name: "steps", Version: "v1",
		Manifest: cluster.AgentManifest{Tools: []string{"kv"}, Timeout: 20 * time.Second}}, wasm, time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	kv := func(params string) map[string]any {
		return map[string]any{"tool": "kv", "params": json.RawMessage(params)}
	}
	in, _ := json.Marshal(map[string]any{
		"steps": []any{kv(`{"op":"put","key":"k","value":1}`), kv(`{"op":"get","key":"k"}`)},
		"emit":  []any{kv(`{"op":"put","key":"fx","value":2}`)},
	})
	apply(t, n, &cluster.SubmitTask{Task: cluster.Task{ID: "kv", Agent: "steps", Version: "v1", Input: in,
		Policy: cluster.RetryPolicy{MaxAttempts: 2, Base: time.Millisecond}}, Now: time.Now().UnixNano()})
	deadline := time.After(2 * time.Minute)
	for {
		changed := n.FSM().Changed()
		tk, _ := n.FSM().Task("kv")
		eff, _ := n.FSM().Outbox("kv")
		if tk.State == cluster.StateDeadLetter {
			t.Fatalf("task dead-lettered: %+v", tk.Error)
		}
		if tk.State == cluster.StateSucceeded && len(eff) == 1 && eff[0].Done {
			if eff[0].Error != "" || !strings.Contains(string(tk.Output), `"found":true`) {
				t.Fatalf("output %s, effect %+v", tk.Output, eff[0])
			}
			break
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("task %s, effects %+v", tk.State, eff)
		}
	}
	for key, want := range map[string]string{"k": "1", "fx": "2"} {
		if v, ok, _ := n.FSM().KV(key); !ok || string(v) != want {
			t.Fatalf("kv %s = %s %v, want %s", key, v, ok, want)
		}
	}
	select {
	case err := <-d.Err():
		t.Fatalf("daemon stopped serving: %v", err)
	default:
	}
}

func TestParseHTTPTool(t *testing.T) {
	t.Parallel()
	if got, err := ParseHTTPTool("payments:unsafe"); err != nil || got != (HTTPTool{"payments", plugins.Unsafe}) {
		t.Errorf("payments:unsafe = %+v, %v", got, err)
	}
	for _, bad := range []string{"payments", ":unsafe", "payments:", ""} {
		if _, err := ParseHTTPTool(bad); err == nil || !strings.Contains(err.Error(), "NAME:SEMANTICS") {
			t.Errorf("%q: %v, want a NAME:SEMANTICS error", bad, err)
		}
	}
}
