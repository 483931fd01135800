package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/orloj/orloj/abi"
)

// A declared tool is defined by a document, not by Go code: an operator
// pushes it (orlojd tool push), the cluster replicates it as a versioned
// object, and every node builds the same tool from it. This file owns the
// document's format; declared_http.go builds the http kind.

// ToolKind is what a declared tool is.
type ToolKind string

const (
	// KindHTTP is an HTTP endpoint with declared semantics (HTTPDefinition).
	KindHTTP ToolKind = "http"
	// KindWASM is a tool plugin module run in the sandbox (WASMDefinition).
	KindWASM ToolKind = "wasm"
	// KindMCP is an MCP server whose tools are called "<name>/<tool>"
	// (MCPDefinition).
	KindMCP ToolKind = "mcp"
)

// Approval says whether a declared tool's calls wait for a person.
type Approval string

// ApprovalRequired: each call waits for a person to approve that call.
const ApprovalRequired Approval = "required"

// Sentinel errors of ParseDefinition and NewDeclared.
var (
	// ErrInvalidDefinition: the document is malformed or a field is wrong.
	ErrInvalidDefinition = errors.New("invalid tool definition")
	// ErrKindNotSupported: the kind is known but this version cannot build it.
	ErrKindNotSupported = errors.New("tool kind not supported yet")
)

// MaxDefinitionBytes bounds a definition document.
const MaxDefinitionBytes = 64 << 10

// MaxDeclaredTimeout bounds a declared tool's timeout.
const MaxDeclaredTimeout = 10 * time.Minute

// Definition is a declared tool's document. Name, Kind and the section named
// after the kind are what every kind has; each kind's section holds the rest,
// so a new kind adds a section without changing the others.
type Definition struct {
	Name        string   `json:"name"`
	Kind        ToolKind `json:"kind"`
	Description string   `json:"description,omitempty"`
	// Approval "required": every call of the tool (of every tool of an MCP
	// server) waits for a person to approve that call.
	Approval Approval        `json:"approval,omitempty"`
	HTTP     *HTTPDefinition `json:"http,omitempty"`
	WASM     *WASMDefinition `json:"wasm,omitempty"`
	MCP      *MCPDefinition  `json:"mcp,omitempty"`
}

// MCPDefinition declares an MCP server: a streamable HTTP URL, or a command
// each node starts and talks to over stdio. Tool "search" of the server
// declared as "docs" is called "docs/search"; a task pins the server's
// version, and each version is its own connection (its own process).
type MCPDefinition struct {
	// URL is a streamable HTTP endpoint. Exactly one of URL and Command.
	URL string `json:"url,omitempty"`
	// Headers every request to URL carries, fixed or from a secret.
	Headers map[string]HeaderValue `json:"headers,omitempty"`
	// Command and Args start a stdio server. A node runs only the commands
	// its operator allows (the serve setting mcp_commands): a definition
	// is pushed over the API, and must not be a way to run any program on
	// every node.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	// Env is the command's environment (with PATH and HOME), fixed or from
	// secrets; the node's own environment is not passed on.
	Env map[string]HeaderValue `json:"env,omitempty"`
	// Tools overrides the semantics of tools by their MCP name; the others
	// take theirs from the tools' annotations.
	Tools map[string]Semantics `json:"tools,omitempty"`
	// Timeout of one call, and of connecting; a Go duration, default 30s.
	Timeout string `json:"timeout,omitempty"`
	// MaxResponseBytes caps a call's result; default 3 MiB, at most 4 MiB.
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`
}

// Limits of an MCPDefinition, so a definition cannot make a node hold
// thousands of processes' arguments or variables.
const (
	maxMCPArgs = 64
	maxMCPEnv  = 64
)

// TimeoutOrDefault is the definition's timeout (validated), or 0 for the
// MCP client's default.
func (m *MCPDefinition) TimeoutOrDefault() time.Duration {
	if d, err := time.ParseDuration(m.Timeout); err == nil && d > 0 {
		return d
	}
	return 0
}

func (m *MCPDefinition) validate() error {
	switch {
	case m.URL == "" && m.Command == "":
		return errors.New("url: set url (streamable HTTP) or command (stdio)")
	case m.URL != "" && m.Command != "":
		return errors.New("url: set url or command, not both")
	case m.URL != "":
		u, err := url.Parse(m.URL)
		if err != nil {
			return fmt.Errorf("url: %v", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("url %q: want an absolute http or https URL", u.Redacted())
		}
		if u.User != nil {
			return fmt.Errorf("url %q: user info is not allowed; put credentials in a secret header", u.Redacted())
		}
		if len(m.Args) > 0 || len(m.Env) > 0 {
			return errors.New("args: args and env are for a command, not a url")
		}
	default:
		if len(m.Headers) > 0 {
			return errors.New("headers: headers are for a url, not a command (give a command env)")
		}
		if strings.ContainsRune(m.Command, 0) || len(m.Args) > maxMCPArgs {
			return fmt.Errorf("command: at most %d args, no NUL", maxMCPArgs)
		}
		for i, a := range m.Args {
			if strings.ContainsRune(a, 0) {
				return fmt.Errorf("args[%d]: has a NUL", i)
			}
		}
	}
	if err := validateHeaders(m.Headers); err != nil {
		return err
	}
	if len(m.Env) > maxMCPEnv {
		return fmt.Errorf("env: %d variables; at most %d", len(m.Env), maxMCPEnv)
	}
	for _, k := range slices.Sorted(maps.Keys(m.Env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") || k == "PATH" || k == "HOME" {
			return fmt.Errorf("env: %q is not a variable the definition may set", k)
		}
		if err := validateValue("env."+k, m.Env[k], func(v string) bool { return !strings.ContainsRune(v, 0) }); err != nil {
			return err
		}
	}
	if err := CheckMCPSemantics(m.Tools); err != nil {
		return fmt.Errorf("tools%v", err)
	}
	if m.Timeout != "" {
		d, err := time.ParseDuration(m.Timeout)
		if err != nil || d <= 0 || d > MaxDeclaredTimeout {
			return fmt.Errorf("timeout %q: want a duration above 0 and at most %s", m.Timeout, MaxDeclaredTimeout)
		}
	}
	if m.MaxResponseBytes < 0 || m.MaxResponseBytes > abi.MaxResponseBytes {
		return fmt.Errorf("max_response_bytes %d: want 0 (default %d) to %d", m.MaxResponseBytes, DefaultMaxResponseBytes, abi.MaxResponseBytes)
	}
	return nil
}

// CheckMCPSemantics checks the semantics overrides of an MCP server's
// tools: an MCP server cannot be asked what happened to a call, so a tool
// cannot reconcile. The error names the tool as [%q].
func CheckMCPSemantics(tools map[string]Semantics) error {
	for _, name := range slices.Sorted(maps.Keys(tools)) {
		switch sem := tools[name]; sem {
		case ReadOnly, Idempotent, Unsafe:
		case Reconcile:
			return fmt.Errorf("[%q]: %q needs a way to ask the server what happened, which MCP does not have", name, sem)
		default:
			return fmt.Errorf("[%q]: unknown semantics %q; want read_only, idempotent or unsafe", name, sem)
		}
	}
	return nil
}

// WASMDefinition declares a tool served by a plugin module
// (docs/plugins.md). The module is uploaded first (POST /v1/modules, or
// `orlojd tool push --module`) and named here by its digest.
type WASMDefinition struct {
	// Module is the hex sha256 of the plugin module.
	Module string `json:"module"`
	// AllowHosts are the hosts the plugin's HTTP requests may reach (as
	// --http-allow: host or host:port); none when empty.
	AllowHosts []string `json:"allow_hosts,omitempty"`
	// Semantics overrides what the plugin describes: read_only,
	// idempotent or unsafe.
	Semantics Semantics `json:"semantics,omitempty"`
	// Timeout of one call, a Go duration; default 30s, at most 10m.
	Timeout string `json:"timeout,omitempty"`
	// MemoryLimit of one call's instance in bytes; default 256 MiB.
	MemoryLimit uint64 `json:"memory_limit,omitempty"`
}

// TimeoutOrDefault is the definition's timeout (validated).
func (w *WASMDefinition) TimeoutOrDefault() time.Duration {
	if d, err := time.ParseDuration(w.Timeout); err == nil && d > 0 {
		return d
	}
	return 30 * time.Second
}

func (w *WASMDefinition) validate() error {
	if len(w.Module) != 64 || strings.Trim(w.Module, "0123456789abcdef") != "" {
		return fmt.Errorf("module: %q is not a module digest (64 hex digits; upload the module first)", w.Module)
	}
	for i, h := range w.AllowHosts {
		if _, err := parseHostRule(h); err != nil {
			return fmt.Errorf("allow_hosts[%d]: %w", i, err)
		}
	}
	switch w.Semantics {
	case "", ReadOnly, Idempotent, Unsafe:
	default:
		return fmt.Errorf("semantics %q: want read_only, idempotent or unsafe (a plugin cannot reconcile)", w.Semantics)
	}
	if w.Timeout != "" {
		d, err := time.ParseDuration(w.Timeout)
		if err != nil || d <= 0 || d > MaxDeclaredTimeout {
			return fmt.Errorf("timeout %q: want a duration above 0 and at most %s", w.Timeout, MaxDeclaredTimeout)
		}
	}
	if w.MemoryLimit > 4<<30 {
		return fmt.Errorf("memory_limit %d: at most 4 GiB", w.MemoryLimit)
	}
	return nil
}

// HTTPDefinition declares an http tool. The guest sends the built-in http
// tool's params (method, url or path, headers, body); the request must stay
// under BaseURL and one of PathPrefixes, with one of Methods.
type HTTPDefinition struct {
	// BaseURL is where every request goes: scheme, host, optional port and
	// path ("https://slack.com/api"). No query, fragment or user info.
	BaseURL string `json:"base_url"`
	// Methods the guest may use; default ["GET"].
	Methods []string `json:"methods,omitempty"`
	// PathPrefixes the request path (below BaseURL's) must start with, by
	// whole segments ("/charges" allows "/charges" and "/charges/1", not
	// "/charges-admin"); default: anything below BaseURL.
	PathPrefixes []string `json:"path_prefixes,omitempty"`
	// Headers every request carries, fixed or from a named secret. The
	// guest may not send a header the definition sets.
	Headers map[string]HeaderValue `json:"headers,omitempty"`
	// Timeout of one call, a Go duration ("10s"); default 30s, at most 10m.
	Timeout string `json:"timeout,omitempty"`
	// MaxResponseBytes caps the response body; default 3 MiB, at most 4 MiB.
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`
	// Semantics of a call in doubt; required: read_only, idempotent,
	// reconcile or unsafe.
	Semantics Semantics `json:"semantics"`
	// StatusURL, required with reconcile, is asked (GET) whether a call in
	// doubt was applied: {call_id} is replaced by the call's ID. 200 means
	// applied, its response is the call's result; 404 means not applied;
	// anything else, ask again later. Same scheme, host and port as BaseURL.
	StatusURL string `json:"status_url,omitempty"`
}

// HeaderValue is a fixed header value ("application/json") or a reference to
// a node-local secret ({"secret": "slack-token", "format": "Bearer %s"}). A
// definition holds only the reference; the value is read on the node that
// makes the call, when it makes it.
type HeaderValue struct {
	Value  string `json:"-"`
	Secret string `json:"secret,omitempty"`
	// Format has exactly one %s, where the secret goes; default "%s".
	Format string `json:"format,omitempty"`
}

// Resolve returns the value: the fixed one, or the secret read from
// secrets now and put in Format. An error names the secret, never a value,
// and carries abi.StatusTransient (another node, or this one later, may
// have the secret).
func (h HeaderValue) Resolve(secrets Secrets) (string, error) {
	v, _, err := h.resolve(secrets)
	return v, err
}

// resolve is Resolve that also returns the secret's bare value, for a
// redactor.
func (h HeaderValue) resolve(secrets Secrets) (value, secret string, err error) {
	if h.Secret == "" {
		return h.Value, "", nil
	}
	if secrets == nil {
		return "", "", abi.Errorf(abi.StatusTransient, "secret %q is not available on this node", h.Secret)
	}
	val, err := secrets.Secret(h.Secret)
	if err != nil {
		return "", "", err
	}
	if !validHeaderValue(val) {
		return "", "", abi.Errorf(abi.StatusTransient, "secret %q has control characters (a trailing newline is trimmed; others are refused)", h.Secret)
	}
	return strings.Replace(cmpOr(h.Format, "%s"), "%s", val, 1), val, nil
}

// UnmarshalJSON takes a string or {"secret": NAME, "format": F}.
func (h *HeaderValue) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '"' {
		*h = HeaderValue{}
		return json.Unmarshal(t, &h.Value)
	}
	var ref struct {
		Secret string `json:"secret"`
		Format string `json:"format"`
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ref); err != nil {
		return fmt.Errorf(`a header is a string or {"secret": NAME, "format": "...%%s..."}: %w`, err)
	}
	if ref.Secret == "" {
		return errors.New(`a header object needs "secret": the name of a secret`)
	}
	*h = HeaderValue{Secret: ref.Secret, Format: ref.Format}
	return nil
}

// MarshalJSON writes what UnmarshalJSON reads.
func (h HeaderValue) MarshalJSON() ([]byte, error) {
	if h.Secret == "" {
		return json.Marshal(h.Value)
	}
	type ref HeaderValue
	return json.Marshal(ref(h))
}

// SecretNames are the secrets d refers to, sorted, never nil.
func (d Definition) SecretNames() []string {
	names := []string{}
	add := func(vs map[string]HeaderValue) {
		for _, v := range vs {
			if v.Secret != "" && !slices.Contains(names, v.Secret) {
				names = append(names, v.Secret)
			}
		}
	}
	if d.HTTP != nil {
		add(d.HTTP.Headers)
	}
	if d.MCP != nil {
		add(d.MCP.Headers)
		add(d.MCP.Env)
	}
	slices.Sort(names)
	return names
}

// ParseDefinition decodes and checks a definition document (JSON; the CLI
// turns YAML into JSON first). Unknown fields are refused, so a misspelt
// "path_prefix" is an error, not an open door. The error wraps
// ErrInvalidDefinition or ErrKindNotSupported.
func ParseDefinition(doc []byte) (Definition, error) {
	var d Definition
	if len(doc) > MaxDefinitionBytes {
		return d, fmt.Errorf("%w: the document is %d bytes; the limit is %d", ErrInvalidDefinition, len(doc), MaxDefinitionBytes)
	}
	trimmed := bytes.TrimSpace(doc)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return d, fmt.Errorf("%w: want a JSON object", ErrInvalidDefinition)
	}
	// Duplicate keys, invalid UTF-8 and trailing data are refused as in
	// guests' messages: with encoding/json alone the last of two
	// "semantics" would silently win.
	if err := abi.CheckJSON(trimmed); err != nil {
		return d, fmt.Errorf("%w: %v", ErrInvalidDefinition, err)
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return d, fmt.Errorf("%w: %s", ErrInvalidDefinition, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return d, fmt.Errorf("%w: data after the JSON object", ErrInvalidDefinition)
	}
	return d, d.Validate()
}

// Canonical renders d as canonical JSON (RFC 8785): equal definitions have
// equal bytes, so the cluster's digest of them says whether a push changed
// anything.
func (d Definition) Canonical() ([]byte, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return nil, fmt.Errorf("encode tool definition %s: %w", d.Name, err)
	}
	return abi.Canonicalize(b)
}

// Validate reports the first invalid field, by its name in the document.
func (d Definition) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidDefinition, fmt.Sprintf(format, args...))
	}
	if d.Name == "" {
		return bad("name is required")
	}
	if err := abi.ValidToolName(d.Name); err != nil {
		return bad("name: %s", abiMessage(err))
	}
	if strings.Contains(d.Name, "/") {
		return bad("name %q: '/' is kept for the tools of MCP servers (server/tool)", d.Name)
	}
	if len(d.Description) > 4<<10 {
		return bad("description is %d bytes; the limit is 4096", len(d.Description))
	}
	if d.Approval != "" && d.Approval != ApprovalRequired {
		return bad("approval %q: want \"required\" or nothing", d.Approval)
	}
	sections := map[ToolKind]bool{KindHTTP: d.HTTP != nil, KindWASM: d.WASM != nil, KindMCP: d.MCP != nil}
	switch d.Kind {
	case KindHTTP, KindWASM, KindMCP:
	case "":
		return bad("kind is required (http, wasm or mcp)")
	default:
		return bad("kind %q: want http, wasm or mcp", d.Kind)
	}
	for k, set := range sections {
		if set && k != d.Kind {
			return bad("section %q does not belong to a tool of kind %q", k, d.Kind)
		}
	}
	if d.Kind == KindMCP {
		if d.MCP == nil {
			return bad(`kind mcp needs an "mcp" section`)
		}
		if err := d.MCP.validate(); err != nil {
			return bad("mcp.%v", err)
		}
		return nil
	}
	if d.Kind == KindWASM {
		if d.WASM == nil {
			return bad(`kind wasm needs a "wasm" section`)
		}
		if err := d.WASM.validate(); err != nil {
			return bad("wasm.%v", err)
		}
		return nil
	}
	if d.HTTP == nil {
		return bad(`kind http needs an "http" section`)
	}
	if err := d.HTTP.validate(); err != nil {
		return bad("http.%v", err)
	}
	return nil
}

func abiMessage(err error) string {
	var ae *abi.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// reservedHeaders are the host's or the transport's to set.
var reservedHeaders = map[string]bool{"Idempotency-Key": true, "Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Traceparent": true, "Tracestate": true}

func (h *HTTPDefinition) validate() error {
	base, err := parseBaseURL(h.BaseURL)
	if err != nil {
		return fmt.Errorf("base_url: %w", err)
	}
	for i, m := range h.Methods {
		if !httpMethods[m] {
			return fmt.Errorf("methods[%d]: %q is not one of GET, POST, PUT, PATCH, DELETE, HEAD", i, m)
		}
	}
	for i, p := range h.PathPrefixes {
		if err := checkPath(p); err != nil {
			return fmt.Errorf("path_prefixes[%d]: %w", i, err)
		}
	}
	if err := validateHeaders(h.Headers); err != nil {
		return err
	}
	if h.Timeout != "" {
		d, err := time.ParseDuration(h.Timeout)
		if err != nil || d <= 0 || d > MaxDeclaredTimeout {
			return fmt.Errorf("timeout %q: want a duration from 1ms to %s (e.g. 10s)", h.Timeout, MaxDeclaredTimeout)
		}
	}
	if h.MaxResponseBytes < 0 || h.MaxResponseBytes > abi.MaxResponseBytes {
		return fmt.Errorf("max_response_bytes %d: want 0 (default %d) to %d", h.MaxResponseBytes, DefaultMaxResponseBytes, abi.MaxResponseBytes)
	}
	switch {
	case h.Semantics == "":
		return errors.New("semantics is required: read_only, idempotent, reconcile or unsafe (what the host may do with a call in doubt)")
	case !h.Semantics.Valid():
		return fmt.Errorf("semantics %q: want read_only, idempotent, reconcile or unsafe", h.Semantics)
	case h.Semantics == Reconcile && h.StatusURL == "":
		return errors.New(`semantics reconcile needs status_url, e.g. "https://pay.example/charges?key={call_id}"`)
	case h.Semantics != Reconcile && h.StatusURL != "":
		return fmt.Errorf("status_url is asked only with semantics reconcile, not %s", h.Semantics)
	}
	if h.StatusURL != "" {
		if !strings.Contains(h.StatusURL, "{call_id}") {
			return fmt.Errorf("status_url %q: needs {call_id}, where the call's ID goes", h.StatusURL)
		}
		u, err := url.Parse(strings.ReplaceAll(h.StatusURL, "{call_id}", "x"))
		if err != nil {
			return fmt.Errorf("status_url: %v", err)
		}
		if u.Scheme != base.Scheme || !strings.EqualFold(u.Host, base.Host) || u.User != nil {
			return fmt.Errorf("status_url %q: must have the scheme, host and port of base_url (%s://%s): the secret headers go to it too", h.StatusURL, base.Scheme, base.Host)
		}
	}
	return nil
}

// validateHeaders checks a definition's headers: names, values, secret
// references, and none the host sets.
func validateHeaders(headers map[string]HeaderValue) error {
	seen := map[string]string{}
	for _, name := range slices.Sorted(maps.Keys(headers)) {
		if other, dup := seen[http.CanonicalHeaderKey(name)]; dup {
			return fmt.Errorf("headers: %q and %q are the same header", other, name)
		}
		seen[http.CanonicalHeaderKey(name)] = name
		if !validHeaderName(name) {
			return fmt.Errorf("headers: %q is not a valid header name", name)
		}
		if reservedHeaders[http.CanonicalHeaderKey(name)] {
			return fmt.Errorf("headers: %s is set by the host", name)
		}
		if err := validateValue("headers."+name, headers[name], validHeaderValue); err != nil {
			return err
		}
	}
	return nil
}

// validateValue checks a fixed value with ok, or a secret reference's name
// and format.
func validateValue(field string, v HeaderValue, ok func(string) bool) error {
	if v.Secret == "" {
		if !ok(v.Value) {
			return fmt.Errorf("%s: value has control characters", field)
		}
		return nil
	}
	if err := ValidSecretName(v.Secret); err != nil {
		return fmt.Errorf("%s.secret: %w", field, err)
	}
	if v.Format != "" {
		if strings.Count(v.Format, "%s") != 1 || strings.Count(strings.ReplaceAll(v.Format, "%s", ""), "%") > 0 || !ok(v.Format) {
			return fmt.Errorf("%s.format %q: want exactly one %%s and no other %% or control characters", field, v.Format)
		}
	}
	return nil
}

// parseBaseURL checks a base URL and returns it with no trailing slash.
func parseBaseURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("is required")
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("%q: want an http or https URL", s)
	case u.Host == "":
		return nil, fmt.Errorf("%q has no host", s)
	case u.User != nil:
		return nil, fmt.Errorf("%q: user info is not allowed; put credentials in a secret header", u.Redacted())
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("%q: no query or fragment", s)
	}
	if _, err := parseHostRule(u.Host); err != nil {
		return nil, err
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	if u.Path != "" {
		if err := checkPath(u.Path); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// checkPath refuses a path that could mean another path to a server: it
// must be absolute, with no "." or ".." segment, no empty segment and no
// escaped slash or backslash.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("path %q must start with /", p)
	}
	if strings.ContainsAny(p, "\\?#") || strings.Contains(strings.ToLower(p), "%2f") || strings.Contains(strings.ToLower(p), "%5c") {
		return fmt.Errorf("path %q: no backslash, '?', '#' or escaped slash", p)
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." || (seg == "" && i < len(segs)-1) {
			return fmt.Errorf("path %q: no '.', '..' or empty segments", p)
		}
	}
	return nil
}

// underPrefix reports whether path starts with prefix by whole segments.
func underPrefix(path, prefix string) bool {
	if strings.HasSuffix(prefix, "/") {
		return strings.HasPrefix(path, prefix)
	}
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}
