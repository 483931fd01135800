package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pathCounter counts the requests per path it answers.
type pathCounter struct {
	url  string
	mu   sync.Mutex
	seen map[string]int
}

func startPathCounter(t *testing.T) *pathCounter {
	t.Helper()
	c := &pathCounter{seen: map[string]int{}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.url = "http://" + l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.seen[r.URL.Path]++
		c.mu.Unlock()
		fmt.Fprint(w, "ok")
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return c
}

func (c *pathCounter) count(path string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[path]
}

// waitingTask is the part of a task the wait tests read.
type waitingTask struct {
	taskJSON
	Lease *json.RawMessage `json:"lease"`
	Wait  *struct {
		Kind   string  `json:"kind"`
		Until  *string `json:"until"`
		Signal string  `json:"signal"`
	} `json:"wait"`
}

// awaitState polls the task (an outside view, as an operator's script
// would) until it is in state, and returns it.
func awaitState(t *testing.T, n *node, id, state string, timeout time.Duration) waitingTask {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var tk waitingTask
		n.okJSON(&tk, "task", "get", id)
		if tk.State == state {
			return tk
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s after %s, want %s", id, tk.State, timeout, state)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval for an outside view
	}
}

func submitWaiter(t *testing.T, n *node, in map[string]string) string {
	t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(n.ok("task", "submit", "waiter", "--input", string(b)))
}

func eventTypes(t *testing.T, n *node, id string) map[string]int {
	t.Helper()
	var evs []struct {
		Type string `json:"type"`
	}
	n.okJSON(&evs, "task", "events", id)
	out := map[string]int{}
	for _, e := range evs {
		out[e.Type]++
	}
	return out
}

// TestSleepThroughServe: a task calls a tool, sleeps 3 s and finishes.
// While it sleeps it is waiting, with no lease and no attempt used; after
// it wakes, the call before the sleep replays from the ledger (the service
// saw it once).
func TestSleepThroughServe(t *testing.T) {
	t.Parallel()
	svc := startPathCounter(t)
	n := startNode(t)
	n.ok("agent", "push", agent("waiter"), "--name", "waiter", "--tools", "http")
	start := time.Now()
	id := submitWaiter(t, n, map[string]string{"url": svc.url, "sleep": "3s"})

	tk := awaitState(t, n, id, "waiting", 30*time.Second)
	if tk.Lease != nil || tk.Wait == nil || tk.Wait.Kind != "sleep" || tk.Wait.Until == nil || tk.Attempts != 0 {
		t.Fatalf("waiting task: lease %v, wait %+v, attempts %d", tk.Lease, tk.Wait, tk.Attempts)
	}
	var leases []json.RawMessage
	n.okJSON(&leases, "lease", "ls")
	if len(leases) != 0 {
		t.Fatalf("leases while the task sleeps: %s", leases)
	}
	if got := svc.count("/before"); got != 1 {
		t.Fatalf("/before seen %d times before the sleep", got)
	}
	until, err := time.Parse(time.RFC3339Nano, *tk.Wait.Until)
	if err != nil || until.Before(start.Add(3*time.Second)) {
		t.Fatalf("wake time %v (%v), want at least 3 s after the submission at %v", until, err, start)
	}
	if out := n.ok("task", "get", id); !strings.Contains(out, "Waits for") || !strings.Contains(out, "sleep until") {
		t.Fatalf("task get of a waiting task:\n%s", out)
	}

	n.ok("task", "wait", id, "--timeout", "1m")
	if time.Now().Before(until) {
		t.Fatalf("the task finished at %v, before its wake time %v", time.Now(), until)
	}
	var done waitingTask
	n.okJSON(&done, "task", "get", id)
	if done.State != "succeeded" || done.Attempts != 1 || compact(done.Output) != `{"slept":"3s"}` {
		t.Fatalf("task %s after %d attempts, output %s", done.State, done.Attempts, done.Output)
	}
	if b, a := svc.count("/before"), svc.count("/after"); b != 1 || a != 1 {
		t.Fatalf("/before seen %d times, /after %d; want 1 and 1", b, a)
	}
	var calls []callJSON
	n.okJSON(&calls, "task", "calls", id)
	if o := outcomes(calls)["http"]; o["invoked"] != 2 || o["replayed"] != 1 {
		t.Fatalf("http calls %v; want 2 invoked, 1 replayed", o)
	}
	if ev := eventTypes(t, n, id); ev["waiting"] != 1 || ev["woken"] != 1 || ev["attempt_failed"] != 0 {
		t.Fatalf("journal events %v", ev)
	}
}

// TestSignalsThroughServe: a signal sent while the task is still asleep is
// kept and answers its await without waiting; a resent signal with the same
// key is a duplicate; a task waiting for a signal is woken by it; an await
// with a timeout and no signal times out, and the guest sees it.
func TestSignalsThroughServe(t *testing.T) {
	t.Parallel()
	svc := startPathCounter(t)
	n := startNode(t)
	n.ok("agent", "push", agent("waiter"), "--name", "waiter", "--tools", "http")

	// Before the await: sent while the task sleeps.
	early := submitWaiter(t, n, map[string]string{"url": svc.url, "sleep": "3s", "await": "approved"})
	awaitState(t, n, early, "waiting", 30*time.Second)
	payload := filepath.Join(t.TempDir(), "payload.json")
	if err := os.WriteFile(payload, []byte(`{"by": "ana", "amount": 12}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := n.ok("task", "signal", early, "approved", "--data", "@"+payload, "--key", "evt-1"); !strings.Contains(out, "kept") {
		t.Fatalf("signal to a sleeping task: %s", out)
	}
	var sv struct {
		Delivered, Duplicate bool
	}
	n.okJSON(&sv, "task", "signal", early, "approved", "--data", `{"by":"someone else"}`, "--key", "evt-1")
	if !sv.Duplicate || sv.Delivered {
		t.Fatalf("resent signal: %+v", sv)
	}
	n.ok("task", "wait", early, "--timeout", "1m")
	var tk waitingTask
	n.okJSON(&tk, "task", "get", early)
	if tk.State != "succeeded" || compact(tk.Output) != `{"signal":{"by":"ana","amount":12},"slept":"3s"}` {
		t.Fatalf("early signal: task %s, output %s", tk.State, tk.Output)
	}
	if ev := eventTypes(t, n, early); ev["waiting"] != 1 || ev["signal_received"] != 1 || ev["signal_delivered"] != 1 {
		t.Fatalf("early signal journal %v: want one wait (the sleep), the signal kept, then delivered", ev)
	}

	// After the await: the task waits for the signal, which wakes it.
	late := submitWaiter(t, n, map[string]string{"url": svc.url, "await": "shipped"})
	w := awaitState(t, n, late, "waiting", 30*time.Second)
	if w.Wait == nil || w.Wait.Kind != "signal" || w.Wait.Signal != "shipped" || w.Wait.Until != nil || w.Lease != nil {
		t.Fatalf("awaiting task: %+v", w.Wait)
	}
	if out := n.ok("task", "signal", late, "shipped", "--data", `"box 7"`); !strings.Contains(out, "delivered") {
		t.Fatalf("signal to an awaiting task: %s", out)
	}
	n.ok("task", "wait", late, "--timeout", "1m")
	n.okJSON(&tk, "task", "get", late)
	if tk.State != "succeeded" || compact(tk.Output) != `{"signal":"box 7"}` {
		t.Fatalf("late signal: task %s, output %s", tk.State, tk.Output)
	}

	// A timeout: the guest branches on it.
	never := submitWaiter(t, n, map[string]string{"url": svc.url, "await": "never", "timeout": "1s"})
	n.ok("task", "wait", never, "--timeout", "1m")
	n.okJSON(&tk, "task", "get", never)
	if tk.State != "succeeded" || compact(tk.Output) != `{"timed_out":true}` {
		t.Fatalf("timeout: task %s, output %s", tk.State, tk.Output)
	}
	if b, a := svc.count("/before"), svc.count("/after"); b != 3 || a != 3 {
		t.Fatalf("/before seen %d times, /after %d; want 3 and 3 (once per task)", b, a)
	}

	// Refused: a finished task, a bad name, a payload that is not JSON.
	n.fails(1, []string{"(conflict)"}, "task", "signal", never, "approved")
	n.fails(1, []string{"(bad_request)"}, "task", "signal", late, "has space")
	n.fails(2, []string{"not valid JSON"}, "task", "signal", late, "x", "--data", "{")
}

// TestSleepSurvivesKillOfItsNode: on three nodes, the node that ran a task
// is SIGKILLed while the task sleeps; another node (the new leader, if the
// killed one led) wakes it and runs it to the end, and the call before the
// sleep is not made again.
func TestSleepSurvivesKillOfItsNode(t *testing.T) {
	t.Parallel()
	svc := startPathCounter(t)
	const token = "e2e-shared-token-waits-0123456789"
	n1 := startNode(t, withEnv("ORLOJ_TOKEN="+token))
	join := withArgs("--join", n1.raft, "--join-token-file", filepath.Join(n1.dir, "join-token"))
	n2 := startNode(t, withEnv("ORLOJ_TOKEN="+token), withArgs("--node-id", "n2"), join)
	n3 := startNode(t, withEnv("ORLOJ_TOKEN="+token), withArgs("--node-id", "n3"), join)
	nodes := map[string]*node{"n1": n1, "n2": n2, "n3": n3}

	n1.ok("agent", "push", agent("waiter"), "--name", "waiter", "--tools", "http")
	id := submitWaiter(t, n1, map[string]string{"url": svc.url, "sleep": "4s"})
	var tk struct {
		waitingTask
		History []struct {
			Node    string `json:"node"`
			Outcome string `json:"outcome"`
		} `json:"history"`
	}
	awaitState(t, n1, id, "waiting", 60*time.Second)
	n1.okJSON(&tk, "task", "get", id)
	if len(tk.History) != 1 || tk.History[0].Outcome != "waiting" || tk.Lease != nil {
		t.Fatalf("waiting task: history %+v, lease %v", tk.History, tk.Lease)
	}
	ran := tk.History[0].Node
	victim := nodes[ran]
	if victim == nil {
		t.Fatalf("the task ran on %q, not one of the three nodes", ran)
	}
	victim.kill()
	var survivor *node
	for name, n := range nodes {
		if name != ran {
			survivor = n
			break
		}
	}

	// The survivors elect a leader if need be; it wakes the task on time.
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := survivor.cli("task", "get", id, "-o", "json")
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &tk) == nil && tk.State == "succeeded" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s is %s 90 s after its node was killed\n%s", id, tk.State, r)
		}
		time.Sleep(100 * time.Millisecond) // a poll interval for an outside view
	}
	if len(tk.History) != 2 || tk.History[1].Node == ran || tk.History[1].Outcome != "succeeded" {
		t.Fatalf("history %+v: want the run after the wake on another node than %s", tk.History, ran)
	}
	if b, a := svc.count("/before"), svc.count("/after"); b != 1 || a != 1 {
		t.Fatalf("/before seen %d times, /after %d; want 1 and 1", b, a)
	}
}

// TestSleepSurvivesRestart: the only node is SIGKILLed while a task sleeps
// and started again on its data dir; the wake time was in the replicated
// state, so the task wakes and finishes, its first call made once.
func TestSleepSurvivesRestart(t *testing.T) {
	t.Parallel()
	svc := startPathCounter(t)
	n := startNode(t)
	n.ok("agent", "push", agent("waiter"), "--name", "waiter", "--tools", "http")
	id := submitWaiter(t, n, map[string]string{"url": svc.url, "sleep": "3s"})
	awaitState(t, n, id, "waiting", 30*time.Second)
	n.kill()
	n.start()
	n.ok("task", "wait", id, "--timeout", "1m")
	var tk waitingTask
	n.okJSON(&tk, "task", "get", id)
	if tk.State != "succeeded" {
		t.Fatalf("task %s after the restart", tk.State)
	}
	if b, a := svc.count("/before"), svc.count("/after"); b != 1 || a != 1 {
		t.Fatalf("/before seen %d times, /after %d; want 1 and 1", b, a)
	}
	if ev := eventTypes(t, n, id); ev["waiting"] != 1 || ev["woken"] != 1 {
		t.Fatalf("journal events %v", ev)
	}
}
