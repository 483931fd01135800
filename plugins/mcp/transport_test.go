package mcp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

// A stdio server's stderr reaches the log a line at a time, each line
// clipped, however the writes split it.
func TestLineLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l := &lineLogger{log: hclog.New(&hclog.LoggerOptions{Output: &buf, JSONFormat: true})}
	l.Write([]byte("first li"))
	l.Write([]byte("ne\nsecond\n" + strings.Repeat("x", 5000)))
	l.Write([]byte("yyy\n\n"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], `"line":"first line"`) || !strings.Contains(lines[1], `"line":"second"`) {
		t.Errorf("lines %q", lines[:2])
	}
	if len(lines[2]) > maxLineBytes+200 || strings.Contains(lines[2], "y") || !strings.Contains(lines[2], "…") {
		t.Errorf("long line logged as %d bytes: %.80s...; want it clipped and marked", len(lines[2]), lines[2])
	}
}

// A JSON answer is read whole by the SDK, so the transport cuts one past
// 16 MiB with ErrResponseTooLarge; one at the limit reads whole, and an
// event stream is not cut (the SDK bounds it per event).
func TestJSONResponseCapped(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", r.URL.Query().Get("type"))
		w.Write(bytes.Repeat([]byte(" "), n))
	}))
	defer srv.Close()
	c := &http.Client{Transport: keyTransport{base: http.DefaultTransport}}
	for _, tc := range []struct {
		n    int
		typ  string
		fail bool
	}{{maxJSONBody, "application/json", false}, {maxJSONBody + 1, "application/json; charset=utf-8", true}, {maxJSONBody + 1, "text/event-stream", false}} {
		resp, err := c.Get(fmt.Sprintf("%s/?n=%d&type=%s", srv.URL, tc.n, url.QueryEscape(tc.typ)))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if tc.fail != errors.Is(err, ErrResponseTooLarge) || (!tc.fail && len(b) != tc.n) {
			t.Errorf("%d bytes of %s: read %d, %v", tc.n, tc.typ, len(b), err)
		}
	}
}
