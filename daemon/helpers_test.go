package daemon

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
)

const exit3Module = "../sandbox/testdata/exit3.wasm" // exits 3: a permanent failure

func freeAddr(t testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testCacheDir is the compilation cache every test process shares (the
// host tests' too), so a module is compiled once per machine.
func testCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "orloj", "test-compile")
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: logWriter{t}, Level: hclog.Warn})
}

func testConfig(t *testing.T, dir string) Config {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.APIAddr, cfg.RaftAddr = dir, "127.0.0.1:0", freeAddr(t)
	cfg.NodeID, cfg.Workers, cfg.LeaseTTL = "d1", 1, 2*time.Second
	cfg.CacheDir, cfg.Logger = testCacheDir(), testLogger(t)
	return cfg
}

// startDaemon starts a daemon on cfg and waits for it to lead. freeAddr's
// port can be taken by another test before the daemon binds it: then the
// daemon starts again on another, written back to cfg for a later restart.
func startDaemon(t *testing.T, cfg *Config) *Daemon {
	t.Helper()
	var d *Daemon
	for try := 1; ; try++ {
		var err error
		if d, err = New(*cfg); err != nil {
			t.Fatal(err)
		}
		err = d.Start()
		if err == nil {
			break
		}
		d.Stop(0)
		if try == 3 || !strings.Contains(err.Error(), "raft transport on "+cfg.RaftAddr) || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("raft port %s was taken before the daemon bound it; starting on another", cfg.RaftAddr)
		cfg.RaftAddr = freeAddr(t)
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

var (
	stepsOnce sync.Once
	stepsPath string
	stepsErr  error
)

// stepsAgent builds (once per test binary) the steps test agent.
func stepsAgent(t *testing.T) string {
	t.Helper()
	stepsOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orloj-daemon-agents")
		if err != nil {
			stepsErr = err
			return
		}
		stepsPath = filepath.Join(dir, "steps.wasm")
		cmd := exec.Command("go", "build", "-o", stepsPath, "../host/testdata/agents/steps")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			stepsErr = err
			t.Logf("%s", out)
		}
	})
	if stepsErr != nil {
		t.Fatalf("build steps agent: %v", stepsErr)
	}
	return stepsPath
}
