package mcp_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/plugins/mcp/mcptest"
)

// stdioEnv makes the test binary, started as a stdio server, serve
// mcptest instead of running tests.
const stdioEnv = "ORLOJ_MCPTEST_STDIO"

func TestMain(m *testing.M) {
	if os.Getenv(stdioEnv) == "1" {
		if err := mcptest.New().RunStdio(context.Background()); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Output: testWriter{t}, Level: hclog.Debug})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// registry collects what a server registers.
type registry struct {
	mu    sync.Mutex
	tools map[string]plugins.Tool
	added chan string
}

func newRegistry() *registry {
	return &registry{tools: map[string]plugins.Tool{}, added: make(chan string, 64)}
}

func (r *registry) Register(t plugins.Tool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.tools[t.Name()]; dup {
		return plugins.ErrDuplicateTool
	}
	r.tools[t.Name()] = t
	r.added <- t.Name()
	return nil
}

func (r *registry) get(t *testing.T, name string) plugins.Tool {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	tool, ok := r.tools[name]
	if !ok {
		t.Fatalf("no tool %q; have %v", name, r.tools)
	}
	return tool
}

func startHTTP(t testing.TB, cfg mcp.ServerConfig, client ...*http.Client) (*mcptest.Server, *httptest.Server, *mcp.Server, *registry) {
	ts := mcptest.New()
	hs := httptest.NewServer(ts.Handler())
	t.Cleanup(hs.Close)
	t.Cleanup(ts.Close) // runs first: releases held calls
	cfg.Name, cfg.URL = "web", hs.URL
	reg := newRegistry()
	opts := mcp.Options{Logger: testLogger(t), Register: reg.Register}
	if len(client) > 0 {
		opts.HTTPClient = client[0]
	}
	s, err := mcp.Start(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return ts, hs, s, reg
}

func startStdio(t testing.TB, cfg mcp.ServerConfig, workDir ...string) (*mcp.Server, *registry) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Env == nil {
		cfg.Env = map[string]string{}
	}
	cfg.Name, cfg.Command, cfg.Env[stdioEnv] = "local", exe, "1"
	dir := t.TempDir()
	if len(workDir) > 0 {
		dir = workDir[0]
	}
	reg := newRegistry()
	s, err := mcp.Start(cfg, mcp.Options{Logger: testLogger(t), Register: reg.Register, WorkDir: dir,
		RestartBase: 10 * time.Millisecond, RestartCap: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s, reg
}

func invoke(t testing.TB, tool plugins.Tool, id, params string) (json.RawMessage, error) {
	t.Helper()
	res, err := tool.Invoke(context.Background(), plugins.Call{ID: id, TaskID: "t1", Attempt: 1, Params: json.RawMessage(params)})
	return res.Body, err
}

type echoResult struct {
	Content []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	} `json:"content"`
	StructuredContent struct {
		Text, Key, Header string
		Applied           int
	} `json:"structuredContent"`
	IsError bool `json:"isError"`
}

func decode(t testing.TB, b json.RawMessage) echoResult {
	t.Helper()
	var r echoResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("result %s: %v", b, err)
	}
	return r
}

func wantStatus(t *testing.T, err error, want abi.Status, text string) {
	t.Helper()
	if got, _ := abi.StatusOf(err); got != want || !strings.Contains(err.Error(), text) {
		t.Fatalf("error %v (status %v); want %v containing %q", err, got, want, text)
	}
}

func TestSemanticsFromAnnotations(t *testing.T) {
	t.Parallel()
	f, tr := false, true
	for _, c := range []struct {
		name string
		a    *mcpsdk.ToolAnnotations
		want plugins.Semantics
	}{
		{"none", nil, plugins.Unsafe},
		{"empty", &mcpsdk.ToolAnnotations{}, plugins.Unsafe},
		{"read only", &mcpsdk.ToolAnnotations{ReadOnlyHint: true}, plugins.ReadOnly},
		{"idempotent", &mcpsdk.ToolAnnotations{IdempotentHint: true}, plugins.Idempotent},
		{"destructive idempotent", &mcpsdk.ToolAnnotations{IdempotentHint: true, DestructiveHint: &tr}, plugins.Idempotent},
		{"destructive", &mcpsdk.ToolAnnotations{DestructiveHint: &tr}, plugins.Unsafe},
		{"additive", &mcpsdk.ToolAnnotations{DestructiveHint: &f}, plugins.Unsafe},
	} {
		if got := mcp.SemanticsFromAnnotations(c.a); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestServerConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		cfg  mcp.ServerConfig
		want string
	}{
		{"no name", mcp.ServerConfig{URL: "http://x"}, "ServerConfig.Name"},
		{"slash", mcp.ServerConfig{Name: "a/b", URL: "http://x"}, "ServerConfig.Name"},
		{"bad char", mcp.ServerConfig{Name: "a b", URL: "http://x"}, "ServerConfig.Name"},
		{"neither", mcp.ServerConfig{Name: "a"}, "ServerConfig.URL"},
		{"both", mcp.ServerConfig{Name: "a", URL: "http://x", Command: "x"}, "ServerConfig.URL"},
		{"bad scheme", mcp.ServerConfig{Name: "a", URL: "ftp://x"}, "ServerConfig.URL"},
		{"args with url", mcp.ServerConfig{Name: "a", URL: "http://x", Args: []string{"y"}}, "ServerConfig.Args"},
		{"env name", mcp.ServerConfig{Name: "a", Command: "x", Env: map[string]string{"A=B": "c"}}, "ServerConfig.Env"},
		{"reconcile", mcp.ServerConfig{Name: "a", Command: "x", Tools: map[string]plugins.Semantics{"t": plugins.Reconcile}}, `ServerConfig.Tools["t"]`},
		{"unknown semantics", mcp.ServerConfig{Name: "a", Command: "x", Tools: map[string]plugins.Semantics{"t": "maybe"}}, `ServerConfig.Tools["t"]`},
		{"timeout", mcp.ServerConfig{Name: "a", Command: "x", Timeout: -1}, "ServerConfig.Timeout"},
		{"cap", mcp.ServerConfig{Name: "a", Command: "x", MaxResponseBytes: abi.MaxResponseBytes + 1}, "ServerConfig.MaxResponseBytes"},
	} {
		err := c.cfg.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
	ok := mcp.ServerConfig{Name: "docs", Command: "docs-mcp", Args: []string{"--stdio"}, Timeout: 5 * time.Second,
		Tools: map[string]plugins.Semantics{"write": plugins.Idempotent}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(ok)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"timeout":"5s"`) {
		t.Errorf("JSON %s: want the timeout as a duration string", b)
	}
	var back mcp.ServerConfig
	if err := json.Unmarshal(b, &back); err != nil || back.Timeout != ok.Timeout || back.Tools["write"] != plugins.Idempotent {
		t.Errorf("round trip: %+v, %v", back, err)
	}
	if err := json.Unmarshal([]byte(`{"name":"x","comand":"y"}`), &back); err == nil {
		t.Error("an unknown key was accepted")
	}
}

// A streamable HTTP server: its tools, their semantics, calls with the
// key in _meta and in the header, and each kind of failure.
func TestHTTPServer(t *testing.T) {
	t.Parallel()
	ts, _, _, reg := startHTTP(t, mcp.ServerConfig{Timeout: 2 * time.Second, MaxResponseBytes: 1000,
		Tools: map[string]plugins.Semantics{"plain": plugins.Idempotent}})
	for name, want := range map[string]plugins.Semantics{"web/echo": plugins.ReadOnly, "web/put": plugins.Idempotent,
		"web/charge": plugins.Unsafe, "web/plain": plugins.Idempotent /* overridden */, "web/fail": plugins.ReadOnly} {
		if got := reg.get(t, name).Semantics(); got != want {
			t.Errorf("%s: semantics %s, want %s", name, got, want)
		}
	}
	echo := reg.get(t, "web/echo")
	if !strings.Contains(string(echo.Schema()), `"text"`) {
		t.Errorf("schema %s: want the tool's input schema", echo.Schema())
	}
	body, err := invoke(t, echo, "call-1", `{"text":"hi"}`)
	if err != nil {
		t.Fatal(err)
	}
	r := decode(t, body)
	if r.IsError || len(r.Content) != 1 || r.Content[0].Type != "text" || r.Content[0].Text != "hi" {
		t.Errorf("result %s", body)
	}
	if r.StructuredContent.Key != "call-1" || r.StructuredContent.Header != "call-1" {
		t.Errorf("server saw key %q in _meta and %q in Idempotency-Key; want call-1 in both", r.StructuredContent.Key, r.StructuredContent.Header)
	}

	_, err = invoke(t, reg.get(t, "web/fail"), "call-2", `{}`)
	wantStatus(t, err, abi.StatusToolError, "card declined")

	before, _ := ts.Counts("echo")
	_, err = invoke(t, echo, "call-3", `{"txt":"hi"}`)
	wantStatus(t, err, abi.StatusInvalidArgument, "input schema")
	_, err = invoke(t, echo, "call-4", `["hi"]`)
	wantStatus(t, err, abi.StatusInvalidArgument, "JSON object")
	if after, _ := ts.Counts("echo"); after != before {
		t.Errorf("params refused here reached the server (%d calls, want %d)", after, before)
	}

	_, err = invoke(t, reg.get(t, "web/big"), "call-5", `{"n":5000}`)
	wantStatus(t, err, abi.StatusToolError, "limit 1000")

	_, err = invoke(t, reg.get(t, "web/slow"), "call-6", `{}`)
	wantStatus(t, err, abi.StatusTransient, "no answer within 2s")
	if errors.Is(err, plugins.ErrNotSent) {
		t.Error("a call the server received is marked not sent")
	}
}

// tools/list_changed adds the new tool; a tool the server drops is
// not_found.
func TestHTTPListChanged(t *testing.T) {
	t.Parallel()
	ts, _, s, reg := startHTTP(t, mcp.ServerConfig{Timeout: 5 * time.Second})
	for range len(s.Tools()) {
		<-reg.added
	}
	ts.Add("late")
	select {
	case name := <-reg.added:
		if name != "web/late" {
			t.Fatalf("registered %q, want web/late", name)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the new tool was never registered")
	}
	late := reg.get(t, "web/late")
	if _, err := invoke(t, late, "c1", `{}`); err != nil {
		t.Fatal(err)
	}
	ts.MCP.RemoveTools("late")
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := invoke(t, late, "c2", `{}`)
		if s, _ := abi.StatusOf(err); s == abi.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("call of a removed tool: %v; want not_found", err)
		}
		time.Sleep(10 * time.Millisecond) // the list refresh is the server's notification, not ours to await
	}
}

// A server that is gone: the call fails transient, and as no connection
// was ever made for it, not sent. (Keep-alives are off: a request written
// to a kept connection the server has closed is not known to be unread.)
func TestHTTPServerGoneIsNotSent(t *testing.T) {
	t.Parallel()
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	_, hs, _, reg := startHTTP(t, mcp.ServerConfig{Timeout: 500 * time.Millisecond}, client)
	echo := reg.get(t, "web/echo")
	hs.CloseClientConnections()
	hs.Close()
	_, err := invoke(t, echo, "c1", `{"text":"x"}`)
	wantStatus(t, err, abi.StatusTransient, "web/echo")
	if !errors.Is(err, plugins.ErrNotSent) {
		t.Errorf("error %v: want ErrNotSent, nothing reached a server", err)
	}
}

// An HTTP server that restarts and forgets the session: the call that
// finds out fails transient, the session is made again, the next call is
// answered.
func TestHTTPServerRestart(t *testing.T) {
	t.Parallel()
	var h atomic.Pointer[http.Handler]
	first := mcptest.New().Handler()
	h.Store(&first)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { (*h.Load()).ServeHTTP(w, r) }))
	t.Cleanup(hs.Close)
	reg := newRegistry()
	s, err := mcp.Start(mcp.ServerConfig{Name: "web", URL: hs.URL, Timeout: 5 * time.Second},
		mcp.Options{Logger: testLogger(t), Register: reg.Register, RestartBase: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	second := mcptest.New().Handler()
	h.Store(&second)
	hs.CloseClientConnections()
	echo := reg.get(t, "web/echo")
	_, err = invoke(t, echo, "c-1", `{"text":"x"}`)
	wantStatus(t, err, abi.StatusTransient, "session not found")
	if !errors.Is(err, plugins.ErrNotSent) {
		t.Errorf("error %v: want ErrNotSent, the server said it processed nothing", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Restarts() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("the session was never made again")
		}
		time.Sleep(5 * time.Millisecond) // polls the loop's counter; no event to await from outside
	}
	if _, err := invoke(t, echo, "c-2", `{"text":"x"}`); err != nil {
		t.Fatalf("after the server restarted: %v", err)
	}
}

// net/http may re-send a request with an Idempotency-Key by itself; an
// unsafe tool's requests are made so it cannot (no GetBody), an
// idempotent tool's may.
func TestHTTPUnsafeRequestsNotReplayable(t *testing.T) {
	t.Parallel()
	rec := &recorder{base: http.DefaultTransport, replayable: map[string]bool{}}
	_, _, _, reg := startHTTP(t, mcp.ServerConfig{Timeout: 5 * time.Second}, &http.Client{Transport: rec})
	for _, c := range []struct{ tool, id, params string }{
		{"web/charge", "k-charge", `{"amount":1}`}, {"web/put", "k-put", `{"k":"a"}`}} {
		if _, err := invoke(t, reg.get(t, c.tool), c.id, c.params); err != nil {
			t.Fatal(err)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if r, ok := rec.replayable["k-charge"]; !ok || r {
		t.Errorf("unsafe call: replayable %v (seen %v), want false", r, ok)
	}
	if r, ok := rec.replayable["k-put"]; !ok || !r {
		t.Errorf("idempotent call: replayable %v (seen %v), want true", r, ok)
	}
}

type recorder struct {
	base       http.RoundTripper
	mu         sync.Mutex
	replayable map[string]bool // by Idempotency-Key: the request had a GetBody
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	k := req.Header.Get("Idempotency-Key")
	if vs := req.Header["idempotency-key"]; k == "" && len(vs) > 0 {
		k = vs[0] // an unsafe call's, spelt so net/http does not replay it
	}
	if k != "" {
		r.mu.Lock()
		r.replayable[k] = req.GetBody != nil
		r.mu.Unlock()
	}
	return r.base.RoundTrip(req)
}

// A stdio server the node starts: tools, calls, the key in _meta, dedupe
// by key.
func TestStdioServer(t *testing.T) {
	t.Parallel()
	_, reg := startStdio(t, mcp.ServerConfig{Timeout: 10 * time.Second})
	if got := reg.get(t, "local/charge").Semantics(); got != plugins.Unsafe {
		t.Errorf("charge: %s, want unsafe", got)
	}
	body, err := invoke(t, reg.get(t, "local/echo"), "k-1", `{"text":"hello"}`)
	if err != nil {
		t.Fatal(err)
	}
	if r := decode(t, body); r.Content[0].Text != "hello" || r.StructuredContent.Key != "k-1" || r.StructuredContent.Header != "" {
		t.Errorf("result %s: want the text and key k-1, no header over stdio", body)
	}
	put := reg.get(t, "local/put")
	for i, c := range []struct {
		id      string
		applied int
	}{{"p-1", 1}, {"p-1", 1}, {"p-2", 2}} {
		body, err := invoke(t, put, c.id, `{"k":"a","v":"b"}`)
		if err != nil {
			t.Fatal(err)
		}
		if got := decode(t, body).StructuredContent.Applied; got != c.applied {
			t.Errorf("put %d (key %s): applied %d, want %d", i, c.id, got, c.applied)
		}
	}
}

// A stdio server that dies mid-call: the call is transient and maybe
// sent; the server is restarted and the next call is answered.
func TestStdioRestart(t *testing.T) {
	t.Parallel()
	s, reg := startStdio(t, mcp.ServerConfig{Timeout: 10 * time.Second})
	_, err := invoke(t, reg.get(t, "local/crash"), "c-1", `{}`)
	wantStatus(t, err, abi.StatusTransient, "local/crash")
	t.Logf("crash: %v", err)
	if errors.Is(err, plugins.ErrNotSent) {
		t.Error("a call the server read is marked not sent")
	}
	body, err := invoke(t, reg.get(t, "local/echo"), "c-2", `{"text":"back"}`)
	if err != nil {
		t.Fatal(err)
	}
	if r := decode(t, body); r.Content[0].Text != "back" {
		t.Errorf("after restart: %s", body)
	}
	if s.Restarts() < 1 {
		t.Errorf("restarts %d, want at least 1", s.Restarts())
	}
}

// A stdio server gets its declared env, PATH and HOME, nothing else of
// the node's environment, and runs in its own directory.
func TestStdioEnvironment(t *testing.T) {
	t.Setenv("ORLOJ_TEST_NODE_SECRET", "s3cret") // in the node's environment only
	dir := filepath.Join(t.TempDir(), "mcp", "local")
	_, reg := startStdio(t, mcp.ServerConfig{Env: map[string]string{"GIVEN": "yes"}}, dir)
	body, err := invoke(t, reg.get(t, "local/env"), "e-1", `{}`)
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		StructuredContent struct {
			Env []string
			Dir string
		} `json:"structuredContent"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, kv := range r.StructuredContent.Env {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
		if strings.Contains(kv, "s3cret") {
			t.Errorf("the node's variable reached the server: %s", kv)
		}
	}
	slices.Sort(names)
	if want := []string{"GIVEN", "HOME", stdioEnv, "PATH"}; !slices.Equal(names, want) {
		t.Errorf("server environment %v, want exactly %v", names, want)
	}
	if r.StructuredContent.Dir != dir || !slices.Contains(r.StructuredContent.Env, "HOME="+dir) {
		t.Errorf("server runs in %q with %v; want %q as its directory and HOME", r.StructuredContent.Dir, r.StructuredContent.Env, dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("working directory: %v, %v; want 0700", fi, err)
	}
}

func TestStartRefusesMissingCommand(t *testing.T) {
	t.Parallel()
	_, err := mcp.Start(mcp.ServerConfig{Name: "x", Command: "/nonexistent/mcp-server"}, mcp.Options{WorkDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "command") {
		t.Fatalf("%v, want the command refused", err)
	}
}
