package host

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// Agents are built once per test binary.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// agentPath builds (once) and returns the wasm of an agent: a directory under
// examples/agents or host/testdata/agents, optionally with a variant.
func agentPath(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "orloj-host-agents")
		if buildErr != nil {
			return
		}
		builds := []struct{ out, pkg, ldflags, buildmode string }{
			{"docpipeline", "../examples/agents/docpipeline", "", ""},
			// The same source as a pre-initialized reactor.
			{"docpipeline-reactor", "../examples/agents/docpipeline", "", "c-shared"},
			{"steps", "./testdata/agents/steps", "", ""},
			{"steps-b", "./testdata/agents/steps", "-X main.variant=b", ""},
		}
		var wg sync.WaitGroup
		errs := make([]error, len(builds))
		for i, b := range builds {
			wg.Add(1)
			go func() {
				defer wg.Done()
				args := []string{"build", "-ldflags", b.ldflags}
				if b.buildmode != "" {
					args = append(args, "-buildmode="+b.buildmode)
				}
				cmd := exec.Command("go", append(args, "-o", filepath.Join(buildDir, b.out+".wasm"), b.pkg)...)
				cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[i] = fmt.Errorf("build %s: %v\n%s", b.out, err, out)
				}
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil && buildErr == nil {
				buildErr = err
			}
		}
		// Compile each module once now, so no test's deadline pays for a
		// cold compile (seconds under -race, with other packages running).
		for _, b := range builds {
			if buildErr != nil {
				return
			}
			wasm, err := os.ReadFile(filepath.Join(buildDir, b.out+".wasm"))
			if err == nil {
				_, err = runtime(t).Compile(context.Background(), wasm)
			}
			if err != nil {
				buildErr = fmt.Errorf("compile %s: %w", b.out, err)
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	if name == "trap" {
		return "testdata/trap_stderr.wasm"
	}
	return filepath.Join(buildDir, name+".wasm")
}

func TestMain(m *testing.M) {
	if childMain() {
		return
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

var (
	sharedRT     *sandbox.Runtime
	sharedRTOnce sync.Once
)

// runtime is shared by every test in the binary, as it is in a process.
func runtime(t testing.TB) *sandbox.Runtime {
	sharedRTOnce.Do(func() {
		rt, err := sandbox.New(context.Background(), sandbox.Config{CacheDir: testCacheDir()})
		if err != nil {
			panic(err)
		}
		sharedRT = rt
	})
	return sharedRT
}

// testCacheDir is the compilation cache every test process shares, so a
// module is compiled once per machine, not once per process.
func testCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "orloj", "test-compile")
}

// env is one node with a worker pool, as orlojd serve would run it.
type env struct {
	t     testing.TB
	dir   string
	addr  string
	node  *cluster.Node
	tools *plugins.Registry
	exec  *Executor
	pool  *Pool
	log   hclog.Logger
	ttl   time.Duration
	// noWorkers opens the node without a pool (withoutWorkers).
	noWorkers bool

	mu      sync.Mutex
	reports []AttemptReport
}

type envOpt func(*env)

func withTTL(d time.Duration) envOpt { return func(e *env) { e.ttl = d } }

// withoutWorkers opens the node with no worker pool: the test claims.
func withoutWorkers() envOpt { return func(e *env) { e.noWorkers = true } }

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: logWriter{t}, Level: hclog.Warn})
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func newEnv(t testing.TB, tools []plugins.Tool, opts ...envOpt) *env {
	t.Helper()
	reg, err := plugins.NewRegistry(tools...)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: t.TempDir(), addr: freeAddr(t), tools: reg, log: testLogger(t), ttl: 2 * time.Second}
	for _, o := range opts {
		o(e)
	}
	e.open(!e.noWorkers)
	t.Cleanup(e.close)
	return e
}

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func nodeConfig(dir, addr string, log hclog.Logger) cluster.Config {
	cfg := cluster.DefaultConfig()
	cfg.DataDir, cfg.RaftAddr, cfg.NodeID, cfg.Bootstrap, cfg.Logger = dir, addr, "n1", true, log
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	cfg.ExpiryInterval = 20 * time.Millisecond
	return cfg
}

// open starts the node (and, with workers, the pool) on e.dir.
func (e *env) open(workers bool) {
	e.t.Helper()
	n, err := cluster.Open(nodeConfig(e.dir, e.addr, e.log))
	if err != nil {
		e.t.Fatal(err)
	}
	e.node = n
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		e.t.Fatal(err)
	}
	e.exec = NewExecutor(n, runtime(e.t), e.tools, time.Now, e.log)
	if !workers {
		return
	}
	cfg := DefaultPoolConfig()
	cfg.NodeID, cfg.Workers, cfg.LeaseTTL, cfg.Logger = "n1", 2, e.ttl, e.log
	cfg.OnAttempt = func(r AttemptReport) {
		e.mu.Lock()
		e.reports = append(e.reports, r)
		e.mu.Unlock()
	}
	p, err := NewPool(cfg, n, e.exec)
	if err != nil {
		e.t.Fatal(err)
	}
	e.pool = p
	p.Start(context.Background())
}

func (e *env) close() {
	if e.pool != nil {
		e.pool.Stop(5 * time.Second)
		e.pool = nil
	}
	if e.node != nil {
		e.node.Close()
		e.node = nil
	}
}

func (e *env) apply(c cluster.Command) any {
	e.t.Helper()
	r, err := e.node.Apply(context.Background(), c)
	if err != nil {
		e.t.Fatalf("apply %T: %v", c, err)
	}
	return r
}

func (e *env) pushAgent(name, version, wasmPath string, tools ...string) cluster.Agent {
	e.t.Helper()
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		e.t.Fatal(err)
	}
	ag, err := cluster.ProposeAgent(context.Background(), e.node, cluster.Agent{Name: name, Version: version,
		Manifest: cluster.AgentManifest{Tools: tools, Timeout: 20 * time.Second}}, wasm, time.Now().UnixNano())
	if err != nil {
		e.t.Fatal(err)
	}
	return ag
}

func (e *env) submit(id, agent, version string, input any, p cluster.RetryPolicy) {
	e.t.Helper()
	b, err := json.Marshal(input)
	if err != nil {
		e.t.Fatal(err)
	}
	e.apply(&cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: agent, Version: version, Input: b, Policy: p}, Now: time.Now().UnixNano()})
}

// wait blocks until the task reaches one of states, without polling: it
// wakes on every applied batch.
func (e *env) wait(id string, timeout time.Duration, states ...cluster.TaskState) cluster.Task {
	e.t.Helper()
	deadline := time.After(timeout)
	for {
		changed := e.node.FSM().Changed()
		tk, err := e.node.FSM().Task(id)
		if err == nil {
			for _, s := range states {
				if tk.State == s {
					return tk
				}
			}
		}
		select {
		case <-changed:
		case <-deadline:
			e.t.Fatalf("task %s: state %s after %s, want one of %v (history %+v, error %+v)", id, tk.State, timeout, states, tk.History, tk.Error)
		}
	}
}

func (e *env) journal(id string) []cluster.Event {
	e.t.Helper()
	ev, err := e.node.FSM().Journal(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return ev
}

// callOutcomes counts call journal events by tool and outcome.
func callOutcomes(events []cluster.Event) map[string]map[CallOutcome]int {
	out := map[string]map[CallOutcome]int{}
	for _, ev := range events {
		if ev.Type != cluster.EventCall {
			continue
		}
		var d CallDetail
		json.Unmarshal(ev.Detail, &d)
		if out[ev.Tool] == nil {
			out[ev.Tool] = map[CallOutcome]int{}
		}
		out[ev.Tool][d.Outcome]++
	}
	return out
}

// settle bounds how long a test waits for a task to finish. It is only a
// failure bound: waits return as soon as the task does.
const settle = 2 * time.Minute
