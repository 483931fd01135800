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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

const exit3Module = "../sandbox/testdata/exit3.wasm" // exits 3: a permanent failure

func pushAndSubmit(t *testing.T, e *env, taskID string) {
	t.Helper()
	wasm, err := os.ReadFile(exit3Module)
	if err != nil {
		t.Fatal(err)
	}
	e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "exit3", Version: "v1"}, Module: wasm, Now: time.Now().UnixNano()})
	e.apply(&cluster.SubmitTask{Task: cluster.Task{ID: taskID, Agent: "exit3", Version: "v1"}, Now: time.Now().UnixNano()})
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

func newReceiver(t *testing.T, failFirst int) *webhook {
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

// TestDLQWebhookBackoffAndMemory drives the webhook pass by pass with a
// fake clock: a failed delivery waits out its backoff, a delivered notice is
// not sent again by a restarted notifier, and a task that dead-letters again
// after a retry gets a new notice.
func TestDLQWebhookBackoffAndMemory(t *testing.T) {
	t.Parallel()
	hook := newReceiver(t, 1)
	e := newEnv(t, nil)
	pushAndSubmit(t, e, "p")
	e.wait("p", 30*time.Second, cluster.StateDeadLetter)

	clock := &fakeClock{now: time.Now()}
	cfg := WebhookConfig{URL: hook.srv.URL, Policy: cluster.RetryPolicy{Base: time.Minute, Factor: 2, Cap: time.Minute},
		StateFile: filepath.Join(e.dir, "dlq-notified.json"), Clock: clock.Now, Logger: testLogger(t)}
	ctx := context.Background()
	n := newWebhookT(t, e, cfg)

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
	newWebhookT(t, e, cfg).pass(ctx) // a restart remembers
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

func newWebhookT(t *testing.T, e *env, cfg WebhookConfig) *Webhook {
	t.Helper()
	w, err := NewDLQWebhook(e.node, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestWebhookConfigRefused: a URL that is not absolute http(s), or a
// backoff without a base, is refused at construction.
func TestWebhookConfigRefused(t *testing.T) {
	t.Parallel()
	reg, _ := plugins.NewRegistry()
	e := newIdleEnv(t, reg)
	ok := cluster.RetryPolicy{Base: time.Second, Factor: 2, Cap: time.Minute}
	for _, cfg := range []WebhookConfig{
		{URL: "hooks.example.com", Policy: ok},
		{URL: "ftp://hooks.example.com/x", Policy: ok},
		{URL: "http://127.0.0.1:1/x"},
		{URL: "http://127.0.0.1:1/x", Policy: cluster.RetryPolicy{Base: time.Minute, Cap: time.Second}},
	} {
		if _, err := NewDLQWebhook(e.node, cfg); err == nil {
			t.Errorf("NewDLQWebhook(%+v) accepted", cfg)
		}
	}
	if _, err := NewDLQWebhook(nil, WebhookConfig{URL: "http://127.0.0.1:1/x", Policy: ok}); !errors.Is(err, ErrNilDependency) {
		t.Errorf("nil node: %v, want ErrNilDependency", err)
	}
}
