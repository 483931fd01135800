package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stub is a loopback HTTP server that counts requests and the
// Idempotency-Key each carried.
type stub struct {
	url  string
	mu   sync.Mutex
	n    int
	keys []string
}

func startStub(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, body []byte)) *stub {
	t.Helper()
	s := &stub{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.url = "http://" + l.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		s.n++
		s.keys = append(s.keys, r.Header.Get("Idempotency-Key"))
		s.mu.Unlock()
		handle(w, r, body)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *stub) seen() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n, append([]string(nil), s.keys...)
}

// checkOneKeyed fails unless the stub saw exactly one request and it
// carried an idempotency key.
func (s *stub) checkOneKeyed(t *testing.T, name string) {
	t.Helper()
	n, keys := s.seen()
	if n != 1 || len(keys) != 1 || len(keys[0]) != 64 {
		t.Fatalf("%s stub saw %d requests with keys %q, want one with a call ID", name, n, keys)
	}
}

// compact is b without insignificant white space (the CLI indents output).
func compact(b []byte) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return string(b)
	}
	return buf.String()
}

type kvRead struct {
	Found bool            `json:"found"`
	Value json.RawMessage `json:"value"`
}

// TestEveryBuiltinTool runs, on a started `orlojd serve`, a task whose agent
// calls every built-in tool: http and model against loopback stubs, a kv
// put and a get that sees it, and an emitted kv effect. The task succeeds,
// each stub is asked once, the put and the effect are visible to later
// tasks, and the node is still up, and starts again cleanly.
func TestEveryBuiltinTool(t *testing.T) {
	t.Parallel()
	web := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.Method != http.MethodPost || string(body) != "hello" {
			http.Error(w, "want POST hello", http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, "hi from the web")
	})
	model := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		var req struct {
			Model    string `json:"model"`
			Messages []struct{ Role, Content string }
		}
		if r.URL.Path != "/v1/chat/completions" || json.Unmarshal(body, &req) != nil || req.Model != "stub-1" || len(req.Messages) != 1 {
			http.Error(w, `{"error":{"message":"unexpected request"}}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"model":"stub-1","choices":[{"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],`+
			`"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`)
	})
	n := startNode(t, withArgs("--model-url", model.url+"/v1", "--model", "stub-1"))
	n.ok("agent", "push", agent("alltools"), "--name", "alltools", "--tools", "http,model,kv", "--max-attempts", "2")

	in, _ := json.Marshal(map[string]string{"http_url": web.url + "/hook", "key": "e2e/put", "effect_key": "e2e/effect"})
	id := strings.TrimSpace(n.ok("task", "submit", "alltools", "--input", string(in)))
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var out struct {
		HTTPStatus int    `json:"http_status"`
		HTTPBody   string `json:"http_body"`
		Model      string `json:"model"`
		KVGet      kvRead `json:"kv_get"`
	}
	if err := json.Unmarshal(tk.Output, &out); err != nil || tk.State != "succeeded" || tk.Attempts != 1 {
		t.Fatalf("task = %+v, output %s (%v)", tk, tk.Output, err)
	}
	if out.HTTPStatus != 200 || out.HTTPBody != "hi from the web" || out.Model != "hi" ||
		!out.KVGet.Found || compact(out.KVGet.Value) != `{"by":"put"}` {
		t.Fatalf("output = %s", tk.Output)
	}
	web.checkOneKeyed(t, "http")
	model.checkOneKeyed(t, "model")

	// The outbox applies the emitted kv put after the task succeeded.
	deadline := time.Now().Add(time.Minute)
	for {
		var events []struct{ Type, Tool, Message string }
		n.okJSON(&events, "task", "events", id)
		var fx []string
		for _, e := range events {
			if strings.HasPrefix(e.Type, "effect_") {
				fx = append(fx, e.Type+" "+e.Tool+" "+e.Message)
			}
		}
		if len(fx) == 1 && fx[0] == "effect_dispatched kv " {
			break
		}
		if len(fx) > 0 || time.Now().After(deadline) {
			t.Fatalf("effect events = %q, want one effect_dispatched for kv", fx)
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, not synchronisation
	}

	read := func() map[string]kvRead {
		t.Helper()
		in, _ := json.Marshal(map[string]any{"read": true, "key": "e2e/put", "effect_key": "e2e/effect"})
		id := strings.TrimSpace(n.ok("task", "submit", "alltools", "--input", string(in)))
		n.ok("task", "wait", id, "--timeout", "2m")
		var tk taskJSON
		n.okJSON(&tk, "task", "get", id)
		var got map[string]kvRead
		if err := json.Unmarshal(tk.Output, &got); err != nil {
			t.Fatalf("read task output %s: %v", tk.Output, err)
		}
		return got
	}
	check := func(when string) {
		t.Helper()
		got := read()
		if p := got["put"]; !p.Found || compact(p.Value) != `{"by":"put"}` {
			t.Fatalf("%s: the put is not visible to another task: %+v", when, got)
		}
		if e := got["effect"]; !e.Found || compact(e.Value) != `{"by":"effect"}` {
			t.Fatalf("%s: the emitted kv effect was not applied: %+v", when, got)
		}
	}
	check("after the task")

	select {
	case <-n.exited:
		t.Fatalf("orlojd exited: %v\n%s", n.exitErr, n.log)
	default:
	}
	if strings.Contains(n.log.String(), "panic") {
		t.Fatalf("the node log mentions a panic:\n%s", n.log)
	}
	// No crash loop: the node restarts on its data and still reads the same.
	if code := n.signal(syscall.SIGTERM, 60*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, n.log)
	}
	n.start()
	check("after a restart")
	web.checkOneKeyed(t, "http")
	model.checkOneKeyed(t, "model")
}
