package plugins_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

type httpResult struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding"`
}

func TestHTTP(t *testing.T) {
	t.Parallel()
	type env struct {
		srv   *recorder // on the allow-list
		other *recorder // not on it
	}
	cases := []struct {
		name    string
		handler func(e *env) http.HandlerFunc
		cfg     func(e *env, c *plugins.HTTPConfig)
		params  func(e *env) string
		// wantErr is the status of the error, or StatusOK for a result.
		wantErr abi.Status
		wantMsg []string
		// wantHits is how many requests the allowed server saw.
		wantHits int
		// hitsUpTo makes wantHits a ceiling: a client-side timeout can
		// fire before a loaded server has counted the request.
		hitsUpTo bool
		check    func(t *testing.T, e *env, res httpResult, err error)
	}{
		{
			name: "GET round trip",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("content-type", "text/plain")
					w.Header().Add("X-Multi", "first")
					w.Header().Add("X-Multi", "second")
					fmt.Fprint(w, "hello <world> & \"friends\"")
				}
			},
			params: func(e *env) string {
				return `{"method":"GET","url":"` + e.srv.URL + `/greeting?x=1","headers":{"x-trace":"t1"}}`
			},
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				s := e.srv.seen()
				if s.Method != "GET" || s.Path != "/greeting" || s.Header.Get("X-Trace") != "t1" {
					t.Errorf("server saw %+v", s)
				}
				if got := s.Header.Get("Idempotency-Key"); got != "call-1" {
					t.Errorf("server saw Idempotency-Key %q; want the call ID", got)
				}
				if res.Status != 200 || res.Body != `hello <world> & "friends"` || res.BodyEncoding != "" {
					t.Errorf("result %+v", res)
				}
				if res.Headers["Content-Type"] != "text/plain" || res.Headers["X-Multi"] != "first" {
					t.Errorf("headers %v; want canonical names and first values", res.Headers)
				}
			},
		},
		{
			name: "POST round trip with body and headers",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(http.StatusCreated)
					fmt.Fprint(w, `{"id":7}`)
				}
			},
			params: func(e *env) string {
				return `{"method":"POST","url":"` + e.srv.URL + `/items","headers":{"Content-Type":"application/json","idempotency-key":"guest-chosen"},"body":"{\"n\":1}"}`
			},
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				s := e.srv.seen()
				if s.Method != "POST" || s.Body != `{"n":1}` || s.Header.Get("Content-Type") != "application/json" {
					t.Errorf("server saw %+v", s)
				}
				if got := s.Header.Values("Idempotency-Key"); len(got) != 1 || got[0] != "call-1" {
					t.Errorf("server saw Idempotency-Key %q; want only the call ID, not the guest's", got)
				}
				if res.Status != 201 || res.Body != `{"id":7}` {
					t.Errorf("result %+v", res)
				}
			},
		},
		{
			name:     "method defaults to GET",
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if m := e.srv.seen().Method; m != "GET" {
					t.Errorf("method %s", m)
				}
			},
		},
		{
			name: "HEAD has no body",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "99999999") }
			},
			params:   func(e *env) string { return `{"method":"HEAD","url":"` + e.srv.URL + `/"}` },
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if res.Status != 200 || res.Body != "" {
					t.Errorf("result %+v", res)
				}
			},
		},
		{
			name: "binary body comes back in base64",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte{0xff, 0x00, 0xfe}) }
			},
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				b, derr := base64.StdEncoding.DecodeString(res.Body)
				if res.BodyEncoding != "base64" || derr != nil || string(b) != "\xff\x00\xfe" {
					t.Errorf("result %+v", res)
				}
			},
		},
		{
			name: "host without port allows any port",
			cfg: func(e *env, c *plugins.HTTPConfig) {
				c.AllowHosts = []string{"127.0.0.1"}
			},
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantHits: 1,
		},
		{
			name:    "host not on the allow-list is refused before sending",
			params:  func(e *env) string { return `{"url":"` + e.other.URL + `/"}` },
			wantErr: abi.StatusPermissionDenied,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if !strings.Contains(err.Error(), e.other.host()) {
					t.Errorf("err %q does not name the host %s", err, e.other.host())
				}
				if n := e.other.count(); n != 0 {
					t.Errorf("refused server was hit %d times", n)
				}
			},
		},
		{
			name: "another name for the same address is another host",
			params: func(e *env) string {
				return `{"url":"` + strings.Replace(e.srv.URL, "127.0.0.1", "localhost", 1) + `/"}`
			},
			wantErr: abi.StatusPermissionDenied,
			wantMsg: []string{"localhost"},
		},
		{
			name:    "empty allow-list allows nothing",
			cfg:     func(e *env, c *plugins.HTTPConfig) { c.AllowHosts = nil },
			params:  func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantErr: abi.StatusPermissionDenied,
		},
		{
			name:    "scheme other than http is refused",
			params:  func(e *env) string { return `{"url":"file:///etc/passwd"}` },
			wantErr: abi.StatusPermissionDenied,
			wantMsg: []string{`"file"`},
		},
		{
			name: "redirect inside the allow-list is followed",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					if r.URL.Path == "/from" {
						http.Redirect(w, r, "/to", http.StatusFound)
						return
					}
					fmt.Fprint(w, "arrived")
				}
			},
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/from"}` },
			wantHits: 2,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if s := e.srv.seen(); s.Path != "/to" || s.Header.Get("Idempotency-Key") != "call-1" {
					t.Errorf("after redirect server saw %+v", s)
				}
				if res.Body != "arrived" {
					t.Errorf("result %+v", res)
				}
			},
		},
		{
			name: "redirect to a host not on the allow-list is refused",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					http.Redirect(w, r, e.other.URL+"/steal", http.StatusTemporaryRedirect)
				}
			},
			params:   func(e *env) string { return `{"method":"POST","url":"` + e.srv.URL + `/","body":"secret"}` },
			wantErr:  abi.StatusPermissionDenied,
			wantMsg:  []string{"redirect", "not on the allow-list"},
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if n := e.other.count(); n != 0 {
					t.Errorf("redirect target was hit %d times", n)
				}
			},
		},
		{
			name: "503 is transient",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("Retry-After", "3")
					http.Error(w, "overloaded", http.StatusServiceUnavailable)
				}
			},
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/busy"}` },
			wantErr:  abi.StatusTransient,
			wantMsg:  []string{"503", "/busy", "retry after"},
			wantHits: 1,
		},
		{
			name: "429 is transient",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTooManyRequests) }
			},
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantErr:  abi.StatusTransient,
			wantMsg:  []string{"429"},
			wantHits: 1,
		},
		{
			name: "404 is a tool error with an excerpt",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					http.Error(w, "no such item\n"+strings.Repeat("x", 10000), http.StatusNotFound)
				}
			},
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/items/9"}` },
			wantErr:  abi.StatusToolError,
			wantMsg:  []string{"404", "/items/9", `no such item\n`},
			wantHits: 1,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if len(err.Error()) > 1000 {
					t.Errorf("error message is %d bytes; the excerpt should be short", len(err.Error()))
				}
			},
		},
		{
			name:     "timeout is transient",
			handler:  func(e *env) http.HandlerFunc { return e.srv.hang },
			cfg:      func(e *env, c *plugins.HTTPConfig) { c.Timeout = 50 * time.Millisecond },
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/slow"}` },
			wantErr:  abi.StatusTransient,
			wantMsg:  []string{"timed out after 50ms", "/slow"},
			wantHits: 1,
			hitsUpTo: true,
			check: func(t *testing.T, e *env, res httpResult, err error) {
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("err %v does not wrap context.DeadlineExceeded", err)
				}
			},
		},
		{
			name: "oversize response with Content-Length",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat("a", 2048))) }
			},
			cfg:      func(e *env, c *plugins.HTTPConfig) { c.MaxResponseBytes = 1024 },
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantErr:  abi.StatusToolError,
			wantMsg:  []string{"response larger than 1024 bytes"},
			wantHits: 1,
		},
		{
			name: "oversize response without Content-Length",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) {
					for range 4 {
						w.Write([]byte(strings.Repeat("a", 512)))
						w.(http.Flusher).Flush() // chunked: the size is known only by reading
					}
				}
			},
			cfg:      func(e *env, c *plugins.HTTPConfig) { c.MaxResponseBytes = 1024 },
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantErr:  abi.StatusToolError,
			wantMsg:  []string{"response larger than 1024 bytes"},
			wantHits: 1,
		},
		{
			name: "response of exactly the cap is fine",
			handler: func(e *env) http.HandlerFunc {
				return func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(strings.Repeat("a", 1024))) }
			},
			cfg:      func(e *env, c *plugins.HTTPConfig) { c.MaxResponseBytes = 1024 },
			params:   func(e *env) string { return `{"url":"` + e.srv.URL + `/"}` },
			wantHits: 1,
		},
		// Bad params: refused before anything is sent.
		{name: "params not an object", params: func(e *env) string { return `null` }, wantErr: abi.StatusInvalidArgument},
		{name: "unknown field", params: func(e *env) string { return `{"url":"` + e.srv.URL + `","header":{"a":"b"}}` }, wantErr: abi.StatusInvalidArgument, wantMsg: []string{`"header"`}},
		{name: "wrong type", params: func(e *env) string { return `{"url":"` + e.srv.URL + `","body":{"a":1}}` }, wantErr: abi.StatusInvalidArgument},
		{name: "unknown method", params: func(e *env) string { return `{"method":"TRACE","url":"` + e.srv.URL + `"}` }, wantErr: abi.StatusInvalidArgument, wantMsg: []string{"TRACE"}},
		{name: "lower-case method", params: func(e *env) string { return `{"method":"get","url":"` + e.srv.URL + `"}` }, wantErr: abi.StatusInvalidArgument},
		{name: "missing url", params: func(e *env) string { return `{"method":"GET"}` }, wantErr: abi.StatusInvalidArgument, wantMsg: []string{"url is required"}},
		{name: "unparsable url", params: func(e *env) string { return `{"url":"http://[::1"}` }, wantErr: abi.StatusInvalidArgument},
		{name: "url without host", params: func(e *env) string { return `{"url":"http:///x"}` }, wantErr: abi.StatusInvalidArgument},
		{name: "bad header name", params: func(e *env) string { return `{"url":"` + e.srv.URL + `","headers":{"a b":"c"}}` }, wantErr: abi.StatusInvalidArgument},
		{name: "header value with a line break", params: func(e *env) string { return `{"url":"` + e.srv.URL + `","headers":{"a":"b\r\nX-Evil: 1"}}` }, wantErr: abi.StatusInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &env{}
			e.other = newRecorder(t, nil)
			e.srv = newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.handler != nil {
					tc.handler(e)(w, r)
				}
			})
			cfg := plugins.HTTPConfig{AllowHosts: []string{e.srv.host()}}
			if tc.cfg != nil {
				tc.cfg(e, &cfg)
			}
			tool, err := plugins.NewHTTP(cfg)
			if err != nil {
				t.Fatalf("NewHTTP: %v", err)
			}
			res, err := tool.Invoke(t.Context(), plugins.Call{ID: "call-1", TaskID: "task-1", Attempt: 1, Params: json.RawMessage(tc.params(e))})
			var out httpResult
			if tc.wantErr == abi.StatusOK {
				if err != nil {
					t.Fatalf("Invoke: %v", err)
				}
				if res.Usage != nil {
					t.Errorf("http result has usage %+v", res.Usage)
				}
				decode(t, res.Body, &out)
			} else {
				wantStatus(t, err, tc.wantErr, tc.wantMsg...)
			}
			if n := e.srv.count(); n != tc.wantHits && !(tc.hitsUpTo && n < tc.wantHits) {
				t.Errorf("allowed server hit %d times; want %d", n, tc.wantHits)
			}
			if tc.check != nil {
				tc.check(t, e, out, err)
			}
		})
	}
}

func TestHTTPConnectionRefusedIsTransient(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, nil)
	url, host := srv.URL, srv.host()
	srv.Close() // nothing listens there now
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{host}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"url":"` + url + `"}`)})
	wantStatus(t, err, abi.StatusTransient, host)
}

func TestHTTPHostCancelIsTransient(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, nil)
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{srv.host()}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tool.Invoke(canceled(t), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"url":"` + srv.URL + `"}`)})
	wantStatus(t, err, abi.StatusTransient, "abandoned")
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v does not wrap context.Canceled", err)
	}
}

func TestHTTPClientIsCopiedAndItsCheckRedirectChained(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/to", http.StatusFound)
	})
	var called int
	stop := errors.New("operator says no")
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { called++; return stop }}
	orig := client.CheckRedirect
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{srv.host()}, Client: client})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%p", client.CheckRedirect) != fmt.Sprintf("%p", orig) {
		t.Error("NewHTTP modified the caller's client")
	}
	_, err = tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"url":"` + srv.URL + `/from"}`)})
	if !errors.Is(err, stop) || called != 1 {
		t.Fatalf("err = %v, client's CheckRedirect called %d times; want it consulted once after the allow-list", err, called)
	}
	wantStatus(t, err, abi.StatusTransient) // an error without a status is the host's "try later"
}

func TestHTTPConfigValidate(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		cfg  plugins.HTTPConfig
		want string // substring naming the field; "" for valid
	}{
		{"zero value", plugins.HTTPConfig{}, ""},
		{"hosts", plugins.HTTPConfig{AllowHosts: []string{"api.example.com", "api.example.com:8443", "127.0.0.1", "::1", "[::1]:80", "[::1]"}}, ""},
		{"wildcard", plugins.HTTPConfig{AllowHosts: []string{"ok.example", "*"}}, "AllowHosts[1]"},
		{"wildcard subdomain", plugins.HTTPConfig{AllowHosts: []string{"*.example.com"}}, "AllowHosts[0]"},
		{"empty host", plugins.HTTPConfig{AllowHosts: []string{""}}, "AllowHosts[0]"},
		{"url not host", plugins.HTTPConfig{AllowHosts: []string{"https://example.com"}}, "AllowHosts[0]"},
		{"bad port", plugins.HTTPConfig{AllowHosts: []string{"example.com:99999"}}, "AllowHosts[0]"},
		{"no host", plugins.HTTPConfig{AllowHosts: []string{":80"}}, "AllowHosts[0]"},
		{"negative timeout", plugins.HTTPConfig{Timeout: -time.Second}, "Timeout"},
		{"cap too big", plugins.HTTPConfig{MaxResponseBytes: abi.MaxResponseBytes + 1}, "MaxResponseBytes"},
		{"reconcile", plugins.HTTPConfig{Semantics: plugins.Reconcile}, "Semantics"},
		{"unknown semantics", plugins.HTTPConfig{Semantics: "maybe"}, "Semantics"},
		{"bad name", plugins.HTTPConfig{Name: "my tool"}, "Name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				if _, err := plugins.NewHTTP(tc.cfg); err != nil {
					t.Fatalf("NewHTTP: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "HTTPConfig."+tc.want) {
				t.Fatalf("Validate = %v; want an error naming HTTPConfig.%s", err, tc.want)
			}
			if _, err := plugins.NewHTTP(tc.cfg); err == nil {
				t.Fatal("NewHTTP accepted an invalid config")
			}
		})
	}
}

func TestHTTPDefaults(t *testing.T) {
	t.Parallel()
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if tool.Name() != "http" || tool.Semantics() != plugins.Idempotent || !json.Valid(tool.Schema()) {
		t.Errorf("defaults: name %q semantics %q", tool.Name(), tool.Semantics())
	}
	named, err := plugins.NewHTTP(plugins.HTTPConfig{Name: "payments", Semantics: plugins.Unsafe})
	if err != nil {
		t.Fatal(err)
	}
	if named.Name() != "payments" || named.Semantics() != plugins.Unsafe {
		t.Errorf("configured: name %q semantics %q", named.Name(), named.Semantics())
	}
}

// A node's workers call one host at once: the tool keeps a connection per
// worker instead of closing all but two after each burst and dialling again.
func TestHTTPKeepsConnectionsForConcurrentCalls(t *testing.T) {
	t.Parallel()
	const workers, rounds = 16, 4
	var (
		mu      sync.Mutex
		arrived int
		dialled atomic.Int32
		cond    = sync.NewCond(&mu)
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Hold each request until its whole round has arrived, so every
		// round really has 16 calls in flight at once.
		mu.Lock()
		arrived++
		round := (arrived + workers - 1) / workers
		cond.Broadcast()
		for arrived < round*workers {
			cond.Wait()
		}
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			dialled.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{u.Hostname()}})
	if err != nil {
		t.Fatal(err)
	}
	for r := range rounds {
		var wg sync.WaitGroup
		for i := range workers {
			wg.Go(func() {
				id := fmt.Sprintf("c-%d-%d", r, i)
				if _, err := tool.Invoke(t.Context(), plugins.Call{ID: id, TaskID: "t", Params: json.RawMessage(`{"url":"` + srv.URL + `"}`)}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	if n := dialled.Load(); n > workers+workers/4 {
		t.Errorf("%d connections for %d rounds of %d concurrent calls; want about %d, kept between rounds", n, rounds, workers, workers)
	}
}

// A refused connection proves nothing was sent: the error says so
// (ErrNotSent), so an unsafe call is not held in doubt for it. A request
// that reached the service and failed there does not.
func TestHTTPNotSentOnlyWhenNoConnection(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		if hj, ok := w.(http.Hijacker); ok {
			c, _, _ := hj.Hijack()
			c.Close() // the request arrived; the answer is lost
		}
	})
	tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{srv.host()}, Semantics: plugins.Unsafe})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"method":"POST","url":"` + srv.URL + `"}`)})
	wantStatus(t, err, abi.StatusTransient)
	if errors.Is(err, plugins.ErrNotSent) {
		t.Errorf("a request the service received is marked not sent: %v", err)
	}
	url := srv.URL
	srv.Close()
	_, err = tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"method":"POST","url":"` + url + `"}`)})
	wantStatus(t, err, abi.StatusTransient)
	if !errors.Is(err, plugins.ErrNotSent) {
		t.Errorf("connection refused is not marked not sent: %v", err)
	}
}

// net/http re-sends a request on its own when a reused connection dies
// before the answer and the request looks replayable (it carries an
// Idempotency-Key). An unsafe call must not be: the service saw it once,
// and the error is the ledger's to hold in doubt.
func TestHTTPUnsafeIsNotResentByTheTransport(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		sem  plugins.Semantics
		want int32
	}{{plugins.Unsafe, 1}, {plugins.Idempotent, 2}} {
		var posts atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet {
				return // opens the connection the POST will reuse
			}
			if r.Header.Get("Idempotency-Key") != "c" {
				t.Errorf("Idempotency-Key %q", r.Header.Get("Idempotency-Key"))
			}
			if posts.Add(1) == 1 {
				c, _, _ := w.(http.Hijacker).Hijack()
				c.Close() // read, then the connection dies before an answer
				return
			}
			_, _ = io.WriteString(w, "ok")
		}))
		tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"127.0.0.1"}, Semantics: tc.sem})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tool.Invoke(t.Context(), plugins.Call{ID: "g", TaskID: "t", Params: json.RawMessage(`{"url":"` + srv.URL + `"}`)}); err != nil {
			t.Fatal(err)
		}
		_, _ = tool.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"method":"POST","url":"` + srv.URL + `","body":"charge"}`)})
		if got := posts.Load(); got != tc.want {
			t.Errorf("%s: the service got the POST %d times, want %d", tc.sem, got, tc.want)
		}
		srv.Close()
	}
}
