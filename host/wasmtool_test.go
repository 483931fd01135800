package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

var (
	pluginOnce sync.Once
	pluginDir  string
	pluginErr  error
)

// pluginWasm builds (once) the plugins the tests run: examples/plugins/slack
// and testdata/plugins/hostile.
func pluginWasm(t testing.TB, name string) []byte {
	t.Helper()
	pluginOnce.Do(func() {
		if pluginDir, pluginErr = os.MkdirTemp("", "orloj-plugins"); pluginErr != nil {
			return
		}
		for out, pkg := range map[string]string{"slack": "../examples/plugins/slack", "hostile": "./testdata/plugins/hostile"} {
			// Reactors, as plugins should be built: pre-initialized once.
			cmd := exec.Command("go", "build", "-trimpath", "-buildmode=c-shared", "-o", filepath.Join(pluginDir, out+".wasm"), pkg)
			cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
			if b, err := cmd.CombinedOutput(); err != nil {
				pluginErr = fmt.Errorf("build %s: %v\n%s", pkg, err, b)
				return
			}
		}
	})
	if pluginErr != nil {
		t.Fatal(pluginErr)
	}
	b, err := os.ReadFile(filepath.Join(pluginDir, name+".wasm"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// slackStandin answers chat.postMessage, echoing the Authorization header
// it got into its answer (a service that leaks what it was sent).
type slackStandin struct {
	*httptest.Server
	mu   sync.Mutex
	seen []http.Header
}

func startSlack(t *testing.T) *slackStandin {
	s := &slackStandin{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, r.Header.Clone())
		s.mu.Unlock()
		fmt.Fprintf(w, `{"ok":true,"channel":"C1","ts":"1.%d","echo":%q}`, len(s.seen), r.Header.Get("Authorization"))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *slackStandin) host() string { u, _ := url.Parse(s.URL); return u.Hostname() }

const slackSecret = "xoxb-0123-SECRET-value"

func slackTool(t *testing.T, s *slackStandin, allow ...string) *WASMTool {
	t.Helper()
	tool, err := NewWASMTool(context.Background(), WASMToolConfig{Module: pluginWasm(t, "slack"), Runtime: runtime(t),
		AllowHosts: allow, Secrets: plugins.MapSecrets{"slack-token": slackSecret}})
	if err != nil {
		t.Fatal(err)
	}
	return tool
}

// The plugin describes itself and posts through the host with the secret
// filled in and the call's Idempotency-Key.
func TestWASMToolInvokes(t *testing.T) {
	t.Parallel()
	s := startSlack(t)
	tool := slackTool(t, s, s.host())
	if tool.Name() != "slack" || tool.Semantics() != plugins.Idempotent || !strings.Contains(string(tool.Schema()), `"channel"`) {
		t.Fatalf("described as %s %s %s", tool.Name(), tool.Semantics(), tool.Schema())
	}
	res, err := tool.Invoke(t.Context(), plugins.Call{ID: "call-1", TaskID: "t", Params: json.RawMessage(`{"channel":"C1","text":"hi","api_url":"` + s.URL + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(res.Body), slackSecret) || !strings.Contains(string(res.Body), `"ts":"1.1"`) {
		t.Errorf("result %s: want the answer, with the secret redacted", res.Body)
	}
	if len(s.seen) != 1 || s.seen[0].Get("Authorization") != "Bearer "+slackSecret || s.seen[0].Get("Idempotency-Key") != "call-1" {
		t.Errorf("service saw %v", s.seen)
	}
}

// A host the definition does not allow is refused before anything is sent.
func TestWASMToolDeniedUndeclaredHost(t *testing.T) {
	t.Parallel()
	s := startSlack(t)
	tool := slackTool(t, s, "example.com")
	_, err := tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"channel":"C1","text":"hi","api_url":"` + s.URL + `"}`)})
	if st, _ := abi.StatusOf(err); st != abi.StatusPermissionDenied {
		t.Errorf("err %v, want permission_denied", err)
	}
	if len(s.seen) != 0 {
		t.Errorf("the service was reached %d times", len(s.seen))
	}
}

// A hostile plugin is contained like a hostile agent: each misbehaviour
// ends its call as transient, and the node (this test) is unharmed.
func TestWASMToolContainsHostilePlugins(t *testing.T) {
	t.Parallel()
	tool, err := NewWASMTool(context.Background(), WASMToolConfig{Module: pluginWasm(t, "hostile"), Runtime: runtime(t),
		Timeout: 2 * time.Second, MemoryLimit: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"loop", "bomb", "bigout", "exit"} {
		start := time.Now()
		_, err := tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"mode":"` + mode + `"}`)})
		if st, _ := abi.StatusOf(err); st != abi.StatusTransient || !strings.Contains(err.Error(), "the plugin failed") {
			t.Errorf("%s: %v, want transient saying the plugin failed", mode, err)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s took %s", mode, d)
		}
	}
	// A plugin that hands back what a service echoed of its secret has it
	// cut out of its answer.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "you sent %s", r.Header.Get("Authorization"))
	}))
	defer echo.Close()
	eu, _ := url.Parse(echo.URL)
	leaky, err := NewWASMTool(context.Background(), WASMToolConfig{Module: pluginWasm(t, "hostile"), Runtime: runtime(t),
		AllowHosts: []string{eu.Hostname()}, Secrets: plugins.MapSecrets{"token": slackSecret}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := leaky.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"mode":"http","url":"` + echo.URL + `"}`)})
	if err != nil || strings.Contains(string(res.Body), slackSecret) || !strings.Contains(string(res.Body), "you sent Bearer [redacted]") {
		t.Errorf("echoed secret: %s, %v; want it redacted", res.Body, err)
	}
	// A plugin that loops on HTTP is stopped at the per-call bound.
	var hits atomic.Int32
	counter := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer counter.Close()
	cu, _ := url.Parse(counter.URL)
	flooder, err := NewWASMTool(context.Background(), WASMToolConfig{Module: pluginWasm(t, "hostile"), Runtime: runtime(t), AllowHosts: []string{cu.Hostname()}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = flooder.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"mode":"flood","url":"` + counter.URL + `"}`)})
	if st, _ := abi.StatusOf(err); st != abi.StatusToolError || !strings.Contains(err.Error(), "at most 64 HTTP requests") || hits.Load() != maxPluginHTTPCalls {
		t.Errorf("flood: %v after %d requests; want a tool_error after %d", err, hits.Load(), maxPluginHTTPCalls)
	}
	// A secret the node does not hold is transient (another node may).
	_, err = tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"mode":"http","url":"http://127.0.0.1:1/"}`)})
	if st, _ := abi.StatusOf(err); st != abi.StatusTransient || !strings.Contains(err.Error(), `no secret "token"`) {
		t.Errorf("missing secret: %v", err)
	}
}

// Only http is a capability; a module that imports what Orloj does not
// provide is not a plugin.
func TestWASMToolRefusals(t *testing.T) {
	t.Parallel()
	d := &pluginDispatcher{t: &WASMTool{}, pc: &pluginCall{used: &secretsUsed{}}}
	if _, err := d.Call(t.Context(), abi.CallRequest{Tool: "kv", Params: json.RawMessage(`{}`)}); !errors.Is(err, abi.StatusPermissionDenied) {
		t.Errorf("kv from a plugin: %v", err)
	}
	if err := d.Emit(t.Context(), abi.Effect{Tool: "http"}); !errors.Is(err, abi.StatusPermissionDenied) {
		t.Errorf("emit from a plugin: %v", err)
	}
	evil, err := os.ReadFile("../sandbox/testdata/evil_import.wasm")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewWASMTool(context.Background(), WASMToolConfig{Module: evil, Runtime: runtime(t)}); !errors.Is(err, ErrBadPlugin) {
		t.Errorf("evil import: %v, want ErrBadPlugin", err)
	}
}

// Through the ledger: a task's plugin call is invoked once and replayed on
// the retry.
func TestWASMToolReplayedOnRetry(t *testing.T) {
	t.Parallel()
	s := startSlack(t)
	var fails atomic.Int32
	flaky := plugins.NewStub("flaky", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		if fails.Add(1) == 1 {
			return plugins.Result{}, abi.Errorf(abi.StatusTransient, "first time")
		}
		return plugins.Result{Body: json.RawMessage(`"ok"`)}, nil
	})
	e := newEnv(t, []plugins.Tool{slackTool(t, s, s.host()), flaky})
	e.pushAgent("steps", "v1", agentPath(t, "steps"), "slack", "flaky")
	in := map[string]any{"steps": []any{
		map[string]any{"tool": "slack", "params": map[string]any{"channel": "C1", "text": "hi", "api_url": s.URL}},
		map[string]any{"tool": "flaky", "params": nil},
	}}
	e.submit("p-1", "steps", "v1", in, cluster.RetryPolicy{MaxAttempts: 3, Base: 10 * time.Millisecond, Factor: 1, Cap: 10 * time.Millisecond})
	tk := e.wait("p-1", settle, cluster.StateSucceeded, cluster.StateDeadLetter)
	if tk.State != cluster.StateSucceeded || tk.Attempts != 2 {
		t.Fatalf("task %s after %d attempts: %+v", tk.State, tk.Attempts, tk.Error)
	}
	if n := len(s.seen); n != 1 {
		t.Errorf("slack posted %d times, want 1", n)
	}
	if got := callOutcomes(e.journal("p-1"))["slack"]; got[OutcomeInvoked] != 1 || got[OutcomeReplayed] != 1 {
		t.Errorf("slack calls %v", got)
	}
	calls, _ := e.node.FSM().Calls("p-1")
	for _, c := range calls {
		if strings.Contains(string(c.Result), slackSecret) {
			t.Errorf("the ledger holds the secret: %s", c.Result)
		}
	}
}

// BenchmarkWASMToolCall: one call of the slack plugin against a local
// stand-in, against the built-in http tool sending the same request.
func BenchmarkWASMToolCall(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"ok":true,"channel":"C1","ts":"1.1"}`)
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	params := json.RawMessage(`{"channel":"C1","text":"hi","api_url":"` + srv.URL + `"}`)
	b.Run("plugin", func(b *testing.B) {
		wasm := pluginWasm(b, "slack")
		tool, err := NewWASMTool(context.Background(), WASMToolConfig{Module: wasm, Runtime: runtime(b), AllowHosts: []string{u.Hostname()},
			Secrets: plugins.MapSecrets{"slack-token": "x"}})
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := tool.Invoke(context.Background(), plugins.Call{ID: "c", TaskID: "t", Params: params}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("http", func(b *testing.B) {
		ht, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{u.Hostname()}})
		if err != nil {
			b.Fatal(err)
		}
		req := json.RawMessage(`{"method":"POST","url":"` + srv.URL + `","headers":{"Authorization":"Bearer x","Content-Type":"application/json"},"body":"{\"channel\":\"C1\",\"text\":\"hi\"}"}`)
		for b.Loop() {
			if _, err := ht.Invoke(context.Background(), plugins.Call{ID: "c", TaskID: "t", Params: req}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
