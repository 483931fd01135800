package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/orloj/orloj/abi"
)

// DeclaredOptions are what a node gives every declared tool it builds.
type DeclaredOptions struct {
	// Secrets resolves the secrets definitions name; nil resolves none
	// (a call needing one fails, transient, naming it).
	Secrets Secrets
	// Client sends the requests; default a client of the tool's own.
	Client *http.Client
}

// NewDeclared builds the tool a definition declares. The definition must
// be valid (ParseDefinition); NewDeclared checks it again.
func NewDeclared(d Definition, opts DeclaredOptions) (Tool, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	switch d.Kind {
	case KindHTTP:
		return newDeclaredHTTP(d, opts)
	}
	// A wasm tool runs in the sandbox, which this package does not know:
	// the host builds it (host.DeclaredTools).
	return nil, fmt.Errorf("%w: tool %s: kind %q is built by the host", ErrKindNotSupported, d.Name, d.Kind)
}

// DeclaredHTTP is an http tool a definition declares: the built-in http
// tool's client and params, held to one base URL, some methods and path
// prefixes, with headers the definition adds (fixed, or from node-local
// secrets, resolved at every call). Secret values never reach the guest:
// every byte of a response, and every error message, is redacted of them
// before the host sees it, so the ledger and the journal cannot record them.
type DeclaredHTTP struct {
	def      Definition
	base     *url.URL
	methods  []string
	prefixes []string
	headers  map[string]HeaderValue // canonical names
	sem      Semantics
	inner    *HTTPTool
	secrets  Secrets
	schema   json.RawMessage
}

func newDeclaredHTTP(d Definition, opts DeclaredOptions) (*DeclaredHTTP, error) {
	h := d.HTTP
	base, err := parseBaseURL(h.BaseURL) // checked by Validate
	if err != nil {
		return nil, fmt.Errorf("%w: http.base_url: %w", ErrInvalidDefinition, err)
	}
	cfg := HTTPConfig{Name: d.Name, AllowHosts: []string{base.Host}, MaxResponseBytes: h.MaxResponseBytes, Client: opts.Client}
	if h.Timeout != "" {
		cfg.Timeout, _ = time.ParseDuration(h.Timeout) // checked by Validate
	}
	inner, err := NewHTTP(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: tool %s: %w", ErrInvalidDefinition, d.Name, err)
	}
	t := &DeclaredHTTP{def: d, base: base, methods: h.Methods, prefixes: h.PathPrefixes, sem: h.Semantics,
		inner: inner, secrets: opts.Secrets, headers: make(map[string]HeaderValue, len(h.Headers))}
	if len(t.methods) == 0 {
		t.methods = []string{http.MethodGet}
	}
	for k, v := range h.Headers {
		t.headers[http.CanonicalHeaderKey(k)] = v
	}
	t.schema = declaredSchema(d, t.methods)
	return t, nil
}

func (t *DeclaredHTTP) Name() string            { return t.def.Name }
func (t *DeclaredHTTP) Semantics() Semantics    { return t.sem }
func (t *DeclaredHTTP) Schema() json.RawMessage { return t.schema }

// Definition is the document the tool was built from.
func (t *DeclaredHTTP) Definition() Definition { return t.def }

type declaredParams struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Path    string            `json:"path"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// Invoke checks the guest's request against the definition (before
// anything is sent: invalid_argument for malformed params, permission_denied
// for a method, URL or header the definition does not allow), adds the
// definition's headers and sends it with the http tool's client.
func (t *DeclaredHTTP) Invoke(ctx context.Context, call Call) (Result, error) {
	var p declaredParams
	if err := decodeParams(call.Params, &p); err != nil {
		return Result{}, err
	}
	if p.Method == "" {
		p.Method = t.methods[0]
	}
	if !slices.Contains(t.methods, p.Method) {
		return Result{}, abi.Errorf(abi.StatusPermissionDenied, "tool %s: method %q is not allowed; the definition allows %s", t.def.Name, p.Method, strings.Join(t.methods, ", "))
	}
	u, err := t.target(p.URL, p.Path)
	if err != nil {
		return Result{}, err
	}
	for k, v := range p.Headers {
		if !validHeaderName(k) {
			return Result{}, abi.Errorf(abi.StatusInvalidArgument, "header name %q is not a valid token", k)
		}
		if !validHeaderValue(v) {
			return Result{}, abi.Errorf(abi.StatusInvalidArgument, "header %q: value has control characters", k)
		}
		if err := refuseTraceHeader(t.def.Name, k); err != nil {
			return Result{}, err
		}
		if _, set := t.headers[http.CanonicalHeaderKey(k)]; set {
			return Result{}, abi.Errorf(abi.StatusPermissionDenied, "tool %s: header %s is set by the tool's definition; the agent may not send it", t.def.Name, http.CanonicalHeaderKey(k))
		}
	}
	extra, redact, err := t.resolveHeaders()
	if err != nil {
		return Result{}, err
	}
	res, err := t.inner.send(ctx, call.ID, request{noReplay: !repeatable(t.sem), method: p.Method, u: u, headers: p.Headers, body: p.Body, extra: extra, redact: redact.bytes})
	return res, redact.err(err)
}

// Reconcile asks the definition's status URL whether call.ID was applied:
// 200 is applied, with the response as the call's result; 404 is not
// applied; anything else is transient (ask again later).
func (t *DeclaredHTTP) Reconcile(ctx context.Context, call Call) (Result, bool, error) {
	if t.def.HTTP.StatusURL == "" {
		return Result{}, false, abi.Errorf(abi.StatusToolError, "tool %s declares no status_url", t.def.Name)
	}
	u, err := url.Parse(strings.ReplaceAll(t.def.HTTP.StatusURL, "{call_id}", url.QueryEscape(call.ID)))
	if err != nil {
		return Result{}, false, abi.Errorf(abi.StatusToolError, "tool %s: status_url: %v", t.def.Name, err)
	}
	extra, redact, err := t.resolveHeaders()
	if err != nil {
		return Result{}, false, err
	}
	res, err := t.inner.send(ctx, call.ID, request{method: http.MethodGet, u: u, extra: extra, redact: redact.bytes, anyStatus: true})
	if err != nil {
		return Result{}, false, redact.err(err)
	}
	var got httpResult
	if err := json.Unmarshal(res.Body, &got); err != nil {
		return Result{}, false, annotate(err, "tool %s: reconcile: decode status", t.def.Name)
	}
	switch got.Status {
	case http.StatusOK:
		return res, true, nil
	case http.StatusNotFound:
		return Result{}, false, nil
	}
	return Result{}, false, abi.Errorf(abi.StatusTransient, "tool %s: reconcile: GET %s answered %d; want 200 (applied) or 404 (not applied)", t.def.Name, u.Redacted(), got.Status)
}

// target builds the request URL from url or path and checks it stays under
// the base URL and a path prefix.
func (t *DeclaredHTTP) target(raw, path string) (*url.URL, error) {
	deny := func(format string, args ...any) error {
		return abi.Errorf(abi.StatusPermissionDenied, "tool %s: %s", t.def.Name, fmt.Sprintf(format, args...))
	}
	var u *url.URL
	switch {
	case raw != "" && path != "":
		return nil, abi.Errorf(abi.StatusInvalidArgument, "send url or path, not both")
	case raw == "" && path == "":
		return nil, abi.Errorf(abi.StatusInvalidArgument, "url or path is required (path is below %s)", t.base)
	case path != "":
		var err error
		if u, err = url.Parse(t.base.String() + path); err != nil || !strings.HasPrefix(path, "/") {
			return nil, abi.Errorf(abi.StatusInvalidArgument, "path %q: want an absolute path, e.g. /v1/items?x=1", path)
		}
	default:
		var err error
		if u, err = url.Parse(raw); err != nil {
			return nil, statusErrorf(abi.StatusInvalidArgument, err, "url")
		}
	}
	if u.Scheme != t.base.Scheme || !strings.EqualFold(u.Host, t.base.Host) || u.User != nil {
		return nil, deny("%s is not under the tool's base URL %s", u.Redacted(), t.base)
	}
	if u.Fragment != "" {
		return nil, abi.Errorf(abi.StatusInvalidArgument, "url %q: no fragment", u.Redacted())
	}
	p := u.EscapedPath()
	if err := checkPath(cmpOr(p, "/")); err != nil {
		return nil, deny("%v", err)
	}
	if t.base.Path != "" && !underPrefix(p, t.base.Path) {
		return nil, deny("path %s is not under the tool's base URL %s", p, t.base)
	}
	rel := cmpOr(strings.TrimPrefix(p, t.base.Path), "/")
	if len(t.prefixes) > 0 && !slices.ContainsFunc(t.prefixes, func(pre string) bool { return underPrefix(rel, pre) }) {
		return nil, deny("path %s is not under an allowed prefix (%s)", rel, strings.Join(t.prefixes, ", "))
	}
	return u, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// resolveHeaders reads the definition's headers, secrets included, for one
// call, and returns the redactor of the secret values it read.
func (t *DeclaredHTTP) resolveHeaders() (http.Header, redactor, error) {
	h := make(http.Header, len(t.headers))
	var r redactor
	names := make([]string, 0, len(t.headers))
	for k := range t.headers {
		names = append(names, k)
	}
	sort.Strings(names) // the first missing secret named is the same on every call
	for _, k := range names {
		v := t.headers[k]
		if v.Secret == "" {
			h.Set(k, v.Value)
			continue
		}
		val, raw, err := v.resolve(t.secrets)
		if err != nil {
			// The error names the secret and where it was looked for, never a value.
			return nil, r, annotate(err, "tool %s: header %s", t.def.Name, k)
		}
		r = append(r, secretValue{name: v.Secret, value: []byte(raw)})
		h.Set(k, val)
	}
	return h, r, nil
}

type secretValue struct {
	name  string
	value []byte
}

// redactor replaces secret values in what a service answered.
type redactor []secretValue

func (r redactor) bytes(b []byte) []byte {
	for _, s := range r {
		if len(s.value) > 0 && bytes.Contains(b, s.value) {
			b = bytes.ReplaceAll(b, s.value, []byte("[secret "+s.name+"]"))
		}
	}
	return b
}

// err returns err with every secret value cut from its message. The
// redacted error keeps the status and drops the cause: a cause's text may
// hold what was cut.
func (r redactor) err(err error) error {
	if err == nil || len(r) == 0 {
		return err
	}
	msg := err.Error()
	clean := string(r.bytes([]byte(msg)))
	if clean == msg {
		return err
	}
	st, ok := abi.StatusOf(err)
	if !ok {
		st = abi.StatusTransient
	}
	var ae *abi.Error
	if errors.As(err, &ae) {
		clean = string(r.bytes([]byte(ae.Message)))
	}
	return abi.Errorf(st, "%s", clean)
}

func declaredSchema(d Definition, methods []string) json.RawMessage {
	desc := d.Description
	if desc == "" {
		desc = "Send an HTTP request below " + d.HTTP.BaseURL + "."
	}
	s := map[string]any{
		"$schema":     "https://json-schema.org/draft/2020-12/schema",
		"title":       d.Name,
		"description": desc + " The request carries Idempotency-Key: <call ID>.",
		"type":        "object",
		"properties": map[string]any{
			"method":  map[string]any{"enum": methods, "default": methods[0]},
			"path":    map[string]any{"type": "string", "description": "path and query below " + d.HTTP.BaseURL},
			"url":     map[string]any{"type": "string", "format": "uri", "description": "absolute URL below " + d.HTTP.BaseURL + " (instead of path)"},
			"headers": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}},
			"body":    map[string]any{"type": "string"},
		},
		"additionalProperties": false,
	}
	b, _ := json.Marshal(s) // maps of strings: cannot fail
	return b
}
