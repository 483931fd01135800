package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

const testSecret = "xoxb-very-secret-42"

func declare(t *testing.T, doc string, secrets plugins.Secrets) plugins.Tool {
	t.Helper()
	d, err := plugins.ParseDefinition([]byte(doc))
	if err != nil {
		t.Fatalf("ParseDefinition: %v", err)
	}
	tool, err := plugins.NewDeclared(d, plugins.DeclaredOptions{Secrets: secrets})
	if err != nil {
		t.Fatalf("NewDeclared: %v", err)
	}
	if _, err := plugins.NewRegistry(tool); err != nil {
		t.Fatalf("the registry refuses the declared tool: %v", err)
	}
	return tool
}

func slackDoc(base, sem, extra string) string {
	return `{"name": "slack", "kind": "http", "http": {
	  "base_url": "` + base + `/api", "methods": ["POST", "GET"], "path_prefixes": ["/chat.postMessage", "/echo"],
	  "headers": {"Content-Type": "application/json", "Authorization": {"secret": "slack-token", "format": "Bearer %s"}},
	  "timeout": "5s", "semantics": "` + sem + `"` + extra + `}}`
}

// echo answers with the Authorization header it got, in the body and a
// response header, and, under /api/echo/fail, in a 400 error body.
func echo(hits *atomic.Int32) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		auth := r.Header.Get("Authorization")
		w.Header().Set("X-Seen", auth)
		if strings.HasSuffix(r.URL.Path, "/fail") {
			http.Error(w, `{"error":"bad token `+auth+`"}`, http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"ok":true,"path":%q,"auth":%q,"key":%q}`, r.URL.Path, auth, r.Header.Get("Idempotency-Key"))
	}
}

func TestDeclaredHTTPSendsSecretHeaderAndRedactsEchoes(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	var gotAuth atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth.Store(r.Header.Get("Authorization"))
		echo(&hits)(w, r)
	}))
	defer srv.Close()
	tool := declare(t, slackDoc(srv.URL, "idempotent", ""), plugins.MapSecrets{"slack-token": testSecret})

	res, err := tool.Invoke(context.Background(), plugins.Call{ID: "call-1", Params: json.RawMessage(`{"method":"POST","path":"/chat.postMessage","body":"{}"}`)})
	if err != nil {
		t.Fatal(err)
	}
	if got := gotAuth.Load(); got != "Bearer "+testSecret {
		t.Fatalf("the service saw Authorization %q", got)
	}
	if strings.Contains(string(res.Body), testSecret) {
		t.Fatalf("the result holds the secret: %s", res.Body)
	}
	var r httpResult
	_ = json.Unmarshal(res.Body, &r)
	if r.Status != 200 || !strings.Contains(r.Body, `"auth":"Bearer [secret slack-token]"`) || r.Headers["X-Seen"] != "Bearer [secret slack-token]" ||
		!strings.Contains(r.Body, `"key":"call-1"`) || !strings.Contains(r.Body, `"path":"/api/chat.postMessage"`) {
		t.Fatalf("result = %+v", r)
	}

	// A service that echoes the credentials in an error body: the error
	// message names the failure, without the secret.
	_, err = tool.Invoke(context.Background(), plugins.Call{ID: "call-2", Params: json.RawMessage(`{"method":"POST","path":"/echo/fail"}`)})
	if s, _ := abi.StatusOf(err); s != abi.StatusToolError || strings.Contains(err.Error(), testSecret) || !strings.Contains(err.Error(), "[secret slack-token]") {
		t.Fatalf("error = %v (status %v)", err, s)
	}
}

func TestDeclaredHTTPRefusesOutsideItsDefinition(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(echo(&hits))
	defer srv.Close()
	tool := declare(t, slackDoc(srv.URL, "idempotent", ""), plugins.MapSecrets{"slack-token": testSecret})
	for name, tc := range map[string]struct {
		params string
		want   abi.Status
		msg    string
	}{
		"method":           {`{"method":"DELETE","path":"/chat.postMessage"}`, abi.StatusPermissionDenied, "method \"DELETE\" is not allowed"},
		"prefix":           {`{"method":"POST","path":"/admin"}`, abi.StatusPermissionDenied, "not under an allowed prefix"},
		"prefix by halves": {`{"method":"POST","path":"/chat.postMessageX"}`, abi.StatusPermissionDenied, "not under an allowed prefix"},
		"dot dot":          {`{"method":"POST","path":"/chat.postMessage/../admin"}`, abi.StatusPermissionDenied, "'..'"},
		"escaped slash":    {`{"method":"POST","path":"/chat.postMessage%2F..%2Fadmin"}`, abi.StatusPermissionDenied, "escaped slash"},
		"other host":       {`{"method":"POST","url":"http://example.com/api/chat.postMessage"}`, abi.StatusPermissionDenied, "not under the tool's base URL"},
		"outside base":     {`{"method":"POST","url":"` + srv.URL + `/other/chat.postMessage"}`, abi.StatusPermissionDenied, "not under the tool's base URL"},
		"both url, path":   {`{"method":"POST","url":"` + srv.URL + `/api/echo","path":"/echo"}`, abi.StatusInvalidArgument, "not both"},
		"own auth header":  {`{"method":"POST","path":"/echo","headers":{"authorization":"Bearer mine"}}`, abi.StatusPermissionDenied, "set by the tool's definition"},
		"own traceparent":  {`{"method":"POST","path":"/echo","headers":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}`, abi.StatusPermissionDenied, "trace context"},
		"unknown param":    {`{"method":"POST","path":"/echo","secret":"x"}`, abi.StatusInvalidArgument, "unknown field"},
	} {
		_, err := tool.Invoke(context.Background(), plugins.Call{ID: "c", Params: json.RawMessage(tc.params)})
		if s, _ := abi.StatusOf(err); s != tc.want || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v (status %v), want %v mentioning %q", name, err, s, tc.want, tc.msg)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the service saw %d refused requests", n)
	}
	// The url form works when it stays inside.
	if _, err := tool.Invoke(context.Background(), plugins.Call{ID: "c", Params: json.RawMessage(`{"method":"POST","url":"` + srv.URL + `/api/echo/x?y=1"}`)}); err != nil {
		t.Fatal(err)
	}
}

func TestDeclaredHTTPMissingSecretIsTransientAndNamed(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(echo(&hits))
	defer srv.Close()
	tool := declare(t, slackDoc(srv.URL, "unsafe", ""), plugins.MapSecrets{})
	_, err := tool.Invoke(context.Background(), plugins.Call{ID: "c", Params: json.RawMessage(`{"method":"POST","path":"/echo"}`)})
	if s, _ := abi.StatusOf(err); s != abi.StatusTransient || !strings.Contains(err.Error(), `"slack-token"`) || !errors.Is(err, plugins.ErrSecretNotFound) {
		t.Fatalf("error = %v (status %v)", err, s)
	}
	if hits.Load() != 0 {
		t.Fatal("a request went out without its secret")
	}
}

func TestDeclaredHTTPReconcile(t *testing.T) {
	t.Parallel()
	var status atomic.Int32
	var lastKey atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lastKey.Store(r.URL.Query().Get("key") + " " + r.Header.Get("Authorization"))
		w.WriteHeader(int(status.Load()))
		fmt.Fprint(w, `{"charge":"ch_1"}`)
	}))
	defer srv.Close()
	tool := declare(t, slackDoc(srv.URL, "reconcile", `, "status_url": "`+srv.URL+`/api/charges?key={call_id}"`), plugins.MapSecrets{"slack-token": testSecret})
	rec := tool.(plugins.Reconciler)
	call := plugins.Call{ID: "abc 1"}

	status.Store(200)
	res, applied, err := rec.Reconcile(context.Background(), call)
	if err != nil || !applied || !strings.Contains(string(res.Body), `ch_1`) {
		t.Fatalf("200: %s applied=%v %v", res.Body, applied, err)
	}
	if got := lastKey.Load(); got != "abc 1 Bearer "+testSecret {
		t.Fatalf("status query got %q", got)
	}
	status.Store(404)
	if _, applied, err := rec.Reconcile(context.Background(), call); err != nil || applied {
		t.Fatalf("404: applied=%v %v", applied, err)
	}
	status.Store(503)
	if _, _, err := rec.Reconcile(context.Background(), call); err == nil {
		t.Fatal("503: no error")
	} else if s, _ := abi.StatusOf(err); s != abi.StatusTransient {
		t.Fatalf("503: %v, want transient", err)
	}
}

func TestParseDefinitionRefuses(t *testing.T) {
	t.Parallel()
	const base = "http://127.0.0.1:1"
	for name, tc := range map[string]struct {
		doc  string
		want error
		msg  string
	}{
		"wasm module not a digest": {`{"name":"p","kind":"wasm","wasm":{"module":"x"}}`, plugins.ErrInvalidDefinition, "not a module digest"},
		"wasm reconcile":           {`{"name":"p","kind":"wasm","wasm":{"module":"` + strings.Repeat("a", 64) + `","semantics":"reconcile"}}`, plugins.ErrInvalidDefinition, "cannot reconcile"},
		"wasm bad host":            {`{"name":"p","kind":"wasm","wasm":{"module":"` + strings.Repeat("a", 64) + `","allow_hosts":["*"]}}`, plugins.ErrInvalidDefinition, "allow_hosts[0]"},
		"mcp no section":           {`{"name":"p","kind":"mcp"}`, plugins.ErrInvalidDefinition, `needs an "mcp" section`},
		"mcp neither":              {`{"name":"p","kind":"mcp","mcp":{}}`, plugins.ErrInvalidDefinition, "set url"},
		"mcp both":                 {`{"name":"p","kind":"mcp","mcp":{"url":"http://h","command":"x"}}`, plugins.ErrInvalidDefinition, "not both"},
		"mcp not http":             {`{"name":"p","kind":"mcp","mcp":{"url":"ftp://h"}}`, plugins.ErrInvalidDefinition, "http or https"},
		"mcp user info":            {`{"name":"p","kind":"mcp","mcp":{"url":"http://u:pw@h"}}`, plugins.ErrInvalidDefinition, "user info"},
		"mcp env for url":          {`{"name":"p","kind":"mcp","mcp":{"url":"http://h","env":{"A":"b"}}}`, plugins.ErrInvalidDefinition, "for a command"},
		"mcp headers for command":  {`{"name":"p","kind":"mcp","mcp":{"command":"x","headers":{"A":"b"}}}`, plugins.ErrInvalidDefinition, "for a url"},
		"mcp env PATH":             {`{"name":"p","kind":"mcp","mcp":{"command":"x","env":{"PATH":"/tmp"}}}`, plugins.ErrInvalidDefinition, `"PATH"`},
		"mcp env secret name":      {`{"name":"p","kind":"mcp","mcp":{"command":"x","env":{"T":{"secret":"../x"}}}}`, plugins.ErrInvalidDefinition, "env.T.secret"},
		"mcp reconcile":            {`{"name":"p","kind":"mcp","mcp":{"url":"http://h","tools":{"t":"reconcile"}}}`, plugins.ErrInvalidDefinition, `tools["t"]`},
		"mcp reserved header":      {`{"name":"p","kind":"mcp","mcp":{"url":"http://h","headers":{"Idempotency-Key":"k"}}}`, plugins.ErrInvalidDefinition, "set by the host"},
		"mcp long timeout":         {`{"name":"p","kind":"mcp","mcp":{"url":"http://h","timeout":"1h"}}`, plugins.ErrInvalidDefinition, "timeout"},
		"mcp too many args":        {`{"name":"p","kind":"mcp","mcp":{"command":"x","args":[` + strings.Repeat(`"a",`, 64) + `"a"]}}`, plugins.ErrInvalidDefinition, "at most 64 args"},
		"unknown kind":             {`{"name":"p","kind":"ftp"}`, plugins.ErrInvalidDefinition, "kind \"ftp\""},
		"unknown field":            {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","path_prefix":["/x"]}}`, plugins.ErrInvalidDefinition, "path_prefix"},
		"no semantics":             {`{"name":"p","kind":"http","http":{"base_url":"` + base + `"}}`, plugins.ErrInvalidDefinition, "semantics is required"},
		"reconcile alone":          {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"reconcile"}}`, plugins.ErrInvalidDefinition, "status_url"},
		"status elsewhere":         {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"reconcile","status_url":"http://other/x?k={call_id}"}}`, plugins.ErrInvalidDefinition, "scheme, host and port"},
		"no call_id":               {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"reconcile","status_url":"` + base + `/x"}}`, plugins.ErrInvalidDefinition, "{call_id}"},
		"user info":                {`{"name":"p","kind":"http","http":{"base_url":"http://u:pw@h","semantics":"unsafe"}}`, plugins.ErrInvalidDefinition, "user info"},
		"bad prefix":               {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","path_prefixes":["x/.."]}}`, plugins.ErrInvalidDefinition, "path_prefixes[0]"},
		"reserved header":          {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","headers":{"idempotency-key":"k"}}}`, plugins.ErrInvalidDefinition, "set by the host"},
		"trace header":             {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","headers":{"traceparent":"k"}}}`, plugins.ErrInvalidDefinition, "set by the host"},
		"mcp trace header":         {`{"name":"p","kind":"mcp","mcp":{"url":"http://h","headers":{"Tracestate":"k"}}}`, plugins.ErrInvalidDefinition, "set by the host"},
		"bad format":               {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","headers":{"A":{"secret":"s","format":"%d"}}}}`, plugins.ErrInvalidDefinition, "exactly one %s"},
		"bad secret name":          {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","headers":{"A":{"secret":"../etc"}}}}`, plugins.ErrInvalidDefinition, "secret name"},
		"header value obj":         {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","headers":{"A":{"value":"s"}}}}`, plugins.ErrInvalidDefinition, "secret"},
		"slash name":               {`{"name":"a/b","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe"}}`, plugins.ErrInvalidDefinition, "'/'"},
		"wrong section":            {`{"name":"p","kind":"http","mcp":{},"http":{"base_url":"` + base + `","semantics":"unsafe"}}`, plugins.ErrInvalidDefinition, "does not belong"},
		"duplicate key":            {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","semantics":"idempotent"}}`, plugins.ErrInvalidDefinition, "semantics"},
		"long timeout":             {`{"name":"p","kind":"http","http":{"base_url":"` + base + `","semantics":"unsafe","timeout":"1h"}}`, plugins.ErrInvalidDefinition, "timeout"},
	} {
		_, err := plugins.ParseDefinition([]byte(tc.doc))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want %v mentioning %q", name, err, tc.want, tc.msg)
		}
	}
}

// TestParseMCPDefinition: a URL server with a secret header and a stdio
// server with a secret variable parse, and keep the references.
func TestParseMCPDefinition(t *testing.T) {
	t.Parallel()
	d, err := plugins.ParseDefinition([]byte(`{"name":"docs","kind":"mcp","mcp":{"url":"https://mcp.example/mcp",
		"headers":{"Authorization":{"secret":"docs-token","format":"Bearer %s"}},"tools":{"search":"read_only"},"timeout":"5s"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.MCP.URL != "https://mcp.example/mcp" || d.MCP.Headers["Authorization"].Secret != "docs-token" || d.MCP.TimeoutOrDefault() != 5*time.Second {
		t.Fatalf("parsed %+v", d.MCP)
	}
	c, _ := d.Canonical()
	if !strings.Contains(string(c), `"Authorization":{"format":"Bearer %s","secret":"docs-token"}`) {
		t.Fatalf("canonical form lost the reference: %s", c)
	}
	d, err = plugins.ParseDefinition([]byte(`{"name":"gh","kind":"mcp","mcp":{"command":"github-mcp","args":["stdio"],"env":{"GITHUB_TOKEN":{"secret":"gh"},"MODE":"ro"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	secrets := plugins.MapSecrets{"gh": "s3cret"}
	if v, err := d.MCP.Env["GITHUB_TOKEN"].Resolve(secrets); err != nil || v != "s3cret" {
		t.Fatalf("GITHUB_TOKEN resolves to %q, %v", v, err)
	}
	if v, err := d.MCP.Env["MODE"].Resolve(nil); err != nil || v != "ro" {
		t.Fatalf("MODE resolves to %q, %v", v, err)
	}
	if _, err := d.MCP.Env["GITHUB_TOKEN"].Resolve(plugins.MapSecrets{}); !errors.Is(err, plugins.ErrSecretNotFound) {
		t.Fatalf("a missing secret: %v, want ErrSecretNotFound", err)
	}
}

// TestDefinitionCanonical: key order and white space do not change the
// canonical form, and a secret reference stays a reference.
func TestDefinitionCanonical(t *testing.T) {
	t.Parallel()
	a, err := plugins.ParseDefinition([]byte(`{"kind":"http","name":"s","http":{"semantics":"unsafe","base_url":"https://h/api/","headers":{"Authorization":{"format":"Bearer %s","secret":"tok"}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	b, err := plugins.ParseDefinition([]byte(`{ "name": "s", "http": { "base_url": "https://h/api/", "semantics": "unsafe",
	  "headers": {"Authorization": {"secret": "tok", "format": "Bearer %s"}} }, "kind": "http" }`))
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := a.Canonical()
	cb, _ := b.Canonical()
	if string(ca) != string(cb) || !strings.Contains(string(ca), `"Authorization":{"format":"Bearer %s","secret":"tok"}`) {
		t.Fatalf("canonical forms:\n%s\n%s", ca, cb)
	}
}

func TestNodeSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{"ORLOJ_SECRET_FROM_ENV": "e-value"}
	s := plugins.NodeSecrets{Dir: dir, LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}
	if v, err := s.Secret("from-env"); err != nil || v != "e-value" {
		t.Fatalf("env: %q %v", v, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "good"), []byte("f-value\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if v, err := s.Secret("good"); err != nil || v != "f-value" {
		t.Fatalf("file: %q %v", v, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "open"), []byte("o-value"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "open"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := s.Secret("open")
	if st, _ := abi.StatusOf(err); st != abi.StatusTransient || !strings.Contains(err.Error(), "must be 0600") || strings.Contains(err.Error(), "o-value") {
		t.Fatalf("0644 file: %v", err)
	}
	_, err = s.Secret("absent")
	if !errors.Is(err, plugins.ErrSecretNotFound) || !strings.Contains(err.Error(), "ORLOJ_SECRET_ABSENT") {
		t.Fatalf("absent: %v", err)
	}
	if _, err := s.Secret("../good"); err == nil {
		t.Fatal("a path as a secret name was accepted")
	}
}

// FuzzParseDefinition: any bytes a client pushes parse to a definition that
// canonicalizes and builds, or to an error wrapping one of the two
// sentinels; never a panic.
func FuzzParseDefinition(f *testing.F) {
	for _, s := range []string{
		slackDoc("http://127.0.0.1:1", "idempotent", ""),
		slackDoc("https://h:8443", "reconcile", `, "status_url": "https://h:8443/s?k={call_id}"`),
		`{"name":"p","kind":"wasm","wasm":{}}`, `{"name":"p","kind":"wasm","wasm":{"module":"` + strings.Repeat("0", 64) + `","allow_hosts":["slack.com"],"timeout":"5s"}}`,
		`{"name":"p","kind":"http","http":{"base_url":"http://[::1]/a/../b","semantics":"unsafe"}}`,
		`{"name":"p","kind":"http","http":{"base_url":"http://h","semantics":"unsafe","headers":{"A":{"secret":"s","format":"%s%s"}}}}`,
		`{"name":"p","kind":"http","http":{"base_url":"http://h","semantics":"unsafe","headers":{"A":7}}}`,
		`null`, `[]`, `{`, "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := plugins.ParseDefinition(b)
		if err != nil {
			if !errors.Is(err, plugins.ErrInvalidDefinition) && !errors.Is(err, plugins.ErrKindNotSupported) {
				t.Fatalf("ParseDefinition(%q): %v wraps neither sentinel", b, err)
			}
			return
		}
		c, err := d.Canonical()
		if err != nil {
			t.Fatalf("Canonical of a valid definition: %v", err)
		}
		again, err := plugins.ParseDefinition(c)
		if err != nil {
			t.Fatalf("the canonical form %s does not parse: %v", c, err)
		}
		if c2, _ := again.Canonical(); string(c2) != string(c) {
			t.Fatalf("canonical form is not stable:\n%s\n%s", c, c2)
		}
		if d.Kind == plugins.KindWASM {
			return // the host builds those (it has the sandbox)
		}
		if _, err := plugins.NewDeclared(d, plugins.DeclaredOptions{}); err != nil {
			t.Fatalf("NewDeclared of a valid definition: %v", err)
		}
	})
}
