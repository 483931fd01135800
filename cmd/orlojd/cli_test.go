package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// These tests run the CLI in process against fake API servers, for what
// the end-to-end tests cannot reach: leader redirects, odd answers, progress
// lines and configuration precedence.

func runInProcess(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRootCmd()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	code = execute(root, args)
	return out.String(), errb.String(), code
}

func fakeAPI(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func TestClientFollowsLeader(t *testing.T) {
	t.Parallel()
	var leaderHits atomic.Int32
	leader := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		leaderHits.Add(1)
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			writeJSON(w, 401, map[string]string{"error": "missing or wrong bearer token", "code": "unauthorized"})
			return
		}
		writeJSON(w, 200, map[string]any{"id": "t1", "agent": "a", "version": "v1", "state": "queued"})
	})
	follower := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 421, map[string]string{"error": "node n2 is not the leader", "code": "not_leader", "leader": leader})
	})
	out, errOut, code := runInProcess(t, "task", "submit", "a", "--addr", follower, "--token", "s3cret")
	if code != 0 || strings.TrimSpace(out) != "t1" || leaderHits.Load() != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q, leader hits %d", code, out, errOut, leaderHits.Load())
	}

	// A follower that knows no leader: the error is shown as is.
	lost := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 421, map[string]any{"error": "no leader is known yet; retry shortly", "code": "not_leader", "leader": ""})
	})
	_, errOut, code = runInProcess(t, "task", "submit", "a", "--addr", lost, "--token", "x")
	if code != 1 || strings.TrimSpace(errOut) != "orlojd: no leader is known yet; retry shortly (not_leader)" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestClientErrors(t *testing.T) {
	t.Parallel()
	addr := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/tasks/gone":
			writeJSON(w, 404, map[string]string{"error": "task gone: not found", "code": "not_found"})
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>upstream unavailable</html>\n"))
		}
	})
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"task", "get", "gone"}, 1, "orlojd: task gone: not found (not_found)"},
		{[]string{"task", "ls"}, 1, "http 502"},
		{[]string{"task", "get"}, 2, "expected one task ID"},
		{[]string{"task", "ls", "-o", "yaml"}, 2, `-o "yaml"`},
		{[]string{"task", "wait", "x", "--timeout", "-1s"}, 2, "--timeout"},
		{[]string{"dlq", "retry", "x", "--all"}, 2, "not both"},
		{[]string{"dlq", "retry", "x", "--agent", "a"}, 2, "--all"},
		{[]string{"dlq", "ls", "--class", "nope"}, 2, "--class"},
		{[]string{"dlq", "ls", "--since", "yesterday"}, 2, "--since"},
		{[]string{"agent", "push", "x.wasm", "--memory-limit", "lots"}, 2, "--memory-limit"},
		{[]string{"agent", "push", "x.wasm", "--memory-limit", "0"}, 2, "positive"},
		{[]string{"dlq", "ls", "--class", "transient"}, 2, "budget"}, // the list names every dead-letter class
		{[]string{"cluster", "transfer", "a", "b"}, 2, "at most one"},
	}
	for _, tt := range tests {
		_, errOut, code := runInProcess(t, append(tt.args, "--addr", addr, "--token", "x")...)
		if code != tt.code || !strings.Contains(errOut, tt.msg) {
			t.Errorf("orlojd %s: exit %d, stderr %q; want exit %d saying %q", strings.Join(tt.args, " "), code, errOut, tt.code, tt.msg)
		}
	}
}

func TestTokenResolution(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got atomic.Value
	addr := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		got.Store(r.Header.Get("Authorization"))
		writeJSON(w, 200, []any{})
	})
	t.Setenv("ORLOJ_ADDR", addr)
	t.Setenv("ORLOJ_TOKEN", "")
	t.Setenv("ORLOJ_DATA_DIR", dir)
	check := func(want string, args ...string) {
		t.Helper()
		if _, errOut, code := runInProcess(t, args...); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if got.Load() != "Bearer "+want {
			t.Fatalf("sent %q, want the token %q", got.Load(), want)
		}
	}
	check("from-file", "lease", "ls")
	t.Setenv("ORLOJ_TOKEN", "from-env")
	check("from-env", "lease", "ls")
	check("from-flag", "lease", "ls", "--token", "from-flag")

	// A token file beats the variable; --token-file beats ORLOJ_TOKEN_FILE.
	named := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(named, []byte(" from-named-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("from-named-file", "lease", "ls", "--token-file", named)
	t.Setenv("ORLOJ_TOKEN_FILE", named)
	check("from-named-file", "lease", "ls")
	t.Setenv("ORLOJ_TOKEN_FILE", filepath.Join(dir, "token"))
	check("from-named-file", "lease", "ls", "--token-file", named)
	check("from-file", "lease", "ls")
	// A token file named but missing is a usage error, not a request
	// without a token.
	if _, errOut, code := runInProcess(t, "lease", "ls", "--token-file", filepath.Join(dir, "nope")); code != 2 || !strings.Contains(errOut, "--token-file") {
		t.Fatalf("missing token file: exit %d, stderr %q", code, errOut)
	}
	// --token works but is not offered in help.
	if out, _, _ := runInProcess(t, "lease", "--help"); strings.Contains(out, "--token ") || !strings.Contains(out, "--token-file") {
		t.Fatalf("help offers --token or lacks --token-file:\n%s", out)
	}
}

func TestWaitProgress(t *testing.T) {
	t.Parallel()
	states := []map[string]any{
		{"id": "t1", "state": "running", "attempts": 1, "max_attempts": 3, "lease": map[string]any{"node": "n1"}},
		{"id": "t1", "state": "running", "attempts": 1, "max_attempts": 3, "lease": map[string]any{"node": "n1"}},
		{"id": "t1", "state": "retry_pending", "attempts": 1, "max_attempts": 3, "error": map[string]string{"class": "transient", "message": "503"},
			"next_at": time.Now().Add(time.Hour).Format(time.RFC3339Nano)},
		{"id": "t1", "state": "running", "attempts": 2, "max_attempts": 3, "lease": map[string]any{"node": "n1"}},
		{"id": "t1", "state": "succeeded", "attempts": 2, "max_attempts": 3},
	}
	var n atomic.Int32
	var mu sync.Mutex
	var timeouts []string
	firstTimeout := func() string {
		mu.Lock()
		defer mu.Unlock()
		return timeouts[0]
	}
	addr := fakeAPI(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		timeouts = append(timeouts, r.URL.Query().Get("timeout"))
		mu.Unlock()
		writeJSON(w, 200, states[min(int(n.Add(1))-1, len(states)-1)])
	})
	c := &client{base: "http://" + addr, http: http.DefaultClient}
	var progress bytes.Buffer
	tv, _, err := waitTask(context.Background(), c, "t1", 0, &progress)
	if err != nil || tv.State != "succeeded" {
		t.Fatalf("waitTask = %+v, %v", tv, err)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(progress.String()), "\n") {
		lines = append(lines, l[len("15:04:05  "):]) // drop the clock
	}
	want := []string{
		"running: attempt 1 of 3, node n1",
		"retry_pending: attempt 1 of 3 failed: transient: 503; next try in 1h0m0s",
		"running: attempt 2 of 3, node n1",
		"succeeded after 2 attempt(s)",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("progress:\n%s\nwant:\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if got := firstTimeout(); got != "1s" {
		t.Fatalf("a wait with progress polls with timeout %s, want 1s", got)
	}

	// Without a terminal: one long poll at a time, no lines.
	n.Store(int32(len(states) - 1))
	mu.Lock()
	timeouts = nil
	mu.Unlock()
	if _, _, err := waitTask(context.Background(), c, "t1", 0, nil); err != nil {
		t.Fatal(err)
	}
	if got := firstTimeout(); got != "30s" {
		t.Fatalf("a quiet wait polls with timeout %s, want 30s", got)
	}
}

func TestServeConfigPrecedence(t *testing.T) {
	file := filepath.Join(t.TempDir(), "orlojd.json")
	os.WriteFile(file, []byte(`{"workers": 2, "lease_ttl": "10s", "http_allow": ["a.example", "b.example"],
		"api_addr": "127.0.0.1:1", "max_module_size": "1MiB"}`), 0o600)
	t.Setenv("ORLOJ_LEASE_TTL", "20s")
	t.Setenv("ORLOJ_WORKERS", "3")
	cmd := newServeCmd()
	if err := cmd.ParseFlags([]string{"--workers", "5"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadServeConfig(cmd.Flags(), file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Workers != 5 || cfg.LeaseTTL != 20*time.Second || strings.Join(cfg.HTTPAllow, ",") != "a.example,b.example" ||
		cfg.APIAddr != "127.0.0.1:1" || cfg.RaftAddr != "127.0.0.1:7071" || cfg.MaxModuleBytes != 1<<20 {
		t.Fatalf("merged config = %+v", cfg)
	}

	bad := []struct {
		file, env, flag string
		want            string
	}{
		{file: `{"lease_tll": "1s"}`, want: `unknown key "lease_tll"`},
		{file: `{"workers": "many"}`, want: "workers"},
		{file: `not json`, want: "invalid character"},
		{file: `{"workers": 2, "workers": 3}`, want: `duplicate member "workers"`},
		{env: "ORLOJ_LEASE_TTL=soon", want: "ORLOJ_LEASE_TTL"},
		{flag: "--log-level=loud", want: "--log-level"},
	}
	for _, b := range bad {
		os.WriteFile(file, []byte(b.file), 0o600)
		if b.file == "" {
			os.WriteFile(file, []byte(`{}`), 0o600)
		}
		if k, v, ok := strings.Cut(b.env, "="); ok {
			t.Setenv(k, v)
		}
		cmd := newServeCmd()
		var args []string
		if b.flag != "" {
			args = append(args, b.flag)
		}
		if err := cmd.ParseFlags(args); err != nil {
			t.Fatal(err)
		}
		_, err := loadServeConfig(cmd.Flags(), file)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%+v: err = %v, want it to name %q", b, err, b.want)
		}
		t.Setenv("ORLOJ_LEASE_TTL", "20s")
	}
}

// TestServeRefusesBadConfig: a value the daemon refuses stops serve before
// it opens anything, with exit status 2 and the setting's names.
func TestServeRefusesBadConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	_, errOut, code := runInProcess(t, "serve", "--data-dir", dir, "--lease-ttl", "1ms")
	if code != 2 || !strings.Contains(errOut, "--lease-ttl") || !strings.Contains(errOut, "ORLOJ_LEASE_TTL") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("serve created %s before refusing its config", dir)
	}
}

// A multi-line value keeps to the value column; an unset time is a dash.
func TestFieldsAndClock(t *testing.T) {
	var b strings.Builder
	if err := fields(&b, [][2]string{{"State", "dead_letter"}, {"Error", "permanent: boom\nwasm stack:\n  main.run"}, {"Empty", ""}}); err != nil {
		t.Fatal(err)
	}
	want := "State: dead_letter\nError: permanent: boom\n       wasm stack:\n         main.run\n"
	if b.String() != want {
		t.Fatalf("fields =\n%q\nwant\n%q", b.String(), want)
	}
	if got := timeOf(nil).clock(); got != "-" {
		t.Fatalf("clock of an unset time = %q, want -", got)
	}
}

// TestServeTokenFile: --token-file (ORLOJ_TOKEN_FILE, token_file) gives
// serve the admin token without putting it on a command line; --token
// still works, and is remembered so serve can warn about it.
func TestServeTokenFile(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "admin-token")
	if err := os.WriteFile(tokFile, []byte("  tok-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORLOJ_TOKEN", "")
	t.Setenv("ORLOJ_TOKEN_FILE", "")
	tests := []struct {
		name      string
		env       []string // KEY=VALUE
		args      []string
		token     string
		onCmdLine bool
		err       string
	}{
		{name: "flag", args: []string{"--token-file", tokFile}, token: "tok-123"},
		{name: "variable", env: []string{"ORLOJ_TOKEN_FILE=" + tokFile}, token: "tok-123"},
		{name: "token variable", env: []string{"ORLOJ_TOKEN=tok-env"}, token: "tok-env"},
		{name: "same token twice", env: []string{"ORLOJ_TOKEN=tok-123"}, args: []string{"--token-file", tokFile}, token: "tok-123"},
		{name: "token on the command line", args: []string{"--token", "tok-flag"}, token: "tok-flag", onCmdLine: true},
		{name: "two different tokens", env: []string{"ORLOJ_TOKEN=other"}, args: []string{"--token-file", tokFile}, err: "given twice"},
		{name: "missing file", args: []string{"--token-file", filepath.Join(dir, "nope")}, err: "--token-file"},
		{name: "empty file", args: []string{"--token-file", empty}, err: "is empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, kv := range tc.env {
				k, v, _ := strings.Cut(kv, "=")
				t.Setenv(k, v)
			}
			cmd := newServeCmd()
			if err := cmd.ParseFlags(tc.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := loadServeConfig(cmd.Flags(), "")
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Token != tc.token || cfg.tokenOnCommandLine != tc.onCmdLine {
				t.Fatalf("token %q (on the command line: %v), want %q (%v)", cfg.Token, cfg.tokenOnCommandLine, tc.token, tc.onCmdLine)
			}
		})
	}
	var help bytes.Buffer
	cmd := newServeCmd()
	cmd.SetOut(&help)
	_ = cmd.Usage()
	if strings.Contains(help.String(), "--token ") || !strings.Contains(help.String(), "--token-file") {
		t.Fatalf("serve help offers --token or lacks --token-file:\n%s", help.String())
	}
}
