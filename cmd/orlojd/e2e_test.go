package main

// End-to-end tests of the real binary: TestMain builds orlojd and the
// example agents once; each test starts `orlojd serve` on free loopback
// ports in a temporary data dir and drives it with the CLI as a subprocess,
// as an operator would. Nothing sleeps to synchronise: tests wait on
// conditions (readiness, log lines, task states) with deadlines.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orloj/orloj/examples/standins"
)

var (
	binDir  string // orlojd and the agents, built by TestMain
	orlojd  string
	buildOK bool
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			return m.Run() // the e2e tests skip themselves
		}
		dir, err := os.MkdirTemp("", "orlojd-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir, orlojd = dir, filepath.Join(dir, "orlojd")
		if err := buildAll(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		buildOK = true
		return m.Run()
	}()
	os.Exit(code)
}

// buildAll builds the binary (without -race: it is the thing under test,
// not the test) and the agents the tests push, concurrently.
func buildAll(dir string) error {
	builds := []struct {
		out, pkg, ldflags string
		wasm, reactor     bool
	}{
		{"orlojd", ".", "", false, false},
		{"docpipeline.wasm", "../../examples/agents/docpipeline", "", true, false},
		{"docpipeline-v2.wasm", "../../examples/agents/docpipeline", "-X main.defaultDate=2026-11-01", true, false},
		{"docpipeline-reactor.wasm", "../../examples/agents/docpipeline", "", true, true},
		{"hello.wasm", "../../examples/agents/hello", "", true, false},
		{"conformance.wasm", "../../examples/agents/conformance", "", true, true},
		{"alltools.wasm", "./testdata/agents/alltools", "", true, false},
		{"batch3.wasm", "./testdata/agents/batch3", "", true, true},
		{"paycall.wasm", "./testdata/agents/paycall", "", true, true},
		{"slackpost.wasm", "./testdata/agents/slackpost", "", true, true},
		{"slack-plugin.wasm", "../../examples/plugins/slack", "", true, true},
		{"mcpcall.wasm", "./testdata/agents/mcpcall", "", true, true},
		{"toolloop.wasm", "./testdata/agents/toolloop", "", true, false},
		{"support.wasm", "../../examples/agents/support", "", true, true},
		{"declared.wasm", "./testdata/agents/declared", "", true, false},
		{"waiter.wasm", "./testdata/agents/waiter", "", true, true},
		{"hostinit.wasm", "../../sandbox/testdata/goguests/hostinit", "", true, true},
	}
	errs := make([]error, len(builds))
	var wg sync.WaitGroup
	for i, b := range builds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			args := []string{"build", "-trimpath", "-ldflags", b.ldflags, "-o", filepath.Join(dir, b.out)}
			if b.reactor {
				args = append(args, "-buildmode=c-shared")
			}
			cmd := exec.Command("go", append(args, b.pkg)...)
			cmd.Env = os.Environ()
			if b.wasm {
				cmd.Env = append(cmd.Env, "GOOS=wasip1", "GOARCH=wasm")
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("build %s: %v\n%s", b.out, err, out)
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() || !buildOK {
		t.Skip("end-to-end test: builds and runs the orlojd binary (skipped with -short)")
	}
}

func agent(name string) string { return filepath.Join(binDir, name+".wasm") }

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output while tests read it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// node is one `orlojd serve` process.
type node struct {
	t          *testing.T
	dir        string
	api, raft  string
	extra      []string
	env        []string // ORLOJ_ variables: secrets go here, not on the command line
	apiTLS     bool
	cmd        *exec.Cmd
	log        *syncBuffer
	exited     chan struct{}
	exitErr    error
	standinURL string
	// portRetry and portTaken let a first start report a port taken by
	// another test (tryStart).
	portRetry, portTaken bool
}

type nodeOpt func(*node)

func withStandins(s *standins.Services) nodeOpt {
	return func(n *node) {
		n.standinURL = s.URL
		n.extra = append(n.extra, "--model-url", s.URL+"/v1", "--model", "standin-1")
	}
}

func withArgs(args ...string) nodeOpt { return func(n *node) { n.extra = append(n.extra, args...) } }

func withEnv(kv ...string) nodeOpt { return func(n *node) { n.env = append(n.env, kv...) } }

// withAPITLS serves the API over TLS; the CLI and the probes use https.
func withAPITLS() nodeOpt {
	return func(n *node) { n.apiTLS = true; n.extra = append(n.extra, "--api-tls") }
}

// url is the node's API root.
func (n *node) url() string {
	if n.apiTLS {
		return "https://" + n.api
	}
	return "http://" + n.api
}

// startNode runs serve in a new data dir and waits until it is ready.
func startNode(t *testing.T, opts ...nodeOpt) *node {
	t.Helper()
	needBinary(t)
	n := &node{t: t, dir: t.TempDir(), api: freePort(t), raft: freePort(t)}
	for _, o := range opts {
		o(n)
	}
	// freePort's port can be taken by a parallel test before the node
	// binds it: a first start that fails so gets fresh ports. (A restart
	// keeps its ports: the node's Raft address is part of its identity.)
	for try := 0; ; try++ {
		if n.tryStart() || try == 4 {
			break
		}
		n.api, n.raft = freePort(t), freePort(t)
		if err := os.RemoveAll(n.dir); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.kill)
	return n
}

// tryStart is start, except that a start-up that fails because a port is
// taken returns false instead of failing the test.
func (n *node) tryStart() bool {
	n.t.Helper()
	n.portRetry = true
	defer func() { n.portRetry = false }()
	n.start()
	return !n.portTaken
}

// start (re)starts the process on the node's dir and ports.
func (n *node) start() {
	n.t.Helper()
	n.portTaken = false
	args := append([]string{"serve", "--data-dir", n.dir, "--api-addr", n.api, "--raft-addr", n.raft,
		"--node-id", "n1", "--lease-ttl", "2s", "--http-allow", "127.0.0.1", "--log-level", "info"}, n.extra...)
	n.log = &syncBuffer{}
	n.cmd = exec.Command(orlojd, args...)
	n.cmd.Env = append(cleanEnv(), n.env...)
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() { n.exitErr = n.cmd.Wait(); close(n.exited) }()
	n.waitReady()
}

// waitReady polls /readyz until the node knows a leader and has caught up.
func (n *node) waitReady() {
	n.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			if n.portRetry && strings.Contains(n.log.String(), "address already in use") {
				n.portTaken = true
				return
			}
			n.t.Fatalf("orlojd serve exited during start-up: %v\n%s", n.exitErr, n.log)
		default:
		}
		resp, err := n.probeClient().Get(n.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond) // a poll interval, not synchronisation
	}
	n.t.Fatalf("node not ready after 60s\n%s", n.log)
}

// probeClient trusts the node's CA for a TLS API.
func (n *node) probeClient() *http.Client {
	if !n.apiTLS {
		return http.DefaultClient
	}
	pool := x509.NewCertPool()
	if b, err := os.ReadFile(filepath.Join(n.dir, "ca.pem")); err == nil {
		pool.AppendCertsFromPEM(b)
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "orloj-node"}}}
}

// signal sends sig and returns the exit code, failing after timeout.
func (n *node) signal(sig syscall.Signal, timeout time.Duration) int {
	n.t.Helper()
	if err := n.cmd.Process.Signal(sig); err != nil {
		n.t.Fatal(err)
	}
	return n.waitExit(sig.String(), timeout)
}

// waitExit waits for the process to end and returns its exit code (-1 when
// a signal killed it).
func (n *node) waitExit(after string, timeout time.Duration) int {
	n.t.Helper()
	select {
	case <-n.exited:
	case <-time.After(timeout):
		n.t.Fatalf("orlojd did not exit within %s of %s\n%s", timeout, after, n.log)
	}
	return n.cmd.ProcessState.ExitCode()
}

func (n *node) kill() {
	if n.cmd != nil && n.cmd.Process != nil {
		select {
		case <-n.exited:
		default:
			n.cmd.Process.Kill()
			<-n.exited
		}
	}
	if n.t.Failed() {
		n.t.Logf("orlojd log:\n%s", n.log)
	}
}

// waitLog waits until the node's log contains s.
func (n *node) waitLog(s string, timeout time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(n.log.String(), s) {
		if time.Now().After(deadline) {
			n.t.Fatalf("log never said %q\n%s", s, n.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cleanEnv is the environment without the ORLOJ_ (and OTEL_) settings of
// whoever runs the tests.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ORLOJ_") && !strings.HasPrefix(kv, "OPENAI_API_KEY=") && !strings.HasPrefix(kv, "OTEL_") {
			env = append(env, kv)
		}
	}
	return env
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// cli runs the CLI against the node; the token comes from its data dir.
func (n *node) cli(args ...string) result {
	n.t.Helper()
	return runCLI(n.t, append([]string{"ORLOJ_ADDR=" + n.url(), "ORLOJ_DATA_DIR=" + n.dir}, cleanEnv()...), args...)
}

func runCLI(t *testing.T, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, orlojd, args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("orlojd %s: %v", strings.Join(args, " "), err)
		}
		r.code = ee.ExitCode()
	}
	return r
}

// ok runs the CLI and fails the test unless it exits 0.
func (n *node) ok(args ...string) string {
	n.t.Helper()
	r := n.cli(args...)
	if r.code != 0 {
		n.t.Fatalf("orlojd %s: %s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// okJSON runs the CLI with -o json and decodes its output.
func (n *node) okJSON(out any, args ...string) {
	n.t.Helper()
	b := n.ok(append(args, "-o", "json")...)
	if err := json.Unmarshal([]byte(b), out); err != nil {
		n.t.Fatalf("orlojd %s -o json: %v\n%s", strings.Join(args, " "), err, b)
	}
}

// fails runs the CLI, wants exit code code and stderr containing each of
// want.
func (n *node) fails(code int, want []string, args ...string) result {
	n.t.Helper()
	r := n.cli(args...)
	if r.code != code {
		n.t.Fatalf("orlojd %s: want exit %d, got %s", strings.Join(args, " "), code, r)
	}
	for _, w := range want {
		if !strings.Contains(r.stderr, w) {
			n.t.Fatalf("orlojd %s: stderr does not say %q:\n%s", strings.Join(args, " "), w, r.stderr)
		}
	}
	return r
}

func startStandins(t *testing.T) *standins.Services {
	t.Helper()
	s, err := standins.Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func docInput(t *testing.T, s *standins.Services, docURL string) string {
	t.Helper()
	b, err := json.Marshal(map[string]string{"document": docURL, "ocr_url": s.URL + "/ocr", "records_url": s.URL + "/records"})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// taskJSON is what `task get -o json` must carry.
type taskJSON struct {
	ID       string          `json:"id"`
	Agent    string          `json:"agent"`
	Version  string          `json:"version"`
	State    string          `json:"state"`
	Attempts int             `json:"attempts"`
	Output   json.RawMessage `json:"output"`
	Error    *struct {
		Class      string `json:"class"`
		Message    string `json:"message"`
		StderrTail string `json:"stderr_tail"`
	} `json:"error"`
	DiscardReason string `json:"discard_reason"`
}

type callJSON struct {
	ID      string `json:"id"`
	Tool    string `json:"tool"`
	Outcome string `json:"outcome"`
	Attempt int    `json:"attempt"`
}

func outcomes(calls []callJSON) map[string]map[string]int {
	out := map[string]map[string]int{}
	for _, c := range calls {
		if out[c.Tool] == nil {
			out[c.Tool] = map[string]int{}
		}
		out[c.Tool][c.Outcome]++
	}
	return out
}

// TestPushSubmitWaitCalls is the problem statement through the CLI: the
// records database fails twice; the third attempt succeeds, and OCR and the
// model were invoked once and replayed after.
func TestPushSubmitWaitCalls(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	n := startNode(t, withStandins(s))
	if out := n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--version", "v1", "--tools", "http,model",
		"--memory-limit", "128MiB", "--timeout", "20s", "--max-attempts", "5"); !strings.Contains(out, "pushed docpipeline@v1") {
		t.Fatalf("push said %q", out)
	}
	var shown struct {
		Agent struct {
			Tools       []string `json:"tools"`
			MemoryLimit uint64   `json:"memory_limit"`
			Timeout     string   `json:"timeout"`
			MaxAttempts int      `json:"max_attempts"`
		} `json:"agent"`
	}
	n.okJSON(&shown, "agent", "show", "docpipeline")
	if a := shown.Agent; strings.Join(a.Tools, ",") != "http,model" || a.MemoryLimit != 128<<20 || a.Timeout != "20s" || a.MaxAttempts != 5 {
		t.Fatalf("agent show = %+v", a)
	}
	if out := n.ok("agent", "ls"); !strings.Contains(out, "docpipeline") || !strings.Contains(out, "v1") {
		t.Fatalf("agent ls:\n%s", out)
	}

	s.FailNextRecords(2)
	id := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, s.URL+"/blobs/invoice-1.txt"), "--key", "inv-1"))
	if id == "" || strings.ContainsAny(id, " \n") {
		t.Fatalf("submit printed %q, want one task ID", id)
	}
	again := n.cli("task", "submit", "docpipeline", "--input", "{}", "--key", "inv-1")
	if strings.TrimSpace(again.stdout) != id || again.code != 0 {
		t.Fatalf("resubmission with the same key: %s; want task %s", again, id)
	}
	if out := n.ok("task", "wait", id); !strings.Contains(out, "succeeded") {
		t.Fatalf("wait printed:\n%s", out)
	}

	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var out struct{ Class string }
	json.Unmarshal(tk.Output, &out)
	if tk.ID != id || tk.Agent != "docpipeline" || tk.State != "succeeded" || tk.Attempts != 3 || tk.Error != nil || out.Class != "invoice" {
		t.Fatalf("task get = %+v output %s", tk, tk.Output)
	}
	var calls []callJSON
	n.okJSON(&calls, "task", "calls", id)
	got := outcomes(calls)
	want := map[string]map[string]int{
		"http":  {"invoked": 3, "replayed": 4, "error": 2}, // fetch, OCR, record (failed twice)
		"model": {"invoked": 2, "replayed": 4},             // classify, extract
	}
	for tool, w := range want {
		for outcome, k := range w {
			if got[tool][outcome] != k {
				t.Errorf("calls: %s %s = %d, want %d (all %v)", tool, outcome, got[tool][outcome], k, got)
			}
		}
	}
	for _, c := range calls {
		if c.ID == "" || c.Attempt < 1 || c.Attempt > 3 {
			t.Errorf("call %+v: want an ID and an attempt in 1..3", c)
		}
	}
	if c := s.Counts(); c.Blob != 1 || c.OCR != 1 || c.Model != 2 || c.RecordEffects != 1 || c.DuplicateKeys != 0 {
		t.Fatalf("stand-in counts %+v", c)
	}
	if out := n.ok("task", "calls", id); !strings.Contains(out, "replayed") {
		t.Fatalf("task calls table:\n%s", out)
	}
	if out := n.ok("task", "events", id); !strings.Contains(out, "retry_scheduled") || !strings.Contains(out, "succeeded") {
		t.Fatalf("task events:\n%s", out)
	}
	if out := n.ok("task", "ls", "--state", "succeeded", "--agent", "docpipeline"); !strings.Contains(out, id) {
		t.Fatalf("task ls:\n%s", out)
	}
	if out := n.ok("task", "ls", "--state", "queued"); strings.Contains(out, id) {
		t.Fatalf("task ls --state queued lists a succeeded task:\n%s", out)
	}
	n.ok("lease", "ls")
	var members []struct{ ID, Role string }
	n.okJSON(&members, "cluster", "members")
	if len(members) != 1 || members[0].ID != "n1" || members[0].Role != "leader" {
		t.Fatalf("members = %+v", members)
	}
	n.fails(1, []string{"(conflict)"}, "task", "cancel", id)
}

// TestAuthRejected: a wrong token, or none, is refused with the API's
// message and exit status 1.
func TestAuthRejected(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.fails(1, []string{"orlojd: missing or wrong bearer token", "(unauthorized)"}, "task", "ls", "--token", "wrong")
	env := append([]string{"ORLOJ_ADDR=" + n.api, "ORLOJ_DATA_DIR=" + t.TempDir()}, cleanEnv()...)
	if r := runCLI(t, env, "agent", "ls"); r.code != 1 || !strings.Contains(r.stderr, "(unauthorized)") {
		t.Fatalf("without a token: %s", r)
	}
	env = append([]string{"ORLOJ_ADDR=" + n.api, "ORLOJ_TOKEN=" + readToken(t, n.dir)}, cleanEnv()...)
	if r := runCLI(t, env, "agent", "ls"); r.code != 0 {
		t.Fatalf("with ORLOJ_TOKEN: %s", r)
	}
	if r := runCLI(t, cleanEnv(), "agent", "ls", "--addr", "127.0.0.1:1"); r.code != 1 || !strings.Contains(r.stderr, "cannot reach") {
		t.Fatalf("with no node: %s", r)
	}
}

func readToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(filepath.Join(dir, "token"))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", st.Mode().Perm())
	}
	return strings.TrimSpace(string(b))
}

// TestBadInput: mistakes the CLI can see exit 2 before any request; ones
// the node refuses exit 1 with its message.
func TestBadInput(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.ok("agent", "push", agent("hello"), "--name", "hello")

	n.fails(2, []string{"--input", "not valid JSON"}, "task", "submit", "hello", "--input", `{"a":`)
	n.fails(2, []string{"--state"}, "task", "ls", "--state", "sleeping")
	n.fails(2, []string{"-o"}, "task", "ls", "-o", "yaml")
	n.fails(2, []string{"expected one task ID"}, "task", "get")
	n.fails(2, []string{"unknown command"}, "taks", "ls")
	n.fails(2, []string{"unknown flag"}, "task", "ls", "--bogus")
	n.fails(2, []string{"--reason is required"}, "dlq", "discard", "some-task")

	n.fails(1, []string{"ghost", "(not_found)"}, "task", "submit", "ghost")
	n.fails(1, []string{"(not_found)"}, "task", "get", "no-such-task")
	n.fails(1, []string{"evil.steal", "(invalid_module)"}, "agent", "push", "../../sandbox/testdata/evil_import.wasm", "--name", "evil")
	n.fails(1, []string{"(invalid_module)"}, "agent", "push", "../../sandbox/testdata/malformed.wasm", "--name", "bad")
	n.fails(1, []string{"no such file"}, "agent", "push", "nowhere.wasm")

	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, []byte(`"`+strings.Repeat("x", 2<<20)+`"`), 0o600); err != nil {
		t.Fatal(err)
	}
	n.fails(1, []string{"(too_large)"}, "task", "submit", "hello", "--input", "@"+big)

	id := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"echo":1}`))
	n.ok("task", "wait", id)
	n.fails(1, []string{"(conflict)"}, "dlq", "retry", id)
}

// TestDLQRetryAndDiscard: a poison document dead-letters; a fixed agent
// version retried from the DLQ finishes it with the earlier calls replayed;
// another is discarded with a reason.
func TestDLQRetryAndDiscard(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	n := startNode(t, withStandins(s))
	n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--version", "v1", "--tools", "http,model")
	poison := docInput(t, s, s.URL+"/blobs/poison.txt")
	// submit --wait exits as task wait does: 1, naming the outcome.
	r := n.fails(1, []string{"dead_letter", "permanent"}, "task", "submit", "docpipeline", "--input", poison, "--wait", "-o", "json")
	var sub taskJSON
	if err := json.Unmarshal([]byte(r.stdout), &sub); err != nil || sub.ID == "" || sub.State != "dead_letter" {
		t.Fatalf("submit --wait -o json of a poison document: %v\n%s", err, r)
	}
	id := sub.ID
	r = n.fails(1, []string{"dead_letter", "permanent"}, "task", "wait", id)
	if !strings.Contains(r.stdout, "date is missing") {
		t.Fatalf("wait should show the stderr tail naming the problem:\n%s", r.stdout)
	}

	var dlq []taskJSON
	n.okJSON(&dlq, "dlq", "ls", "--class", "permanent", "--agent", "docpipeline", "--since", "1h")
	if len(dlq) != 1 || dlq[0].ID != id || dlq[0].Error == nil || dlq[0].Error.Class != "permanent" {
		t.Fatalf("dlq ls = %+v", dlq)
	}
	var shown struct {
		Task  taskJSON `json:"task"`
		Calls []struct {
			Tool      string `json:"tool"`
			HasResult bool   `json:"has_result"`
		} `json:"calls"`
	}
	n.okJSON(&shown, "dlq", "show", id)
	if !strings.Contains(shown.Task.Error.StderrTail, "date is missing") || len(shown.Calls) != 4 {
		t.Fatalf("dlq show = %+v", shown)
	}

	n.ok("agent", "push", agent("docpipeline-v2"), "--name", "docpipeline", "--version", "v2", "--tools", "http,model")
	n.fails(1, []string{"(not_found)"}, "dlq", "retry", id, "--agent-version", "v9")
	if out := n.ok("dlq", "retry", id, "--agent-version", "v2"); !strings.Contains(out, "docpipeline@v2") {
		t.Fatalf("retry printed %q", out)
	}
	n.ok("task", "wait", id)
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	if tk.State != "succeeded" || tk.Version != "v2" || !strings.Contains(string(tk.Output), "2026-11-01") {
		t.Fatalf("after retry on v2: %+v %s", tk, tk.Output)
	}
	if c := s.Counts(); c.Blob != 1 || c.OCR != 1 || c.Model != 2 || c.Records != 1 || c.RecordEffects != 1 {
		t.Fatalf("the retry repeated recorded calls: %+v", c)
	}

	id2 := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--version", "v1", "--input", poison))
	n.fails(1, []string{"dead_letter"}, "task", "wait", id2)
	n.ok("dlq", "discard", id2, "--reason", "duplicate of "+id)
	n.okJSON(&tk, "task", "get", id2)
	if tk.State != "discarded" || tk.DiscardReason != "duplicate of "+id {
		t.Fatalf("after discard: %+v", tk)
	}
	id3 := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--version", "v1", "--input", poison))
	n.fails(1, []string{"dead_letter"}, "task", "wait", id3)
	if out := n.ok("task", "cancel", id3, "--reason", "not needed"); !strings.Contains(out, "cancelled") {
		t.Fatalf("cancel printed %q", out)
	}
	dlq = nil
	n.okJSON(&dlq, "dlq", "ls")
	if len(dlq) != 0 {
		t.Fatalf("dlq after retry and discard = %+v", dlq)
	}
}

// blocker is a blob store whose document requests wait until released.
type blocker struct {
	srv      *http.Server
	url      string
	arrived  chan struct{} // one value per request
	release  chan struct{}
	once     sync.Once
	requests int
	mu       sync.Mutex
}

func startBlocker(t *testing.T) *blocker {
	t.Helper()
	b := &blocker{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.url = "http://" + l.Addr().String() + "/doc"
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.requests++
		b.mu.Unlock()
		b.arrived <- struct{}{}
		select {
		case <-b.release:
		case <-r.Context().Done():
			return
		}
		fmt.Fprint(w, standins.Documents["invoice-2.txt"])
	})}
	go b.srv.Serve(l)
	t.Cleanup(func() { b.open(); b.srv.Close() })
	return b
}

func (b *blocker) open() { b.once.Do(func() { close(b.release) }) }

func (b *blocker) waitArrival(t *testing.T) {
	t.Helper()
	select {
	case <-b.arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("the agent never fetched the document")
	}
}

// TestSIGTERMDrains: SIGTERM with an attempt in flight lets it finish and
// exits 0; the task is succeeded after a restart. With a grace too short
// for the attempt, the node still exits 0 and the task finishes after a
// restart: nothing is lost.
func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	s := startStandins(t)

	t.Run("attempt finishes within the grace", func(t *testing.T) {
		b := startBlocker(t)
		n := startNode(t, withStandins(s), withArgs("--drain-grace", "60s"))
		n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--tools", "http,model")
		id := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, b.url)))
		b.waitArrival(t)
		if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		n.waitLog("draining", 30*time.Second)
		b.open() // the attempt in flight can finish now
		if code := n.waitExit("SIGTERM", 60*time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM\n%s", code, n.log)
		}
		n.start()
		var tk taskJSON
		n.okJSON(&tk, "task", "get", id)
		if tk.State != "succeeded" || tk.Attempts != 1 {
			t.Fatalf("after the drain: %+v", tk)
		}
	})

	t.Run("grace runs out", func(t *testing.T) {
		b := startBlocker(t)
		n := startNode(t, withStandins(s), withArgs("--drain-grace", "500ms"))
		n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--tools", "http,model")
		id := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, b.url)))
		b.waitArrival(t)
		if code := n.signal(syscall.SIGTERM, 60*time.Second); code != 0 {
			t.Fatalf("exit %d after SIGTERM\n%s", code, n.log)
		}
		b.open()
		n.start()
		n.ok("task", "wait", id, "--timeout", "2m")
	})
}

// TestSIGKILLRestart: every acknowledged submission finishes after the node
// is killed mid-work and restarted, and each record is written once. One
// task is held in its first step, so the kill always finds an attempt in
// flight with a live lease.
func TestSIGKILLRestart(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	b := startBlocker(t)
	n := startNode(t, withStandins(s))
	n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--tools", "http,model")
	ids := []string{strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, b.url)))}
	for i := range 4 {
		doc := fmt.Sprintf("%s/blobs/invoice-%d.txt", s.URL, i%2+1)
		ids = append(ids, strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--input", docInput(t, s, doc))))
	}
	b.waitArrival(t)
	if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
		t.Fatalf("exit code %d after SIGKILL", code)
	}
	b.open()
	n.start()
	for _, id := range ids {
		n.ok("task", "wait", id, "--timeout", "2m")
	}
	if c := s.Counts(); c.RecordEffects != len(ids) {
		t.Fatalf("records written %d, want %d (counts %+v)", c.RecordEffects, len(ids), c)
	}
	var all []taskJSON
	n.okJSON(&all, "task", "ls")
	if len(all) != len(ids) {
		t.Fatalf("task ls has %d tasks after restart, want %d", len(all), len(ids))
	}
}

// TestFollowerForwardsWrites: clients may write to any node. A follower
// answers writes itself (never 421): it catches up with the leader before
// it validates one and forwards it to the leader, so a client reads its
// writes on whichever node it asks next — an agent pushed on one node is
// found by a submission on the other the moment the push returns, a task
// submitted on the follower is found there at once — and submit --wait
// works on either node. The follower joined with the join token; no
// secret is on a command line.
func TestFollowerForwardsWrites(t *testing.T) {
	t.Parallel()
	const token = "e2e-shared-token-0123456789abcdef"
	n1 := startNode(t, withEnv("ORLOJ_TOKEN="+token))
	n2 := startNode(t, withEnv("ORLOJ_TOKEN="+token), withArgs("--node-id", "n2", "--join", n1.raft,
		"--join-token-file", filepath.Join(n1.dir, "join-token")))
	var members []struct {
		ID           string  `json:"id"`
		Role         string  `json:"role"`
		AppliedIndex *uint64 `json:"applied_index"`
	}
	n1.okJSON(&members, "cluster", "members")
	if len(members) != 2 {
		t.Fatalf("members = %+v", members)
	}
	for _, m := range members {
		if m.Role == "unreachable" || m.AppliedIndex == nil {
			t.Fatalf("member %s did not answer over the cluster port: %+v", m.ID, m)
		}
		if m.ID == "n2" && m.Role == "leader" {
			t.Fatalf("n2 leads; the test needs it to follow: %+v", members)
		}
	}
	if got := strings.TrimSpace(n1.ok("cluster", "join-token")); got == "" || got != strings.TrimSpace(n2.ok("cluster", "join-token")) {
		t.Fatalf("join tokens of the two members differ: %q", got)
	}
	hello, err := os.ReadFile(agent("hello"))
	if err != nil {
		t.Fatal(err)
	}

	// Pushed on the leader, submitted on the follower straight after.
	var av struct{ Version string }
	n1.post(http.StatusCreated, &av, "/v1/agents?name=hello&version=v1", "application/wasm", hello, token)
	var tv struct {
		ID, Version, State string
		Output             json.RawMessage
	}
	n2.post(http.StatusCreated, &tv, "/v1/tasks", "application/json", []byte(`{"agent":"hello","input":{"x":1}}`), token)
	id := tv.ID
	if tv.Version != "v1" {
		t.Fatalf("submitted on the follower: %+v", tv)
	}
	var tk taskJSON
	n2.okJSON(&tk, "task", "get", id) // on the follower, at once
	if tk.ID != id {
		t.Fatalf("task get on the follower right after its submit: %+v", tk)
	}
	n1.ok("task", "wait", id)
	n2.okJSON(&tk, "task", "wait", id)
	var out bytes.Buffer
	if tk.State != "succeeded" || json.Compact(&out, tk.Output) != nil || out.String() != `{"x":1}` {
		t.Fatalf("task via the follower: %+v %s", tk, tk.Output)
	}

	// Pushed on the follower (forwarded), submitted on the leader straight
	// after: the newest version is the one just pushed.
	n2.post(http.StatusCreated, &av, "/v1/agents?name=hello&version=v2", "application/wasm", hello, token)
	n1.post(http.StatusCreated, &tv, "/v1/tasks", "application/json", []byte(`{"agent":"hello"}`), token)
	if tv.Version != "v2" {
		t.Fatalf("submitted on the leader after a push on the follower: version %q, want v2", tv.Version)
	}

	// Submit and wait in one request, on either node.
	for _, n := range []*node{n2, n1} {
		n.post(http.StatusCreated, &tv, "/v1/tasks?wait=30s", "application/json", []byte(`{"agent":"hello","input":{"y":2}}`), token)
		out.Reset()
		if tv.State != "succeeded" || json.Compact(&out, tv.Output) != nil || out.String() != `{"y":2}` {
			t.Fatalf("submit?wait=30s on %s: %+v %s", n.raft, tv, tv.Output)
		}
		n.okJSON(&tk, "task", "submit", "hello", "--input", `{"z":3}`, "--wait", "--timeout", "1m")
		out.Reset()
		if tk.State != "succeeded" || json.Compact(&out, tk.Output) != nil || out.String() != `{"z":3}` {
			t.Fatalf("task submit --wait on %s: %+v %s", n.raft, tk, tk.Output)
		}
	}
	// A cancel on the follower reaches the FSM too: a conflict (the task
	// has succeeded), not a 421.
	n2.fails(1, []string{"(conflict)"}, "task", "cancel", id)
	// Membership stays with the leader.
	n2.post(http.StatusMisdirectedRequest, nil, "/v1/cluster/transfer", "application/json", []byte(`{}`), token)
}

// post sends body to the node's API and wants status; it decodes the
// answer into out (if not nil).
func (n *node) post(status int, out any, path, contentType string, body []byte, token string) {
	n.t.Helper()
	req, err := http.NewRequest(http.MethodPost, n.url()+path, bytes.NewReader(body))
	if err != nil {
		n.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", contentType)
	resp, err := n.probeClient().Do(req)
	if err != nil {
		n.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	var raw bytes.Buffer
	if _, err := raw.ReadFrom(resp.Body); err != nil {
		n.t.Fatalf("POST %s: %v", path, err)
	}
	if resp.StatusCode != status {
		n.t.Fatalf("POST %s on %s: %s, want %d: %s", path, n.api, resp.Status, status, raw.Bytes())
	}
	if out != nil {
		if err := json.Unmarshal(raw.Bytes(), out); err != nil {
			n.t.Fatalf("POST %s: decode %s: %v", path, raw.Bytes(), err)
		}
	}
}

// TestJoinRefusedExitsAtOnce: a wrong join token ends `orlojd serve` at
// once, with the fix in one line.
func TestJoinRefusedExitsAtOnce(t *testing.T) {
	t.Parallel()
	n1 := startNode(t)
	tok, err := os.ReadFile(filepath.Join(n1.dir, "join-token"))
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(strings.TrimSpace(string(tok)), ".")
	wrong := parts[0] + "." + parts[1] + "." + strings.Repeat("0", 48)
	cmd := exec.Command(orlojd, "serve", "--data-dir", t.TempDir(), "--api-addr", freePort(t), "--raft-addr", freePort(t),
		"--node-id", "n2", "--join", n1.raft)
	cmd.Env = append(cleanEnv(), "ORLOJ_JOIN_TOKEN="+wrong)
	began := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve with a wrong join token exited 0\n%s", out)
	}
	if !strings.Contains(string(out), "join refused: the join token does not match this cluster; copy DATA_DIR/join-token from a member") {
		t.Fatalf("serve output does not say how to fix the token:\n%s", out)
	}
	if el := time.Since(began); el > 20*time.Second {
		t.Fatalf("refused after %s", el)
	}
}

// TestAPITLS: --api-tls serves the API with the node's certificate; the CLI
// trusts DATA_DIR/ca.pem for an https:// address, and plain http is refused.
func TestAPITLS(t *testing.T) {
	t.Parallel()
	n := startNode(t, withAPITLS())
	n.ok("agent", "push", agent("hello"), "--name", "hello", "--version", "v1")
	if r := runCLI(t, append([]string{"ORLOJ_ADDR=http://" + n.api, "ORLOJ_DATA_DIR=" + n.dir}, cleanEnv()...), "agent", "ls"); r.code == 0 {
		t.Fatalf("plain http against a TLS API succeeded: %s", r)
	}
	other := t.TempDir()
	if r := runCLI(t, append([]string{"ORLOJ_ADDR=" + n.url(), "ORLOJ_DATA_DIR=" + n.dir, "ORLOJ_CA_FILE=" + filepath.Join(other, "none.pem")}, cleanEnv()...), "agent", "ls"); r.code == 0 {
		t.Fatalf("a missing --ca-file was ignored: %s", r)
	}
}

// TestListLimitThroughServe: task ls, dlq ls and approval ls take --limit
// (1 to 10,000) and say on stderr when more match than they show.
func TestListLimitThroughServe(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.ok("agent", "push", agent("hello"), "--name", "hello")
	for range 3 {
		n.ok("task", "submit", "hello", "--input", `{"echo":1}`)
	}
	r := n.cli("task", "ls", "--limit", "2")
	if r.code != 0 || strings.Count(r.stdout, "hello@") != 2 || !strings.Contains(r.stderr, "showing the first 2; more match") {
		t.Fatalf("task ls --limit 2: %s", r)
	}
	if r := n.cli("task", "ls"); r.code != 0 || strings.Count(r.stdout, "hello@") != 3 || r.stderr != "" {
		t.Fatalf("task ls: %s", r)
	}
	var ts []struct{ ID string }
	if n.okJSON(&ts, "task", "ls", "--limit", "1"); len(ts) != 1 {
		t.Fatalf("task ls --limit 1 -o json: %d tasks", len(ts))
	}
	for _, verb := range [][]string{{"task", "ls"}, {"dlq", "ls"}, {"approval", "ls"}} {
		n.fails(2, []string{"--limit must be from 1 to 10000"}, append(verb, "--limit", "10001")...)
	}
}
