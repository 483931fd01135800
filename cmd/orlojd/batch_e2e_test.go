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

// stepServer answers POST /step?i=N. Until released it holds every request
// until all three of a batch are in flight at once, then answers steps 1
// and 2 and keeps step 3 waiting.
type stepServer struct {
	url     string
	mu      sync.Mutex
	seen    map[string]int // step → requests
	keys    map[string]string
	held    int
	all3    chan struct{}
	release chan struct{}
	once    sync.Once
}

func startStepServer(t *testing.T) *stepServer {
	t.Helper()
	s := &stepServer{seen: map[string]int{}, keys: map[string]string{}, all3: make(chan struct{}), release: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		step := r.URL.Query().Get("i")
		s.mu.Lock()
		s.seen[step]++
		if k, ok := s.keys[step]; ok && k != r.Header.Get("Idempotency-Key") {
			s.mu.Unlock()
			http.Error(w, "step "+step+" came back with another Idempotency-Key", http.StatusConflict)
			return
		}
		s.keys[step] = r.Header.Get("Idempotency-Key")
		s.held++
		if s.held == 3 {
			close(s.all3)
		}
		s.mu.Unlock()
		select {
		case <-s.release:
		case <-s.all3:
			if step == "3" {
				select {
				case <-s.release:
				case <-r.Context().Done():
					return
				}
			}
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "done %s", step)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { s.open(); srv.Close() })
	return s
}

func (s *stepServer) open() { s.once.Do(func() { close(s.release) }) }

func (s *stepServer) counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return map[string]int{"1": s.seen["1"], "2": s.seen["2"], "3": s.seen["3"]}
}

// TestCallBatchThroughServe: an agent's three calls of one CallAll reach the
// service at once (it answers none until all three are in flight); the node
// is killed after two of them finished, and after the restart only the
// third is sent again, with the same Idempotency-Key.
func TestCallBatchThroughServe(t *testing.T) {
	t.Parallel()
	s := startStepServer(t)
	n := startNode(t)
	n.ok("agent", "push", agent("batch3"), "--name", "batch3", "--tools", "http")
	id := strings.TrimSpace(n.ok("task", "submit", "batch3", "--input", fmt.Sprintf(`{"url":%q}`, s.url)))

	select {
	case <-s.all3:
	case <-time.After(60 * time.Second):
		t.Fatalf("the three calls were never in flight at once: %v", s.counts())
	}
	// Await the two answered calls in the ledger, then kill the node while
	// the third is still held.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var calls []callJSON
		n.okJSON(&calls, "task", "calls", id)
		if outcomes(calls)["http"]["invoked"] == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls recorded: %+v, want 2 invoked", calls)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval for an outside view
	}
	if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
		t.Fatalf("exit code %d after SIGKILL", code)
	}
	s.open()
	n.start()
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var out struct{ Bodies []string }
	if err := json.Unmarshal(tk.Output, &out); tk.State != "succeeded" || err != nil || strings.Join(out.Bodies, ",") != "done 1,done 2,done 3" {
		t.Fatalf("task %s, output %s", tk.State, tk.Output)
	}
	if c := s.counts(); c["1"] != 1 || c["2"] != 1 || c["3"] != 2 {
		t.Errorf("requests per step %v; want 1, 1 and 2 (only the unfinished call again)", c)
	}
	var calls []callJSON
	n.okJSON(&calls, "task", "calls", id)
	if o := outcomes(calls)["http"]; o["invoked"] != 3 || o["replayed"] != 2 {
		t.Errorf("http calls %v; want 3 invoked and 2 replayed", o)
	}
}
