package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

// sse reads one event stream.
type sse struct {
	t    *testing.T
	resp *http.Response
	rd   *bufio.Reader
	stop context.CancelFunc
}

type sseEvent struct{ id, event, data string }

func openEvents(t *testing.T, url, query, lastID string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url+"/v1/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		cancel()
		t.Fatalf("GET /v1/events: %d %s %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	s := &sse{t: t, resp: resp, rd: bufio.NewReader(resp.Body), stop: cancel}
	t.Cleanup(s.close)
	return s
}

func (s *sse) close() { s.stop(); s.resp.Body.Close() }

// next reads the next event (comments and id-only messages are skipped
// unless withPings).
func (s *sse) next(withPings bool) sseEvent {
	s.t.Helper()
	done := make(chan sseEvent, 1)
	errc := make(chan error, 1)
	go func() {
		var ev sseEvent
		ping := false
		for {
			line, err := s.rd.ReadString('\n')
			if err != nil {
				errc <- err
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.data != "" || (withPings && ping) {
					done <- ev
					return
				}
				ev, ping = sseEvent{}, false
			case strings.HasPrefix(line, ": ping"):
				ping = true
			case strings.HasPrefix(line, "id: "):
				ev.id = line[4:]
			case strings.HasPrefix(line, "event: "):
				ev.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[6:]
			}
		}
	}()
	select {
	case ev := <-done:
		return ev
	case err := <-errc:
		s.t.Fatalf("event stream ended: %v", err)
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event within 10s")
	}
	return sseEvent{}
}

func (s *sse) task() (api.StateEventView, string) {
	s.t.Helper()
	ev := s.next(false)
	if ev.event != "task" {
		s.t.Fatalf("event %+v, want a task event", ev)
	}
	var v api.StateEventView
	if err := json.Unmarshal([]byte(ev.data), &v); err != nil {
		s.t.Fatal(err)
	}
	if v.ID != ev.id {
		s.t.Fatalf("data id %s, event id %s", v.ID, ev.id)
	}
	return v, ev.id
}

// The stream gives every state change of a task in order; a client that
// reconnects with Last-Event-ID gets the ones it missed, and one whose id
// the node no longer holds is told to reset.
func TestEventsStreamInOrderAndResume(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, url := f.serve(func(c *api.Config) { c.EventBacklog = 8 })
	f.pushHello("hello", "v1")
	s := openEvents(t, url, "", "")
	tk := f.deadLetter("hello", "boom")
	type step struct{ from, to cluster.TaskState }
	var lastID string
	for _, w := range []step{{"", "queued"}, {"queued", "running"}, {"running", "dead_letter"}} {
		v, id := s.task()
		if v.TaskID != tk.ID || v.From != w.from || v.State != w.to || v.Agent != "hello" || v.Version != "v1" {
			t.Fatalf("event %+v, want %s -> %s of %s", v, w.from, w.to, tk.ID)
		}
		lastID = id
	}
	s.close()

	// Missed while away: the retry and its claim.
	want(t, f.do("POST", "/v1/dlq/"+tk.ID+"/retry", map[string]string{}), http.StatusOK, "")
	f.claim(tk.ID)
	s = openEvents(t, url, "?task="+tk.ID, lastID)
	if v, _ := s.task(); v.From != "dead_letter" || v.State != "queued" {
		t.Fatalf("first event after resuming: %+v", v)
	}
	if v, _ := s.task(); v.From != "queued" || v.State != "running" {
		t.Fatalf("second event after resuming: %+v", v)
	}
	s.close()

	// Past the backlog of 8: a reset, then live changes.
	for range 4 {
		f.deadLetter("hello", "again")
	}
	s = openEvents(t, url, "", lastID)
	if ev := s.next(false); ev.event != "reset" || ev.id == "" {
		t.Fatalf("resuming from an id the backlog lost: %+v, want a reset", ev)
	}
	other := f.submit(api.SubmitRequest{Agent: "hello"})
	if v, _ := s.task(); v.TaskID != other.ID || v.State != "queued" {
		t.Fatalf("after the reset: %+v", v)
	}

	want(t, doURL(t, url, "GET", "/v1/events?last_event_id=x", nil, "Bearer "+testToken), http.StatusBadRequest, api.CodeBadRequest)
	want(t, doURL(t, url, "GET", "/v1/events?state=sleeping", nil, "Bearer "+testToken), http.StatusBadRequest, api.CodeBadRequest)
	want(t, doURL(t, url, "GET", "/v1/events", nil, ""), http.StatusUnauthorized, api.CodeUnauthorized)
}

// Streams are capped; an idle one gets heartbeats; Close ends them.
func TestEventsStreamLimitsAndHeartbeat(t *testing.T) {
	t.Parallel()
	f := setup(t)
	srv, url := f.serve(func(c *api.Config) { c.MaxEventStreams = 1; c.EventHeartbeat = 20 * time.Millisecond })
	s := openEvents(t, url, "", "")
	if ev := s.next(true); ev.data != "" {
		t.Fatalf("idle stream sent %+v, want a heartbeat", ev)
	}
	r := doURL(t, url, "GET", "/v1/events", nil, "Bearer "+testToken)
	want(t, r, http.StatusServiceUnavailable, api.CodeUnavailable)
	if r.header.Get("Retry-After") == "" {
		t.Fatal("a refused stream has no Retry-After")
	}
	srv.Close()
	done := make(chan struct{})
	go func() { io.Copy(io.Discard, s.rd); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the stream")
	}
}

// login logs in and returns the session cookie and the CSRF token.
func login(t *testing.T, url, token string) (*http.Cookie, string, int) {
	t.Helper()
	req, _ := http.NewRequest("POST", url+"/ui/login", strings.NewReader(`{"token":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sv api.SessionView
	_ = json.NewDecoder(resp.Body).Decode(&sv)
	for _, c := range resp.Cookies() {
		if c.Name == "orloj_session" {
			return c, sv.CSRF, resp.StatusCode
		}
	}
	return nil, "", resp.StatusCode
}

func withCookie(t *testing.T, method, url string, c *http.Cookie, csrf string, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if c != nil {
		req.AddCookie(c)
	}
	if csrf != "" {
		req.Header.Set("X-Orloj-CSRF", csrf)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// The console's session: the cookie is not the token, is HttpOnly and
// SameSite=Strict; it reads the API, and writes only with the CSRF token.
func TestConsoleSession(t *testing.T) {
	t.Parallel()
	f := setup(t)
	if c, _, status := login(t, f.url, "wrong"); status != http.StatusUnauthorized || c != nil {
		t.Fatalf("wrong token: %d, cookie %v", status, c)
	}
	c, csrf, status := login(t, f.url, testToken)
	if status != http.StatusOK || c == nil || csrf == "" {
		t.Fatalf("login: %d cookie %v csrf %q", status, c, csrf)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Secure || strings.Contains(c.Value, testToken) {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, not Secure over http, not the token", c)
	}
	if r := withCookie(t, "GET", f.url+"/v1/tasks", c, "", ""); r.StatusCode != http.StatusOK {
		t.Fatalf("GET with the session: %d", r.StatusCode)
	}
	tk := f.deadLetter(f.pushHello("hello", "v1").Name, "boom")
	retry := f.url + "/v1/dlq/" + tk.ID + "/retry"
	if r := withCookie(t, "POST", retry, c, "", "{}"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("retry without the CSRF token: %d, want 403", r.StatusCode)
	}
	if r := withCookie(t, "POST", retry, c, "not-it", "{}"); r.StatusCode != http.StatusForbidden {
		t.Fatalf("retry with a wrong CSRF token: %d, want 403", r.StatusCode)
	}
	if got, _ := f.node.FSM().Task(tk.ID); got.State != cluster.StateDeadLetter {
		t.Fatalf("a refused retry changed the task: %s", got.State)
	}
	if r := withCookie(t, "POST", retry, c, csrf, "{}"); r.StatusCode != http.StatusOK {
		t.Fatalf("retry with the CSRF token: %d", r.StatusCode)
	}
	forged := *c
	forged.Value = c.Value[:len(c.Value)-2] + "xx"
	if r := withCookie(t, "GET", f.url+"/v1/tasks", &forged, "", ""); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("a forged cookie: %d", r.StatusCode)
	}
	if r := withCookie(t, "GET", f.url+"/ui/tasks", nil, "", ""); r.StatusCode != http.StatusSeeOther || r.Header.Get("Location") != "/ui/login" {
		t.Fatalf("a page without a session: %d %s", r.StatusCode, r.Header.Get("Location"))
	}
	r := withCookie(t, "GET", f.url+"/ui/tasks", c, "", "")
	if r.StatusCode != http.StatusOK || !strings.Contains(r.Header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("a page with a session: %d, CSP %q", r.StatusCode, r.Header.Get("Content-Security-Policy"))
	}
	if r := withCookie(t, "GET", f.url+"/ui/assets/app.js", nil, "", ""); r.StatusCode != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/javascript") {
		t.Fatalf("app.js: %d %s", r.StatusCode, r.Header.Get("Content-Type"))
	}
	if r := withCookie(t, "POST", f.url+"/ui/logout", c, "", ""); r.StatusCode != http.StatusForbidden {
		t.Fatalf("logout without the CSRF token: %d", r.StatusCode)
	}
	r = withCookie(t, "POST", f.url+"/ui/logout", c, csrf, "")
	if r.StatusCode != http.StatusNoContent || len(r.Cookies()) != 1 || r.Cookies()[0].MaxAge >= 0 {
		t.Fatalf("logout: %d cookies %v", r.StatusCode, r.Cookies())
	}
	// A form post from another site cannot log in.
	req, _ := http.NewRequest("POST", f.url+"/ui/login", strings.NewReader("token="+testToken))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("form login: %d", resp.StatusCode)
	}
}

func TestTaskCountsAndNewestFirst(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	a := f.deadLetter("hello", "boom")
	b := f.submit(api.SubmitRequest{Agent: "hello"})
	var counts map[string]int
	r := f.do("GET", "/v1/tasks/counts", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &counts)
	if counts["queued"] != 1 || counts["dead_letter"] != 1 || counts["succeeded"] != 0 || len(counts) != len(cluster.TaskStates()) {
		t.Fatalf("counts = %v", counts)
	}
	var ts []api.TaskView
	r = f.do("GET", "/v1/tasks?order=newest&limit=1", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &ts)
	if len(ts) != 1 || ts[0].ID != b.ID || a.ID == b.ID {
		t.Fatalf("newest first = %+v", ts)
	}
	want(t, f.do("GET", "/v1/tasks?order=sideways", nil), http.StatusBadRequest, api.CodeBadRequest)
}

// Over TLS the session cookie is marked Secure.
func TestConsoleSessionSecureOverTLS(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ts := httptest.NewTLSServer(f.api)
	t.Cleanup(ts.Close)
	resp, err := ts.Client().Post(ts.URL+"/ui/login", "application/json", strings.NewReader(`{"token":"`+testToken+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cs := resp.Cookies()
	if resp.StatusCode != http.StatusOK || len(cs) != 1 || !cs[0].Secure || !cs[0].HttpOnly {
		t.Fatalf("login over TLS: %d cookies %+v", resp.StatusCode, cs)
	}
}
