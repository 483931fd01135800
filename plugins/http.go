package plugins

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/orloj/orloj/abi"
)

// HTTPToolName is the default name of the http tool.
const HTTPToolName = "http"

// Defaults of HTTPConfig.
const (
	DefaultHTTPTimeout = 30 * time.Second
	// DefaultMaxResponseBytes leaves room under abi.MaxResponseBytes for the
	// result envelope and for JSON escaping of the body.
	DefaultMaxResponseBytes = 3 << 20
)

// maxRedirects matches net/http's own default.
const maxRedirects = 10

// HTTPConfig configures an http tool. The zero value is valid and allows
// nothing: every host must be listed.
type HTTPConfig struct {
	// Name is the tool's name; default HTTPToolName. Register several http
	// tools under different names to give different hosts different
	// semantics or timeouts (e.g. a "payments" tool that is Unsafe).
	Name string
	// AllowHosts lists the hosts calls may reach, as "host" (any port) or
	// "host:port"; IPv6 addresses as "[::1]:8080" or "::1". Matching is on the
	// URL's host name, case-insensitive, never on wildcards: "*" is refused.
	// Redirects are held to the same list.
	AllowHosts []string
	// Timeout bounds one call, from sending the request to reading the whole
	// response; default DefaultHTTPTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the response body; default
	// DefaultMaxResponseBytes, at most abi.MaxResponseBytes.
	MaxResponseBytes int64
	// Client sends the requests; default a client of its own. It is copied,
	// never modified: the tool installs its own CheckRedirect on the copy,
	// which calls the client's after the allow-list check.
	Client *http.Client
	// Semantics declared to the host; default Idempotent, on the strength of
	// the Idempotency-Key header every request carries. Use Unsafe for hosts
	// that ignore the header and whose effects must not repeat. Reconcile is
	// refused: this tool cannot ask a server what happened.
	Semantics Semantics
}

// Validate reports the first invalid field of c, by name.
func (c HTTPConfig) Validate() error {
	if c.Name != "" {
		if err := abi.ValidToolName(c.Name); err != nil {
			return fmt.Errorf("HTTPConfig.Name: %w", err)
		}
	}
	for i, h := range c.AllowHosts {
		if _, err := parseHostRule(h); err != nil {
			return fmt.Errorf("HTTPConfig.AllowHosts[%d]: %w", i, err)
		}
	}
	if c.Timeout < 0 {
		return fmt.Errorf("HTTPConfig.Timeout: %s is negative", c.Timeout)
	}
	if c.MaxResponseBytes < 0 || c.MaxResponseBytes > abi.MaxResponseBytes {
		return fmt.Errorf("HTTPConfig.MaxResponseBytes: %d is outside 0..%d (0 means %d)",
			c.MaxResponseBytes, abi.MaxResponseBytes, DefaultMaxResponseBytes)
	}
	switch c.Semantics {
	case "", ReadOnly, Idempotent, Unsafe:
	case Reconcile:
		return fmt.Errorf("HTTPConfig.Semantics: %q needs a Reconciler, which the http tool is not", c.Semantics)
	default:
		return fmt.Errorf("HTTPConfig.Semantics: unknown semantics %q", c.Semantics)
	}
	return nil
}

// HTTPTool calls allow-listed HTTP(S) endpoints. Params:
//
//	{"method": "POST", "url": "https://api.example.com/v1/x",
//	 "headers": {"Content-Type": "application/json"}, "body": "{...}"}
//
// method defaults to GET. Result:
//
//	{"status": 200, "headers": {"Content-Type": "..."}, "body": "..."}
//
// with the first value of each response header under its canonical name. A
// body that is not valid UTF-8 is returned in base64 with
// "body_encoding": "base64", because a JSON string would silently replace its
// bytes. Every request carries the header Idempotency-Key: <call ID> and,
// when the node traces, the call's traceparent; the guest may not send
// traceparent or tracestate itself.
//
// The allow-list is checked against the URL's host name, not the addresses it
// resolves to: listing a name trusts its DNS.
type HTTPTool struct {
	name    string
	sem     Semantics
	allow   []hostRule
	timeout time.Duration
	max     int64
	client  *http.Client
}

// NewHTTP returns an http tool configured by cfg.
func NewHTTP(cfg HTTPConfig) (*HTTPTool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &HTTPTool{
		name:    cfg.Name,
		sem:     cfg.Semantics,
		timeout: cfg.Timeout,
		max:     cfg.MaxResponseBytes,
	}
	if t.name == "" {
		t.name = HTTPToolName
	}
	if t.sem == "" {
		t.sem = Idempotent
	}
	if t.timeout == 0 {
		t.timeout = DefaultHTTPTimeout
	}
	if t.max == 0 {
		t.max = DefaultMaxResponseBytes
	}
	for _, h := range cfg.AllowHosts {
		r, _ := parseHostRule(h) // checked by Validate
		t.allow = append(t.allow, r)
	}
	var c http.Client
	if cfg.Client != nil {
		c = *cfg.Client
	} else {
		c.Transport = newTransport()
	}
	next := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= maxRedirects {
			return abi.Errorf(abi.StatusToolError, "stopped after %d redirects", maxRedirects)
		}
		if err := t.permit(req.URL); err != nil {
			return annotate(err, "redirect to %s", req.URL.Redacted())
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	t.client = &c
	return t, nil
}

func (t *HTTPTool) Name() string            { return t.name }
func (t *HTTPTool) Semantics() Semantics    { return t.sem }
func (t *HTTPTool) Schema() json.RawMessage { return httpSchema }

var httpSchema = json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "http",
  "description": "Send an HTTP request to an allow-listed host. The request carries Idempotency-Key: <call ID>.",
  "type": "object",
  "properties": {
    "method": {"enum": ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"], "default": "GET"},
    "url": {"type": "string", "format": "uri", "description": "absolute http or https URL"},
    "headers": {"type": "object", "additionalProperties": {"type": "string"}},
    "body": {"type": "string"}
  },
  "required": ["url"],
  "additionalProperties": false
}`)

type httpParams struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

type httpResult struct {
	Status       int               `json:"status"`
	Headers      map[string]string `json:"headers"`
	Body         string            `json:"body"`
	BodyEncoding string            `json:"body_encoding,omitempty"`
}

var httpMethods = map[string]bool{
	http.MethodGet: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodHead: true,
}

// Invoke sends the request. Bad params fail with invalid_argument and a URL
// outside the allow-list with permission_denied, both before anything is sent.
func (t *HTTPTool) Invoke(ctx context.Context, call Call) (Result, error) {
	p, u, err := t.parse(call.Params)
	if err != nil {
		return Result{}, err
	}
	return t.send(ctx, call.ID, request{noReplay: !repeatable(t.sem), method: p.Method, u: u, headers: p.Headers, body: p.Body})
}

// request is one request the tool sends: what the guest's params name, and
// what a declared tool's definition adds to them.
type request struct {
	// noReplay: the call is not safe to repeat (unsafe or reconcile), so
	// net/http must not re-send it on its own (see send).
	noReplay bool
	method   string
	u        *url.URL
	headers  map[string]string // the guest's, checked
	body     string
	// extra headers are set after the guest's (a definition's fixed and
	// secret headers); they never reach a result or an error.
	extra http.Header
	// redact, if set, rewrites every byte of the response before any of it
	// reaches a result or an error message (a service that echoes the
	// credentials it was sent must not put them in the ledger).
	redact func([]byte) []byte
	// anyStatus returns a result for every response status instead of an
	// error for 4xx and 5xx (a reconcile query reads the status itself).
	anyStatus bool
}

func (rq *request) clean(b []byte) []byte {
	if rq.redact == nil {
		return b
	}
	return rq.redact(b)
}

// send makes the request with Idempotency-Key: id.
func (t *HTTPTool) send(ctx context.Context, id string, rq request) (Result, error) {
	what := rq.method + " " + rq.u.Redacted()

	callCtx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, rq.method, rq.u.String(), strings.NewReader(rq.body))
	if err != nil {
		return Result{}, statusErrorf(abi.StatusInvalidArgument, err, "%s", what)
	}
	if rq.body == "" {
		req.Body, req.GetBody, req.ContentLength = http.NoBody, nil, 0
	}
	for k, v := range rq.headers {
		req.Header.Set(k, v)
	}
	for k, vs := range rq.extra {
		req.Header[k] = vs
	}
	// Set last, so a guest cannot send a key of its own: the key must be the
	// call ID, or a retry would not be recognised as the same call.
	SetIdempotencyKey(req, id, !rq.noReplay)

	resp, err := do(t.client, req)
	if err != nil {
		return Result{}, transportError(ctx, t.timeout, what, err)
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		for i, v := range vs {
			vs[i] = string(rq.clean([]byte(v)))
		}
		resp.Header[k] = vs
	}
	if resp.StatusCode >= 400 && !rq.anyStatus {
		// Read past the excerpt and redact before cutting, so no part of
		// a secret (up to 3 excerpts long) survives at the cut.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4*excerptBytes)) // an excerpt is best effort
		return Result{}, responseError(resp, what, excerpt(rq.clean(b)))
	}
	if rq.method != http.MethodHead && resp.ContentLength > t.max {
		return Result{}, abi.Errorf(abi.StatusToolError, "%s: response larger than %d bytes", what, t.max)
	}
	body, err := readCapped(resp.Body, t.max)
	if errors.Is(err, errResponseTooLarge) {
		return Result{}, abi.Errorf(abi.StatusToolError, "%s: response larger than %d bytes", what, t.max)
	}
	if err != nil {
		return Result{}, transportError(ctx, t.timeout, what+": read response", err)
	}
	body = rq.clean(body)

	res := httpResult{Status: resp.StatusCode, Headers: make(map[string]string, len(resp.Header))}
	for k, vs := range resp.Header {
		if len(vs) > 0 {
			res.Headers[k] = vs[0]
		}
	}
	if utf8.Valid(body) {
		res.Body = string(body)
	} else {
		res.Body, res.BodyEncoding = base64.StdEncoding.EncodeToString(body), "base64"
	}
	out, err := marshalBody(res)
	if err != nil {
		return Result{}, annotate(err, "%s", what)
	}
	return Result{Body: out}, nil
}

// parse decodes and checks params; everything that can be refused is refused
// here, before a connection is opened.
func (t *HTTPTool) parse(params json.RawMessage) (httpParams, *url.URL, error) {
	var p httpParams
	if err := decodeParams(params, &p); err != nil {
		return p, nil, err
	}
	if p.Method == "" {
		p.Method = http.MethodGet
	}
	if !httpMethods[p.Method] {
		return p, nil, abi.Errorf(abi.StatusInvalidArgument, "method %q: want GET, POST, PUT, PATCH, DELETE or HEAD", p.Method)
	}
	if p.URL == "" {
		return p, nil, abi.Errorf(abi.StatusInvalidArgument, "url is required")
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return p, nil, statusErrorf(abi.StatusInvalidArgument, err, "url")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return p, nil, abi.Errorf(abi.StatusPermissionDenied, "scheme %q is not allowed; use http or https", u.Scheme)
	}
	if u.Host == "" {
		return p, nil, abi.Errorf(abi.StatusInvalidArgument, "url %q has no host", p.URL)
	}
	if err := t.permit(u); err != nil {
		return p, nil, err
	}
	for k, v := range p.Headers {
		if !validHeaderName(k) {
			return p, nil, abi.Errorf(abi.StatusInvalidArgument, "header name %q is not a valid token", k)
		}
		if !validHeaderValue(v) {
			return p, nil, abi.Errorf(abi.StatusInvalidArgument, "header %q: value has control characters", k)
		}
		if err := refuseTraceHeader(t.name, k); err != nil {
			return p, nil, err
		}
	}
	return p, u, nil
}

// permit checks u's scheme and host against the allow-list.
func (t *HTTPTool) permit(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return abi.Errorf(abi.StatusPermissionDenied, "scheme %q is not allowed; use http or https", u.Scheme)
	}
	host := normalizeHost(u.Hostname())
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	for _, r := range t.allow {
		if r.host == host && (r.port == "" || r.port == port) {
			return nil
		}
	}
	return abi.Errorf(abi.StatusPermissionDenied, "host %q is not on the allow-list of tool %q", net.JoinHostPort(host, port), t.name)
}

// hostRule is one AllowHosts entry; an empty port matches any port.
type hostRule struct{ host, port string }

func parseHostRule(s string) (hostRule, error) {
	bad := func(why string) (hostRule, error) {
		return hostRule{}, fmt.Errorf("%q: %s; want host or host:port", s, why)
	}
	switch {
	case s == "":
		return bad("empty")
	case strings.Contains(s, "*"):
		return bad("wildcards are not allowed")
	case strings.ContainsAny(s, "/?#@ \t"):
		return bad("not a bare host")
	}
	if ip := net.ParseIP(s); ip != nil { // a bare IPv6 address has colons but no port
		return hostRule{host: normalizeHost(s)}, nil
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if net.ParseIP(s[1:len(s)-1]) == nil {
			return bad("not an IP address in brackets")
		}
		return hostRule{host: normalizeHost(s[1 : len(s)-1])}, nil
	}
	if !strings.Contains(s, ":") {
		return hostRule{host: normalizeHost(s)}, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return bad(err.Error())
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return bad("port must be 1..65535")
	}
	if host == "" {
		return bad("no host")
	}
	return hostRule{host: normalizeHost(host), port: port}, nil
}

// normalizeHost makes equal names compare equal: DNS names are
// case-insensitive and "example.com." is "example.com".
func normalizeHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// validHeaderName reports whether s is an RFC 9110 token. net/http would
// refuse a bad name only when sending, as an error we would mistake for a
// transport failure.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}

// validHeaderValue refuses control characters other than tab, which would
// let a guest split headers.
func validHeaderValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// repeatable reports whether sending a call of these semantics twice is
// harmless (the service dedupes by key, or nothing changes).
func repeatable(s Semantics) bool { return s == ReadOnly || s == Idempotent || s == "" }
