package host

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
)

const exit3Module = "../sandbox/testdata/exit3.wasm" // exits 3: a permanent failure

func TestDaemonConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		change func(*DaemonConfig)
		field  string
	}{
		{"defaults are valid", func(*DaemonConfig) {}, ""},
		{"no data dir", func(c *DaemonConfig) { c.DataDir = "" }, "DataDir"},
		{"api addr without port", func(c *DaemonConfig) { c.APIAddr = "localhost" }, "APIAddr"},
		{"raft addr garbage", func(c *DaemonConfig) { c.RaftAddr = "::::" }, "RaftAddr"},
		{"join not an address", func(c *DaemonConfig) { c.Join = "ftp://x" }, "Join"},
		{"join a URL", func(c *DaemonConfig) { c.Join = "http://127.0.0.1:7071" }, "Join"},
		{"join token with a space", func(c *DaemonConfig) { c.JoinToken = "a b" }, "JoinToken"},
		{"no workers", func(c *DaemonConfig) { c.Workers = 0 }, "Workers"},
		{"tiny lease", func(c *DaemonConfig) { c.LeaseTTL = time.Millisecond }, "LeaseTTL"},
		{"wildcard host", func(c *DaemonConfig) { c.HTTPAllow = []string{"*"} }, "HTTPAllow"},
		{"model url without model", func(c *DaemonConfig) { c.ModelURL = "http://127.0.0.1:1/v1" }, "Model"},
		{"model url not http", func(c *DaemonConfig) { c.ModelURL, c.Model = "file:///x", "m" }, "ModelURL"},
		{"webhook not a url", func(c *DaemonConfig) { c.DLQWebhook = "hooks.example.com" }, "DLQWebhook"},
		{"token with a space", func(c *DaemonConfig) { c.Token = "a b" }, "Token"},
		{"no module size", func(c *DaemonConfig) { c.MaxModuleBytes = 0 }, "MaxModuleBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultDaemonConfig()
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

func testDaemonConfig(t *testing.T, dir string) DaemonConfig {
	cfg := DefaultDaemonConfig()
	cfg.DataDir, cfg.APIAddr, cfg.RaftAddr = dir, "127.0.0.1:0", freeAddr(t)
	cfg.NodeID, cfg.Workers, cfg.LeaseTTL = "d1", 1, 2*time.Second
	cfg.CacheDir, cfg.Logger = testCacheDir(), testLogger(t)
	return cfg
}

func startDaemon(t *testing.T, cfg DaemonConfig) *Daemon {
	t.Helper()
	d, err := NewDaemon(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(time.Second) })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Node().WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func apply(t *testing.T, n *cluster.Node, c cluster.Command) any {
	t.Helper()
	r, err := n.Apply(context.Background(), c)
	if err != nil {
		t.Fatalf("apply %T: %v", c, err)
	}
	return r
}

func pushAndSubmit(t *testing.T, n *cluster.Node, taskID string) {
	t.Helper()
	wasm, err := os.ReadFile(exit3Module)
	if err != nil {
		t.Fatal(err)
	}
	apply(t, n, &cluster.PutAgent{Agent: cluster.Agent{Name: "exit3", Version: "v1"}, Module: wasm, Now: time.Now().UnixNano()})
	apply(t, n, &cluster.SubmitTask{Task: cluster.Task{ID: taskID, Agent: "exit3", Version: "v1"}, Now: time.Now().UnixNano()})
}

// TestDaemonTokenAndHealth: the first start writes a random token with mode
// 0600 and a restart reuses it; without an API factory the node still
// answers /healthz and /readyz; Stop is safe twice and before Start.
func TestDaemonTokenAndHealth(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := testDaemonConfig(t, dir)
	d := startDaemon(t, cfg)
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
	d2 := startDaemon(t, cfg)
	if d2.Token() != tok {
		t.Fatalf("restart made a new token %q, want %q", d2.Token(), tok)
	}

	never, err := NewDaemon(testDaemonConfig(t, t.TempDir()))
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
	cfg := testDaemonConfig(t, t.TempDir())
	cfg.APIAddr = strings.TrimPrefix(taken.URL, "http://")
	d, err := NewDaemon(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err == nil || !strings.Contains(err.Error(), "api listener") {
		t.Fatalf("Start = %v, want an api listener error", err)
	}
	cfg.APIAddr = "127.0.0.1:0"
	startDaemon(t, cfg) // same data dir and Raft port
}

// webhook is a receiver that fails its first n deliveries.
type webhook struct {
	srv      *httptest.Server
	failures atomic.Int32
	mu       sync.Mutex
	got      []DLQNotice
	keys     []string
	ok       chan DLQNotice
}

func newWebhook(t *testing.T, failFirst int) *webhook {
	w := &webhook{ok: make(chan DLQNotice, 16)}
	w.failures.Store(int32(failFirst))
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var n DLQNotice
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("webhook body %s: %v", b, err)
		}
		w.mu.Lock()
		w.got = append(w.got, n)
		w.keys = append(w.keys, r.Header.Get("Idempotency-Key"))
		w.mu.Unlock()
		if w.failures.Add(-1) >= 0 {
			http.Error(rw, "try later", http.StatusBadGateway)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
		w.ok <- n
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) requests() ([]DLQNotice, []string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]DLQNotice(nil), w.got...), append([]string(nil), w.keys...)
}

// TestDaemonDLQWebhook: a task that dead-letters reaches the webhook through
// a daemon, after the receiver's failures are retried.
func TestDaemonDLQWebhook(t *testing.T) {
	t.Parallel()
	hook := newWebhook(t, 2)
	cfg := testDaemonConfig(t, t.TempDir())
	cfg.DLQWebhook, cfg.WebhookBase, cfg.WebhookCap = hook.srv.URL, 10*time.Millisecond, 20*time.Millisecond
	d := startDaemon(t, cfg)
	pushAndSubmit(t, d.Node(), "poison-1")
	select {
	case n := <-hook.ok:
		if n.Event != "task.dead_letter" || n.TaskID != "poison-1" || n.Agent != "exit3" || n.Class != string(cluster.ClassPermanent) ||
			!strings.Contains(n.Message, "code 3") || n.Node != "d1" {
			t.Fatalf("notice = %+v", n)
		}
	case <-time.After(60 * time.Second):
		got, _ := hook.requests()
		t.Fatalf("no notice delivered; requests so far: %+v", got)
	}
	got, keys := hook.requests()
	if len(got) != 3 {
		t.Fatalf("%d requests, want 2 failures and 1 delivery", len(got))
	}
	for _, k := range keys {
		if k != keys[0] || k != got[0].Key || k == "" {
			t.Fatalf("idempotency keys %v (notice key %q): want one stable key", keys, got[0].Key)
		}
	}
}

// fakeClock is a settable clock for the notifier's backoff.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestDLQNotifierBackoffAndMemory drives the notifier pass by pass with a
// fake clock: a failed delivery waits out its backoff, a delivered notice is
// not sent again by a restarted notifier, and a task that dead-letters again
// after a retry gets a new notice.
func TestDLQNotifierBackoffAndMemory(t *testing.T) {
	t.Parallel()
	hook := newWebhook(t, 1)
	e := newEnv(t, nil)
	pushAndSubmit(t, e.node, "p")
	e.wait("p", 30*time.Second, cluster.StateDeadLetter)

	clock := &fakeClock{now: time.Now()}
	cfg := DefaultDaemonConfig()
	cfg.DataDir, cfg.DLQWebhook, cfg.Clock = e.dir, hook.srv.URL, clock.Now
	cfg.WebhookBase, cfg.WebhookCap = time.Minute, time.Minute
	ctx := context.Background()
	n := newDLQNotifier(e.node, cfg, testLogger(t))

	wait := n.pass(ctx) // fails: the receiver's first answer is 502
	if got, _ := hook.requests(); len(got) != 1 || wait > time.Minute {
		t.Fatalf("after the first pass: %d requests, next in %s", len(got), wait)
	}
	n.pass(ctx) // the backoff has not passed on the fake clock
	if got, _ := hook.requests(); len(got) != 1 {
		t.Fatalf("retried before its backoff: %d requests", len(got))
	}
	clock.Add(time.Minute + time.Second)
	n.pass(ctx)
	if got, _ := hook.requests(); len(got) != 2 || len(hook.ok) != 1 {
		t.Fatalf("after the backoff: %d requests, %d delivered", len(got), len(hook.ok))
	}
	n.pass(ctx)
	newDLQNotifier(e.node, cfg, testLogger(t)).pass(ctx) // a restart remembers
	if got, _ := hook.requests(); len(got) != 2 {
		t.Fatalf("a delivered notice was sent again: %d requests", len(got))
	}

	// Retried and dead again: a new entry into the DLQ, a new notice.
	e.apply(&cluster.RetryDLQ{TaskID: "p", Now: time.Now().UnixNano()})
	e.wait("p", 30*time.Second, cluster.StateDeadLetter)
	n.pass(ctx)
	got, keys := hook.requests()
	if len(got) != 3 || keys[2] == keys[1] || got[2].TaskID != "p" {
		t.Fatalf("after a second dead-lettering: requests %+v keys %v", got, keys)
	}
}

// A node that learns it was removed stops, and will not start again on its
// old data: it must come back fresh (wiped data dir, --join).
func TestDaemonStopsWhenRemoved(t *testing.T) {
	dir := t.TempDir()
	cfg := testDaemonConfig(t, dir)
	d := startDaemon(t, cfg)
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
	again, err := NewDaemon(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Start(); !errors.Is(err, ErrRemoved) {
		again.Stop(0)
		t.Fatalf("restart of a removed node: %v; want ErrRemoved", err)
	}
}
