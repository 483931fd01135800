package main

// The operator CLI's HTTP client: how it finds the API and its token, how it
// turns API errors into exit statuses, and the table/JSON output every verb
// shares. Answers decode into host/api's own view types, so the CLI reads
// exactly what the server writes.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/daemon"
	"github.com/orloj/orloj/host/api"
)

const (
	envAddr      = "ORLOJ_ADDR"
	envToken     = "ORLOJ_TOKEN"
	envTokenFile = "ORLOJ_TOKEN_FILE"
	envDataDir   = "ORLOJ_DATA_DIR"

	defaultAddr    = "127.0.0.1:7070"
	defaultDataDir = "orloj-data"
)

// clientOptions are the flags every client verb shares.
type clientOptions struct {
	addr      string
	token     string
	tokenFile string
	dataDir   string
	caFile    string
	output    string
}

// addClientFlags puts the shared flags on a verb group. They are persistent
// flags of each group rather than of the root, so `serve` keeps its own
// --data-dir and `run` has none of them.
func addClientFlags(cmd *cobra.Command, o *clientOptions) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.addr, "addr", "", "API address of a node (default $"+envAddr+" or "+defaultAddr+")")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the admin token (default $"+envTokenFile+"; else $"+envToken+"; else DATA_DIR/token)")
	// Hidden: a flag's value is in the process list for every local user.
	f.StringVar(&o.token, "token", "", "admin token itself; prefer --token-file or $"+envToken)
	_ = f.MarkHidden("token")
	f.StringVar(&o.dataDir, "data-dir", "", "data dir of a node on this machine, to read its token file (default $"+envDataDir+" or ./"+defaultDataDir+")")
	f.StringVar(&o.caFile, "ca-file", "", "CA certificate to trust for an https:// --addr (default $"+envCAFile+", else ca.pem under --data-dir)")
	f.StringVarP(&o.output, "output", "o", "table", "output format: table or json")
}

// client talks to one node's API.
type client struct {
	base   string
	token  string
	json   bool
	http   *http.Client
	stdout io.Writer
	stderr io.Writer
	more   bool // the last answer was a list cut short (api.MoreHeader)
}

func newClient(cmd *cobra.Command, o *clientOptions) (*client, error) {
	switch o.output {
	case "table", "json":
	default:
		return nil, usagef("-o %q: want table or json", o.output)
	}
	addr := firstNonEmpty(o.addr, os.Getenv(envAddr), defaultAddr)
	base, err := baseURL(addr)
	if err != nil {
		return nil, usagef("--addr: %v", err)
	}
	token, err := o.resolveToken()
	if err != nil {
		return nil, err
	}
	hc, err := o.httpClient(base)
	if err != nil {
		return nil, err
	}
	return &client{
		base:   base,
		token:  token,
		json:   o.output == "json",
		http:   hc,
		stdout: cmd.OutOrStdout(),
		stderr: cmd.ErrOrStderr(),
	}, nil
}

// resolveToken: --token, then --token-file, then $ORLOJ_TOKEN_FILE, then
// $ORLOJ_TOKEN, then the token file a node on this machine wrote. A token
// file named but unreadable is an error; with none at all, requests go
// without one and the API answers 401, which names the problem better than
// a guess here would.
func (o *clientOptions) resolveToken() (string, error) {
	if o.token != "" {
		return o.token, nil
	}
	for _, named := range []struct{ path, by string }{{o.tokenFile, "--token-file"}, {os.Getenv(envTokenFile), envTokenFile}} {
		if named.path == "" {
			continue
		}
		b, err := os.ReadFile(named.path)
		if err != nil {
			return "", usagef("%s: %v", named.by, err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if t := os.Getenv(envToken); t != "" {
		return t, nil
	}
	dir := firstNonEmpty(o.dataDir, os.Getenv(envDataDir), defaultDataDir)
	b, err := os.ReadFile(filepath.Join(dir, daemon.TokenFile))
	if err != nil {
		return "", nil
	}
	return strings.TrimSpace(string(b)), nil
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// baseURL accepts host:port or an http(s) URL.
func baseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q is not host:port or an http(s) URL", addr)
	}
	return strings.TrimSuffix(u.String(), "/"), nil
}

// apiError is an error answer of the API: {"error": "...", "code": "..."}.
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"error"`
	Code    string `json:"code"`
	Leader  string `json:"leader,omitempty"` // with code not_leader
}

func (e *apiError) Error() string { return fmt.Sprintf("%s (%s)", e.Message, e.Code) }

// maxLeaderHops bounds how often one request follows a not_leader answer, so
// a cluster in the middle of an election cannot bounce it forever.
const maxLeaderHops = 3

// do sends one request and returns the body of a 2xx answer. A not_leader
// answer that names the leader is followed there.
func (c *client) do(ctx context.Context, method, path string, q url.Values, body []byte, contentType string) ([]byte, error) {
	base := c.base
	for hop := 0; ; hop++ {
		b, err := c.once(ctx, method, base, path, q, body, contentType)
		var ae *apiError
		if errors.As(err, &ae) && ae.Code == "not_leader" && ae.Leader != "" && hop < maxLeaderHops {
			// The leader is named by host:port; keep this address's scheme.
			leader := ae.Leader
			if strings.HasPrefix(base, "https://") && !strings.Contains(leader, "://") {
				leader = "https://" + leader
			}
			if next, perr := baseURL(leader); perr == nil && next != base {
				base = next
				continue
			}
		}
		return b, err
	}
}

func (c *client) once(ctx context.Context, method, base, path string, q url.Values, body []byte, contentType string) ([]byte, error) {
	u := base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the API at %s (is `orlojd serve` running?): %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read answer of %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 == 2 {
		c.more = resp.Header.Get(api.MoreHeader) == "true"
		return b, nil
	}
	ae := &apiError{Status: resp.StatusCode}
	if json.Unmarshal(b, ae) != nil || ae.Message == "" {
		// Not the API's error shape (a proxy, or another server on the port).
		ae.Message = fmt.Sprintf("%s %s: %s", method, path, firstLine(string(b), resp.Status))
		ae.Code = fmt.Sprintf("http %d", resp.StatusCode)
	}
	return nil, ae
}

func firstLine(s, fallback string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return fallback
	}
	line, _, _ := strings.Cut(s, "\n")
	return truncate(line, 200)
}

// getJSON GETs path and decodes the answer into out; the raw body comes back
// for -o json.
func (c *client) getJSON(ctx context.Context, path string, q url.Values, out any) ([]byte, error) {
	b, err := c.do(ctx, http.MethodGet, path, q, nil, "")
	if err != nil {
		return nil, err
	}
	return b, decode(b, out, path)
}

// getList GETs a list of at most limit items (0: the node's default) and
// says on stderr when more match than it holds.
func (c *client) getList(ctx context.Context, path string, q url.Values, limit int, out any) ([]byte, error) {
	switch {
	case limit < 0 || limit > api.MaxListLimit:
		return nil, usagef("--limit must be from 1 to %d, got %d", api.MaxListLimit, limit)
	case limit > 0:
		q.Set("limit", strconv.Itoa(limit))
	}
	raw, err := c.getJSON(ctx, path, q, out)
	if err == nil && c.more {
		if limit == 0 {
			limit = api.DefaultListLimit
		}
		fmt.Fprintf(c.stderr, "showing the first %d; more match: narrow the filter, or raise --limit (at most %d)\n", limit, api.MaxListLimit)
	}
	return raw, err
}

// postJSON POSTs in as JSON and decodes the answer into out.
func (c *client) postJSON(ctx context.Context, path string, in, out any) ([]byte, error) {
	return c.postJSONQuery(ctx, path, nil, in, out)
}

// postJSONQuery is postJSON with query parameters.
func (c *client) postJSONQuery(ctx context.Context, path string, q url.Values, in, out any) ([]byte, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	b, err := c.do(ctx, http.MethodPost, path, q, body, "application/json")
	if err != nil {
		return nil, err
	}
	return b, decode(b, out, path)
}

func decode(b []byte, out any, path string) error {
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("unexpected answer from %s: %w", path, err)
	}
	return nil
}

// printJSON writes the API's answer as it came, indented: the JSON output
// keeps every field, including ones this CLI does not know yet.
func (c *client) printJSON(raw []byte) error {
	var buf bytes.Buffer
	raw = bytes.TrimSpace(raw)
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		buf.Reset()
		buf.Write(raw)
	}
	buf.WriteByte('\n')
	_, err := c.stdout.Write(buf.Bytes())
	return err
}

// table prints rows under a header, aligned.
func table(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// fields prints "Key: value" lines, aligned.
func fields(w io.Writer, kv [][2]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for _, p := range kv {
		if p[1] == "" {
			continue
		}
		// A multi-line value (a wasm stack, a wrapped error) continues in
		// the value column instead of breaking the alignment.
		lines := strings.Split(strings.TrimRight(p[1], "\n"), "\n")
		fmt.Fprintf(tw, "%s:\t%s\n", p[0], lines[0])
		for _, l := range lines[1:] {
			fmt.Fprintf(tw, "\t%s\n", l)
		}
	}
	return tw.Flush()
}

// apiTime is one of the API's times, parsed for display. The views carry
// times as RFC 3339 strings (*string, null when unset); they are parsed only
// here, at print time, so the CLI decodes into host/api's own view types.
type apiTime struct {
	time.Time
	raw string // the API's text when it is not RFC 3339: shown as is, not hidden
}

// timeOf parses a view's time; nil or "" is unset.
func timeOf(s *string) apiTime {
	if s == nil || *s == "" {
		return apiTime{}
	}
	t, err := time.Parse(time.RFC3339Nano, *s)
	if err != nil {
		return apiTime{raw: *s}
	}
	return apiTime{Time: t}
}

// deref reads an optional string of a view; null is "".
func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// short renders a time for a table: the clock time today, the date else.
func (t apiTime) short() string {
	if t.IsZero() {
		return orDash(t.raw)
	}
	lt := t.Local()
	if y, m, d := lt.Date(); time.Now().Format("2006-01-02") == fmt.Sprintf("%04d-%02d-%02d", y, m, d) {
		return lt.Format("15:04:05")
	}
	return lt.Format("2006-01-02 15:04")
}

// clock renders the time of day to the millisecond, for event lists.
func (t apiTime) clock() string {
	if t.IsZero() {
		return orDash(t.raw)
	}
	return t.Local().Format("15:04:05.000")
}

func (t apiTime) long() string {
	if t.IsZero() {
		return t.raw
	}
	return t.Local().Format("2006-01-02 15:04:05.000 MST")
}

// relative renders how far t is from now: "in 1.2s" or "3s ago".
func (t apiTime) relative() string {
	if t.IsZero() {
		return orDash(t.raw)
	}
	d := time.Until(t.Time)
	if d >= 0 {
		return "in " + roundDuration(d).String()
	}
	return roundDuration(-d).String() + " ago"
}

func roundDuration(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(time.Millisecond)
	}
	return d
}

func truncate(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// compactJSON renders raw JSON on one line.
func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return string(raw)
	}
	return buf.String()
}

// showCmd is a client verb that GETs one resource named by its one
// argument and prints it: the JSON as the API sent it with -o json, else
// through show.
func showCmd[T any](o *clientOptions, use, short, arg string, path func(name string) string, show func(*client, T) error) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  exactArgs(1, arg),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var v T
			raw, err := c.getJSON(cmd.Context(), path(args[0]), nil, &v)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			return show(c, v)
		},
	}
}
