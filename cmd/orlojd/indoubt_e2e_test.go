package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// payments is a card processor that does not dedupe: every charge it
// applies counts. With hold, the first request is held (after being
// applied, with applyFirst) until the client goes away.
type payments struct {
	url        string
	mu         sync.Mutex
	applied    int
	requests   int
	applyFirst bool
	arrived    chan struct{}
	srv        *http.Server
}

func startPayments(t *testing.T, l net.Listener, applyFirst bool) *payments {
	t.Helper()
	p := &payments{url: "http://" + l.Addr().String(), applyFirst: applyFirst, arrived: make(chan struct{}, 4)}
	p.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.requests++
		first := p.requests == 1
		if !first || p.applyFirst {
			p.applied++
		}
		n := p.applied
		p.mu.Unlock()
		if first {
			p.arrived <- struct{}{}
			<-r.Context().Done() // the node dies holding the request: its answer is lost
			return
		}
		fmt.Fprintf(w, "ch_%d", n)
	})}
	go p.srv.Serve(l)
	t.Cleanup(func() { p.srv.Close() })
	return p
}

func (p *payments) counts() (requests, applied int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.requests, p.applied
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// inDoubtDeadLetter runs paycall until the node dies holding the charge,
// restarts it and waits for the dead letter; it returns the node, the task
// and the call left in doubt.
func inDoubtDeadLetter(t *testing.T, p *payments) (*node, string, string) {
	t.Helper()
	n := startNode(t, withArgs("--http-tool", "payments:unsafe"))
	n.ok("agent", "push", agent("paycall"), "--name", "paycall", "--tools", "payments")
	id := killDuringCharge(t, n, p)
	var entry struct {
		Task  taskJSON
		Calls []struct {
			ID        string `json:"id"`
			Tool      string `json:"tool"`
			HasResult bool   `json:"has_result"`
		}
	}
	n.okJSON(&entry, "dlq", "show", id)
	if entry.Task.Error == nil || entry.Task.Error.Class != "in_doubt" || len(entry.Calls) != 1 || entry.Calls[0].HasResult {
		t.Fatalf("dead letter %+v calls %+v; want class in_doubt with one call and no result", entry.Task.Error, entry.Calls)
	}
	return n, id, entry.Calls[0].ID
}

// killDuringCharge submits paycall on n (which has it), kills the node once
// the charge reached p, restarts it and waits for the task to dead-letter:
// the charge is then in doubt. It returns the task's ID.
func killDuringCharge(t *testing.T, n *node, p *payments) string {
	t.Helper()
	id := strings.TrimSpace(n.ok("task", "submit", "paycall", "--input", fmt.Sprintf(`{"url":%q}`, p.url)))
	select {
	case <-p.arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("the charge never reached the service")
	}
	if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
		t.Fatalf("exit %d after SIGKILL", code)
	}
	n.start()
	n.fails(1, []string{"dead_letter"}, "task", "wait", id, "--timeout", "2m")
	return id
}

// An unsafe call whose answer was lost stops in the DLQ as in_doubt; a
// person who finds it was not applied says so, and the retry charges once.
func TestInDoubtResolvedNotApplied(t *testing.T) {
	t.Parallel()
	p := startPayments(t, listen(t), false)
	n, id, call := inDoubtDeadLetter(t, p)
	n.fails(2, []string{"--note is required"}, "dlq", "resolve", id, "--call", call, "--not-applied")
	n.fails(1, []string{"no call"}, "dlq", "resolve", id, "--call", "nope", "--not-applied", "--note", "x")
	out := n.ok("dlq", "resolve", id, "--call", call, "--not-applied", "--note", "no charge in the processor's dashboard", "--by", "dana")
	if !strings.Contains(out, "not applied") {
		t.Errorf("resolve printed %q", out)
	}
	n.ok("dlq", "retry", id)
	n.ok("task", "wait", id, "--timeout", "2m")
	if req, applied := p.counts(); req != 2 || applied != 1 {
		t.Errorf("payments saw %d requests and applied %d charges; want 2 and 1", req, applied)
	}
	var events []struct{ Type, Message string }
	n.okJSON(&events, "task", "events", id)
	found := false
	for _, e := range events {
		if e.Type == "call_resolved" && strings.Contains(e.Message, "dana resolved it as not applied: no charge") {
			found = true
		}
	}
	if !found {
		t.Errorf("journal has no call_resolved event by dana: %+v", events)
	}
	// Nothing is in doubt any more: a second answer is refused.
	n.fails(1, []string{"not dead_letter"}, "dlq", "resolve", id, "--call", call, "--not-applied", "--note", "again")
}

// A person who finds the charge was applied gives its result: the retry
// replays it and never charges again.
func TestInDoubtResolvedApplied(t *testing.T) {
	t.Parallel()
	p := startPayments(t, listen(t), true)
	n, id, call := inDoubtDeadLetter(t, p)
	n.fails(2, []string{"--result is required"}, "dlq", "resolve", id, "--call", call, "--applied", "--note", "x")
	n.ok("dlq", "resolve", id, "--call", call, "--applied", "--result", `{"status":200,"body":"ch_1"}`, "--note", "charged per the dashboard")
	n.ok("dlq", "retry", id)
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var out struct{ Charge string }
	if err := json.Unmarshal(tk.Output, &out); err != nil || out.Charge != "ch_1" {
		t.Errorf("output %s, want the given result replayed", tk.Output)
	}
	if req, applied := p.counts(); req != 1 || applied != 1 {
		t.Errorf("payments saw %d requests and applied %d charges; want 1 and 1", req, applied)
	}
}

// A charge refused at the connection never reached the processor: it is
// retried, not held in doubt, and charges once when the service is up.
func TestUnsafeConnectionRefusedIsRetried(t *testing.T) {
	t.Parallel()
	l := listen(t)
	addr := l.Addr().String()
	l.Close() // nothing listens there yet
	n := startNode(t, withArgs("--http-tool", "payments:unsafe"))
	n.ok("agent", "push", agent("paycall"), "--name", "paycall", "--tools", "payments")
	id := strings.TrimSpace(n.ok("task", "submit", "paycall", "--input", fmt.Sprintf(`{"url":"http://%s"}`, addr), "--max-attempts", "50"))
	// Await the first refused attempt in the journal, then start the service.
	deadline := time.Now().Add(60 * time.Second)
	for {
		var events []struct{ Type string }
		n.okJSON(&events, "task", "events", id)
		cleared := false
		for _, e := range events {
			cleared = cleared || e.Type == "intent_cleared"
		}
		if cleared {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no intent_cleared event: %+v", events)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval for an outside view
	}
	l2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	var charges int
	var mu sync.Mutex
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		charges++
		mu.Unlock()
		fmt.Fprint(w, "ch_1")
	})}
	go srv.Serve(l2)
	t.Cleanup(func() { srv.Close() })
	n.ok("task", "wait", id, "--timeout", "2m")
	mu.Lock()
	defer mu.Unlock()
	if charges != 1 {
		t.Errorf("%d charges, want 1", charges)
	}
}
