package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
	"github.com/orloj/orloj/sandbox"
)

const testToken = "s3cret-token"

// The hello agent is built once per test binary.
var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

func helloWasm(t testing.TB) []byte {
	t.Helper()
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "orloj-api-agents"); buildErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-o", filepath.Join(buildDir, "hello.wasm"), "../../examples/agents/hello")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build hello: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return readFile(t, filepath.Join(buildDir, "hello.wasm"))
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMain(m *testing.M) {
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

// runtime is shared by the tests, as one process shares it; its on-disk
// cache is the one the host tests use, so a module compiles once per machine.
func runtime(t testing.TB) *sandbox.Runtime {
	sharedRTOnce.Do(func() {
		cache := ""
		if dir, err := os.UserCacheDir(); err == nil {
			cache = filepath.Join(dir, "orloj", "test-compile")
		}
		rt, err := sandbox.New(context.Background(), sandbox.Config{CacheDir: cache})
		if err != nil {
			panic(err)
		}
		sharedRT = rt
	})
	return sharedRT
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Output: logWriter{t}, Level: hclog.Warn})
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

var (
	testCAOnce sync.Once
	testCA     *cluster.PKI
	testCAErr  error
)

// testPKI gives a node a certificate from one CA every test node shares,
// so nodes opened separately can form clusters.
func testPKI(t testing.TB, dir, id string) *cluster.PKI {
	t.Helper()
	testCAOnce.Do(func() {
		d, err := os.MkdirTemp("", "orloj-test-ca-")
		if err != nil {
			testCAErr = err
			return
		}
		testCA, testCAErr = cluster.BootstrapPKI(d, "ca-holder", nil)
	})
	if testCAErr != nil {
		t.Fatal(testCAErr)
	}
	csr, key, err := cluster.NewCSR(id)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := testCA.Sign(csr, id, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := cluster.InstallPKI(dir, cert, key, testCA.CAPEM(), testCA.CAKeyPEM(), testCA.JoinToken().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// openNode starts a node with short timeouts and returns it with its Raft
// address; bootstrap makes it the only member of a new cluster.
func openNode(t testing.TB, id string, bootstrap bool) (*cluster.Node, string) {
	t.Helper()
	return openNodeTimeout(t, id, bootstrap, 100*time.Millisecond)
}

// openNodeTimeout is openNode with the given heartbeat and election timeout.
func openNodeTimeout(t testing.TB, id string, bootstrap bool, timeout time.Duration) (*cluster.Node, string) {
	t.Helper()
	cfg := cluster.DefaultConfig()
	cfg.DataDir, cfg.RaftAddr, cfg.NodeID, cfg.Bootstrap = t.TempDir(), freeAddr(t), id, bootstrap
	cfg.Logger = testLogger(t).Named(id)
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = timeout, timeout, timeout/2
	cfg.ExpiryInterval = 20 * time.Millisecond
	cfg.PKI = testPKI(t, cfg.DataDir, id)
	n, err := cluster.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	if bootstrap {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := n.WaitLeader(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return n, cfg.RaftAddr
}

// fixture is one node behind the API, as orlojd serve runs it (without
// workers: tests drive tasks by proposing claims and completions).
type fixture struct {
	t       *testing.T
	node    *cluster.Node
	api     *api.Server
	url     string
	reg     *prometheus.Registry
	metrics *host.Metrics
}

func setup(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{t: t, reg: prometheus.NewRegistry()}
	f.node, _ = openNode(t, "n1", true)
	f.metrics = host.NewMetrics(f.reg)
	f.metrics.AttachFSM(f.node.FSM())
	f.api, f.url = f.serve(nil)
	return f
}

// serve starts an API server over f.node; adjust changes its config.
func (f *fixture) serve(adjust func(*api.Config)) (*api.Server, string) {
	f.t.Helper()
	cfg := api.Config{Node: f.node, Runtime: runtime(f.t), Token: testToken, Logger: testLogger(f.t), Metrics: f.metrics}
	if adjust != nil {
		adjust(&cfg)
	}
	s, err := api.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	f.t.Cleanup(func() { s.Close(); ts.Close() })
	return s, ts.URL
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r response) errBody(t testing.TB) api.ErrorBody {
	t.Helper()
	var e api.ErrorBody
	r.decode(t, &e)
	return e
}

// do sends a request with the test token. body is []byte (sent raw), a
// string (sent raw) or anything else (sent as JSON); nil sends nothing.
func (f *fixture) do(method, path string, body any) response {
	f.t.Helper()
	return doURL(f.t, f.url, method, path, body, "Bearer "+testToken)
}

func doURL(t testing.TB, base, method, path string, body any, auth string) response {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

// want fails unless the response has status; with code, also that error code.
func want(t testing.TB, r response, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type %q, want JSON: %s", ct, r.body)
	}
	if code != "" {
		var e api.ErrorBody
		if err := json.Unmarshal(r.body, &e); err != nil || e.Code != code || e.Error == "" {
			t.Fatalf("error body %s, want code %q and a message", r.body, code)
		}
	}
}

// pushHello registers the hello agent as name@version.
func (f *fixture) pushHello(name, version string) api.AgentView {
	f.t.Helper()
	r := f.do("POST", "/v1/agents?name="+name+"&version="+version+"&tools=http,model", helloWasm(f.t))
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		f.t.Fatalf("push %s@%s: %d %s", name, version, r.status, r.body)
	}
	var v api.AgentView
	r.decode(f.t, &v)
	return v
}

func (f *fixture) submit(req api.SubmitRequest) api.TaskView {
	f.t.Helper()
	r := f.do("POST", "/v1/tasks", req)
	if r.status != http.StatusCreated && r.status != http.StatusOK {
		f.t.Fatalf("submit: %d %s", r.status, r.body)
	}
	var v api.TaskView
	r.decode(f.t, &v)
	return v
}

func (f *fixture) apply(cmd cluster.Command) any {
	f.t.Helper()
	r, err := f.node.Apply(context.Background(), cmd)
	if err != nil {
		f.t.Fatalf("apply %T: %v", cmd, err)
	}
	return r
}

// claim leases the oldest runnable task, which must be id.
func (f *fixture) claim(id string) cluster.Lease {
	f.t.Helper()
	c, _ := f.apply(&cluster.ClaimTask{Node: "w1", TTL: time.Minute, Now: time.Now().UnixNano()}).(*cluster.Claim)
	if c == nil || c.Task.ID != id {
		f.t.Fatalf("claim got %+v, want task %s", c, id)
	}
	return c.Lease
}

// deadLetter drives a fresh task into the DLQ with a permanent failure.
func (f *fixture) deadLetter(agent, msg string) api.TaskView {
	f.t.Helper()
	tk := f.submit(api.SubmitRequest{Agent: agent})
	l := f.claim(tk.ID)
	f.apply(&cluster.FailAttempt{TaskID: tk.ID, Token: l.Token, Now: time.Now().UnixNano(),
		Error: cluster.TaskError{Class: cluster.ClassPermanent, Message: msg, StderrTail: "panic: " + msg}})
	return tk
}
