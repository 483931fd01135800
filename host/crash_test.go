package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// The crash tests run a real node in a child process (this test binary,
// re-executed) that SIGKILLs itself at a chosen point, then restart the node
// on the same data dir in the parent.

const (
	envChild      = "ORLOJ_HOST_CHILD"
	envDir        = "ORLOJ_HOST_DIR"
	envAddr       = "ORLOJ_HOST_ADDR"
	envServices   = "ORLOJ_HOST_SERVICES"
	envAgent      = "ORLOJ_HOST_AGENT"
	envSemantics  = "ORLOJ_HOST_SEMANTICS"
	envKillAfter  = "ORLOJ_HOST_KILL_AFTER" // SIGKILL after this many tool invocations
	envTasks      = "ORLOJ_HOST_TASKS"
	childAgent    = "pipeline"
	childToolPay  = "pay"
	childModePay  = "pay"
	childModeDocs = "docs"
)

// killingTool wraps a tool: after the n-th invocation has taken effect, and
// before its result can be recorded, the process dies.
type killingTool struct {
	plugins.Tool
	n, after *atomic.Int32
}

func (k killingTool) Invoke(ctx context.Context, c plugins.Call) (plugins.Result, error) {
	res, err := k.Tool.Invoke(ctx, c)
	if k.n.Add(1) == k.after.Load() {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
	return res, err
}

func payTool(name string, sem plugins.Semantics) (plugins.Tool, error) {
	return plugins.NewHTTP(plugins.HTTPConfig{Name: name, AllowHosts: []string{"127.0.0.1"}, Semantics: sem, Timeout: 5 * time.Second})
}

func childTools(mode, services string, sem plugins.Semantics) ([]plugins.Tool, error) {
	switch mode {
	case childModePay:
		pay, err := payTool(childToolPay, sem)
		return []plugins.Tool{pay}, err
	default:
		h, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"127.0.0.1"}, Timeout: 5 * time.Second})
		if err != nil {
			return nil, err
		}
		m, err := plugins.NewModel(plugins.ModelConfig{BaseURL: services + "/v1", Model: "standin-1", Timeout: 5 * time.Second})
		return []plugins.Tool{h, m}, err
	}
}

// childMain runs the child side; it returns false in the parent.
func childMain() bool {
	mode := os.Getenv(envChild)
	if mode == "" {
		return false
	}
	if err := runChild(mode); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(3)
	}
	os.Exit(0) // not reached when the kill point is hit
	return true
}

func runChild(mode string) error {
	log := hclog.New(&hclog.LoggerOptions{Output: os.Stderr, Level: hclog.Warn})
	node, err := cluster.Open(nodeConfig(os.Getenv(envDir), os.Getenv(envAddr), log))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := node.WaitLeader(ctx); err != nil {
		return err
	}
	tools, err := childTools(mode, os.Getenv(envServices), plugins.Semantics(os.Getenv(envSemantics)))
	if err != nil {
		return err
	}
	after, _ := strconv.Atoi(os.Getenv(envKillAfter))
	var n, limit atomic.Int32
	limit.Store(int32(after))
	for i, t := range tools {
		tools[i] = killingTool{Tool: t, n: &n, after: &limit}
	}
	reg, err := plugins.NewRegistry(tools...)
	if err != nil {
		return err
	}
	wasm, err := os.ReadFile(os.Getenv(envAgent))
	if err != nil {
		return err
	}
	names := []string{childToolPay}
	if mode == childModeDocs {
		names = []string{"http", "model"}
	}
	if _, err := cluster.ProposeAgent(ctx, node, cluster.Agent{Name: childAgent, Version: "v1", Manifest: cluster.AgentManifest{Tools: names}}, wasm, time.Now().UnixNano()); err != nil {
		return err
	}
	var inputs []json.RawMessage
	if err := json.Unmarshal([]byte(os.Getenv(envTasks)), &inputs); err != nil {
		return err
	}
	for i, in := range inputs {
		// Each submission is acknowledged (committed) before the next.
		if _, err := node.Apply(ctx, &cluster.SubmitTask{Task: cluster.Task{ID: fmt.Sprintf("t%d", i), Agent: childAgent, Version: "v1", Input: in,
			Policy: cluster.RetryPolicy{Base: 10 * time.Millisecond}}, Now: time.Now().UnixNano()}); err != nil {
			return err
		}
	}
	rt, err := sandbox.New(context.Background(), sandbox.Config{CacheDir: testCacheDir()})
	if err != nil {
		return err
	}
	cfg := DefaultPoolConfig()
	cfg.NodeID, cfg.Workers, cfg.LeaseTTL, cfg.Logger = "child", 1, time.Second, log // one call in flight at the kill
	pool, err := NewPool(cfg, node, NewExecutor(node, rt, reg, time.Now, log))
	if err != nil {
		return err
	}
	pool.Start(context.Background())
	<-ctx.Done()
	return errors.New("the kill point was never reached")
}

// crashChild runs the child until it kills itself.
func crashChild(t *testing.T, mode, dir, addr, services, agent string, sem plugins.Semantics, killAfter int, tasks []any) {
	t.Helper()
	in, _ := json.Marshal(tasks)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"="+mode, envDir+"="+dir, envAddr+"="+addr, envServices+"="+services,
		envAgent+"="+agent, envSemantics+"="+string(sem), envKillAfter+"="+strconv.Itoa(killAfter), envTasks+"="+string(in))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
}

// TestCrashBetweenEffectAndRecord: the process dies after the tool ran and
// before its RESULT was recorded. After restart an idempotent tool is
// re-invoked with the same key (the server sees it twice and applies it
// once); an unsafe one sends the task to the DLQ as in_doubt.
func TestCrashBetweenEffectAndRecord(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sem       plugins.Semantics
		wantState cluster.TaskState
		wantSeen  int
	}{
		{"idempotent re-invoked with the same key", plugins.Idempotent, cluster.StateSucceeded, 2},
		{"unsafe goes to the DLQ in doubt", plugins.Unsafe, cluster.StateDeadLetter, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startStandins(t)
			dir, addr := t.TempDir(), freeAddr(t)
			body := `{"amount":5}`
			task := map[string]any{"steps": []any{map[string]any{"tool": childToolPay,
				"params": map[string]any{"method": "POST", "url": s.URL + "/records", "body": body}}}}
			crashChild(t, childModePay, dir, addr, s.URL, agentPath(t, "steps"), tt.sem, 1, []any{task})
			if c := s.Counts(); c.RecordEffects != 1 {
				t.Fatalf("before restart: %+v", c)
			}

			pay, err := payTool(childToolPay, tt.sem)
			if err != nil {
				t.Fatal(err)
			}
			e := &env{t: t, dir: dir, addr: addr, log: testLogger(t), ttl: time.Second}
			e.tools, _ = plugins.NewRegistry(pay)
			e.open(true)
			t.Cleanup(e.close)
			tk := e.wait("t0", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
			if tk.State != tt.wantState {
				t.Fatalf("task %s, want %s (%+v)", tk.State, tt.wantState, tk.Error)
			}
			if tt.wantState == cluster.StateDeadLetter && tk.Error.Class != cluster.ClassInDoubt {
				t.Fatalf("error = %+v, want in_doubt", tk.Error)
			}
			c := s.Counts()
			if c.RecordEffects != 1 {
				t.Fatalf("the effect applied %d times", c.RecordEffects)
			}
			seen := s.KeysSeen()
			if len(seen) != 1 {
				t.Fatalf("keys seen = %v, want one key", seen)
			}
			for key, n := range seen {
				if n != tt.wantSeen {
					t.Fatalf("key %s seen %d times, want %d", key, n, tt.wantSeen)
				}
				want := CallID("t0", childToolPay, canonical(t, task["steps"].([]any)[0].(map[string]any)["params"]), "", 0)
				if key != want {
					t.Fatalf("idempotency key %s, want the call ID %s", key, want)
				}
			}
			// The first attempt was lost with its process: the lease expiry counts.
			if tk.History[0].Outcome != string(cluster.ClassExpired) {
				t.Fatalf("history = %+v", tk.History)
			}
		})
	}
}

// TestRestartMidTask: SIGKILL the node in the middle of several document
// pipelines, restart it on the same data dir: every acknowledged task
// finishes, and no call that had finished is invoked again.
func TestRestartMidTask(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	dir, addr := t.TempDir(), freeAddr(t)
	var tasks []any
	for _, doc := range []string{"invoice-1.txt", "invoice-2.txt", "invoice-1.txt"} {
		tasks = append(tasks, docInput(s, doc))
	}
	crashChild(t, childModeDocs, dir, addr, s.URL, agentPath(t, "docpipeline"), plugins.Idempotent, 8, tasks)
	before := s.Counts()
	if before.RecordEffects == 3 {
		t.Fatal("all tasks finished before the crash; move the kill point")
	}

	tools, err := childTools(childModeDocs, s.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, addr: addr, log: testLogger(t), ttl: time.Second}
	e.tools, _ = plugins.NewRegistry(tools...)
	e.open(true)
	t.Cleanup(e.close)
	for i := range tasks {
		tk := e.wait(fmt.Sprintf("t%d", i), settle, cluster.StateSucceeded, cluster.StateDeadLetter)
		if tk.State != cluster.StateSucceeded {
			t.Fatalf("task t%d: %s %+v", i, tk.State, tk.Error)
		}
	}
	c := s.Counts()
	if c.RecordEffects != 3 {
		t.Fatalf("records written = %d, want 3", c.RecordEffects)
	}
	// Exactly one call was in flight when the process died: it is the only
	// key seen twice.
	twice := 0
	for key, n := range s.KeysSeen() {
		switch {
		case n == 2:
			twice++
		case n > 2:
			t.Errorf("key %s seen %d times", key, n)
		}
	}
	if twice != 1 {
		t.Fatalf("%d keys were seen twice, want exactly the one in flight (keys %v)", twice, s.KeysSeen())
	}
	if c.Blob+c.OCR+c.Model+c.Records != 5*3+1 {
		t.Fatalf("requests = %+v, want 15 calls (5 per task) plus the one repeated", c)
	}
}

func canonical(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c, err := abiCanonical(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
