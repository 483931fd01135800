package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/host/api"
)

var brickCalls = flag.Int("brick.calls", 2500, "calls the heavy task of TestBrick records before it is retried (make brick: 20000)")

// TestBrick runs, on three real nodes, the agents that used to wedge every
// replica: 20,000 calls to a tool outside the manifest, 40,000 emitted
// effects, and a task that recorded thousands of calls and is retried (its
// replays journal in chunks, not in one entry). Each hostile task ends in
// the DLQ with class budget, the heavy one succeeds, and afterwards the
// three replicas agree and restart clean.
func TestBrick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes (skipped with -short)")
	}
	bin, _ := build(t)
	flood := buildWasm(t, "./testdata/flood")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute+time.Duration(*brickCalls)*20*time.Millisecond)
	defer cancel()
	h := newHarness(t, bin, 3, 3*time.Second)
	h.form(ctx, func() {
		if err := h.push(ctx, "flood", "kv,http", flood); err != nil {
			t.Fatal(err)
		}
	})

	// A service that fails its first request, so the heavy task's first
	// attempt ends transiently after its calls are recorded.
	var hits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if hits.Add(1) == 1 {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	heavyCalls := *brickCalls

	retry := map[string]any{"base": "50ms", "factor": 2, "cap": "200ms"}
	tasks := map[string]map[string]any{
		"denied": {"mode": "call", "tool": "model", "n": 20000, "ignore_errors": true},
		"emits":  {"mode": "emit", "tool": "http", "params": map[string]any{"method": "POST", "url": "http://127.0.0.1:9/x"}, "n": 40000, "ignore_errors": true},
		"heavy": {"mode": "call", "tool": "kv", "params": map[string]any{"op": "get", "key": "k"}, "vary": "key", "n": heavyCalls,
			"then": map[string]any{"tool": "http", "params": map[string]any{"method": "GET", "url": "http://" + ln.Addr().String() + "/"}}},
	}
	ids := map[string]string{}
	for name, in := range tasks {
		var tv api.TaskView
		body := map[string]any{"agent": "flood", "version": "v1", "input": in, "max_attempts": 3, "retry": retry}
		if name == "heavy" {
			body["budget"] = map[string]any{"max_calls": heavyCalls + 1} // its calls and the last one
			body["max_attempts"] = 5                                     // a long attempt may lose its lease on a loaded machine
		}
		if _, err := h.call(ctx, max(h.leader(ctx), 0), "POST", "/v1/tasks", body, &tv); err != nil {
			t.Fatalf("submit %s: %v", name, err)
		}
		ids[name] = tv.ID
	}
	final := map[string]api.TaskView{}
	await(t, 4*time.Minute+time.Duration(heavyCalls)*20*time.Millisecond, "every task to end", func() bool {
		for name, id := range ids {
			var tv api.TaskView
			if _, err := h.call(ctx, 0, "GET", "/v1/tasks/"+id, nil, &tv); err != nil || !(tv.State.Final() || tv.State == "dead_letter") {
				return false
			}
			final[name] = tv
		}
		return true
	})
	for name, want := range map[string]string{"denied": "call 10001 would exceed max_calls 10000", "emits": "effect 1001 would exceed max_effects 1000"} {
		tv := final[name]
		if tv.State != "dead_letter" || tv.Error == nil || tv.Error.Class != "budget" || !strings.Contains(tv.Error.Message, want) {
			t.Errorf("%s: ended %s with %+v; want dead_letter, class budget, %q", name, tv.State, tv.Error, want)
		}
		if tv.Attempts != 1 {
			t.Errorf("%s: %d attempts; a budget failure dead-letters at once", name, tv.Attempts)
		}
	}
	// The heavy task fails its first attempt on purpose; on a loaded machine
	// a later attempt may also lose its lease, so count the last one.
	heavy := final["heavy"]
	if heavy.State != "succeeded" || heavy.Attempts < 2 {
		t.Fatalf("heavy: ended %s after %d attempts (%+v, history %+v); want succeeded after a retry", heavy.State, heavy.Attempts, heavy.Error, heavy.History)
	}
	for _, a := range heavy.History {
		t.Logf("heavy attempt %d on %s: %s %s", a.N, a.Node, a.Outcome, a.Error)
	}
	var calls []api.CallView
	if _, err := h.call(ctx, 2, "GET", "/v1/tasks/"+heavy.ID+"/calls", nil, &calls); err != nil {
		t.Fatal(err)
	}
	replayed := 0
	for _, c := range calls {
		if c.Attempt == heavy.Attempts && c.Tool == "kv" && c.Outcome == "replayed" {
			replayed++
		}
	}
	if replayed != heavyCalls {
		t.Errorf("heavy: %d calls replayed by the last attempt; want %d, each journaled", replayed, heavyCalls)
	}

	agree := func(what string) {
		t.Helper()
		var last []api.StateView
		await(t, time.Minute, what, func() bool {
			last = last[:0]
			for i := range h.procs {
				var sv api.StateView
				if _, err := h.call(ctx, i, "GET", "/v1/cluster/state", nil, &sv); err != nil {
					return false
				}
				last = append(last, sv)
			}
			return last[0].AppliedIndex == last[1].AppliedIndex && last[1].AppliedIndex == last[2].AppliedIndex &&
				last[0].Hash == last[1].Hash && last[1].Hash == last[2].Hash
		})
		t.Logf("%s: %+v", what, last)
	}
	agree("the three replicas to agree")
	for i := range h.procs {
		h.kill(i)
	}
	for i := range h.procs {
		h.restart(i)
	}
	await(t, time.Minute, "a leader after restarting every node", func() bool { return h.leader(ctx) >= 0 })
	agree("the replicas to agree after a restart")
	for i := range h.procs {
		if !h.alive(i) {
			t.Errorf("%s is not running", h.procs[i].id)
		}
	}
}

// push uploads an agent through node 0.
func (h *harness) push(ctx context.Context, name, tools string, module []byte) error {
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+h.procs[0].api+"/v1/agents?name="+name+"&version=v1&timeout=10m&tools="+tools, strings.NewReader(string(module)))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	req.Header.Set("Content-Type", "application/wasm")
	resp, err := h.client.Do(req)
	if err != nil {
		return fmt.Errorf("push %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("push %s: status %d", name, resp.StatusCode)
	}
	return nil
}

// buildWasm compiles a guest package and returns its bytes.
func buildWasm(t *testing.T, pkg string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg)+".wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
