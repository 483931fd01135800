package main

// Browser tests of the web console: headless Chromium, driven with
// chromedp, against a real `orlojd serve`. With ORLOJ_SCREENSHOTS=1 they
// also save a screenshot of each page into docs/console/.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium finds the browser. The tests need it: .ci/run installs Debian's
// chromium package; elsewhere install it, point ORLOJ_CHROMIUM at a
// Chrome or Chromium binary, or set ORLOJ_SKIP_BROWSER=1 to skip them.
func chromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ORLOJ_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("ORLOJ_SKIP_BROWSER") == "1" {
		t.Skip("browser test skipped: ORLOJ_SKIP_BROWSER=1")
	}
	t.Fatal("the console's browser tests need Chromium and found none on PATH: install it (apt-get install -y chromium; .ci/run does), " +
		"set ORLOJ_CHROMIUM to a Chrome or Chromium binary, or set ORLOJ_SKIP_BROWSER=1 to skip these tests")
	return ""
}

// browser is one headless Chromium at 1280×800.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithErrorf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

type step = chromedp.Action[chromedp.Void]

func run(t *testing.T, ctx context.Context, what string, steps ...step) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage: %.3000s", what, err, html)
	}
}

// until waits for a JavaScript expression to be true, across a page load
// (a poll the navigation interrupts starts again on the new page).
func until(expr string) step {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		deadline := time.Now().Add(60 * time.Second)
		for {
			left := time.Until(deadline)
			_, err := chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(left))(ctx, t)
			if err == nil || left <= 0 || ctx.Err() != nil {
				if err != nil {
					err = fmt.Errorf("waiting for %s: %w", expr, err)
				}
				return chromedp.Void{}, err
			}
			time.Sleep(50 * time.Millisecond) // the new page is loading: a poll interval
		}
	}
}

func eval(expr string) step { return chromedp.Evaluate[chromedp.Void](expr) }

// screenshot saves the viewport as docs/console/name.png when
// ORLOJ_SCREENSHOTS=1.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("ORLOJ_SCREENSHOTS") != "1" {
		return
	}
	run(t, ctx, "before screenshot "+name, eval(`document.getElementById("notice") && (document.getElementById("notice").hidden = true)`),
		chromedp.Sleep(1300*time.Millisecond)) // let a live update's flash fade: a picture, not a sync
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// noOverflow: the page is no wider than the viewport (nothing, however
// long, pushes it sideways).
const noOverflow = `document.documentElement.scrollWidth <= window.innerWidth`

// TestConsole logs in (a wrong token first), finds the demo's dead letter,
// opens its timeline, retries it on v2 and sees it succeed without a
// reload; a write without the CSRF token is refused.
func TestConsole(t *testing.T) {
	t.Parallel()
	s := startStandins(t)
	n := startNode(t, withStandins(s))
	ctx := browser(t)
	n.ok("agent", "push", agent("docpipeline"), "--name", "docpipeline", "--version", "v1", "--tools", "http,model")
	poison := docInput(t, s, s.URL+"/blobs/poison.txt")
	r := n.fails(1, []string{"dead_letter"}, "task", "submit", "docpipeline", "--input", poison, "--wait", "-o", "json")
	var dead taskJSON
	if err := json.Unmarshal([]byte(r.stdout), &dead); err != nil || dead.State != "dead_letter" {
		t.Fatalf("the poison document did not dead-letter: %v\n%s", err, r)
	}
	n.ok("agent", "push", agent("docpipeline-v2"), "--name", "docpipeline", "--version", "v2", "--tools", "http,model")
	n.ok("agent", "push", agent("hello"), "--name", "hello")
	// A body of 10,000 characters with no space to break at.
	long := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"note":"`+strings.Repeat("x", 10_000)+`"}`))
	n.ok("task", "wait", long)
	token := readToken(t, n.dir)
	base := n.url()

	run(t, ctx, "open the console", chromedp.Navigate(base+"/ui/tasks"), chromedp.WaitVisible(chromedp.ID("token")))
	screenshot(t, ctx, "login")
	run(t, ctx, "log in with a wrong token",
		chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		until(`document.getElementById("login-error").textContent.includes("wrong admin token")`))
	where, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(where, "/ui/login") {
		t.Fatalf("after a wrong token the browser is at %s", where)
	}
	run(t, ctx, "log in",
		eval(`document.getElementById("token").value = ""`), chromedp.SendKeys(chromedp.ID("token"), token),
		chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		until(fmt.Sprintf(`!!document.querySelector('#tasks tr[data-task=%q]')`, dead.ID)),
		until(`document.querySelector('.counts a[data-state="dead_letter"] .n')?.textContent === "1"`),
		until(`document.getElementById("live").textContent === "live"`))
	screenshot(t, ctx, "tasks")

	run(t, ctx, "find the dead letter",
		chromedp.Click(chromedp.ID("nav-dlq")),
		until(fmt.Sprintf(`document.querySelector('#dlq tr[data-task=%q]')?.textContent.includes("permanent")`, dead.ID)))
	screenshot(t, ctx, "dlq")
	run(t, ctx, "open its timeline",
		chromedp.Click(chromedp.CSS(fmt.Sprintf(`#dlq tr[data-task=%q] a`, dead.ID))),
		until(`document.getElementById("task-state")?.textContent === "dead letter"`),
		until(`document.querySelectorAll('section.attempt[data-attempt="1"] tbody tr').length === 4`),
		until(`document.querySelector('section.attempt[data-attempt="1"]').textContent.includes("invoked")`),
		until(noOverflow))
	screenshot(t, ctx, "task-dead-letter")

	// The page must not reload: a mark set now must survive the retry.
	run(t, ctx, "retry on v2",
		eval(`window.noReload = true`),
		eval(`document.getElementById("ver-`+dead.ID+`").value = "v2"`),
		chromedp.Click(chromedp.ID("retry-"+dead.ID)),
		until(`document.getElementById("task-state")?.textContent === "succeeded"`),
		until(`window.noReload === true`),
		until(`document.querySelector('section.attempt[data-attempt="1"]') && document.querySelector('h1').textContent.includes("succeeded")`),
		until(`document.querySelectorAll("section.attempt").length === 2`),
		// The retry's attempt replayed the four recorded calls and invoked
		// only the record write; the first attempt replayed nothing.
		until(`document.querySelectorAll("section.attempt")[1].querySelectorAll(".o-replayed").length === 4`),
		until(`document.querySelectorAll("section.attempt")[1].querySelectorAll(".o-invoked").length === 1`),
		until(`document.querySelectorAll("section.attempt")[0].querySelectorAll(".o-replayed").length === 0`),
		until(`document.querySelector("p.retried")?.textContent.includes("docpipeline@v2")`))
	screenshot(t, ctx, "task-retried")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", dead.ID)
	if tk.State != "succeeded" || tk.Version != "v2" {
		t.Fatalf("after the console's retry: %+v", tk)
	}

	// A phone's width, and a 10,000-character input.
	run(t, ctx, "a long input at a phone's width",
		chromedp.EmulateViewport(390, 844),
		chromedp.Navigate(base+"/ui/tasks/"+long),
		until(`document.getElementById("task-state")?.textContent === "succeeded"`),
		until(`document.querySelector("details:not([open]) summary")?.textContent.includes("10016 characters")`),
		eval(`document.querySelectorAll("details").forEach(d => d.open = true)`),
		until(noOverflow))
	screenshot(t, ctx, "task-phone")
	run(t, ctx, "tasks at a phone's width", chromedp.Navigate(base+"/ui/tasks"),
		until(fmt.Sprintf(`!!document.querySelector('#tasks tr[data-task=%q]')`, long)), until(noOverflow))
	screenshot(t, ctx, "tasks-phone")

	// Without the CSRF token the session cookie cannot act.
	cookie := consoleLogin(t, n, token)
	id2 := strings.TrimSpace(n.ok("task", "submit", "docpipeline", "--version", "v1", "--input", poison))
	n.fails(1, []string{"dead_letter"}, "task", "wait", id2)
	req, _ := http.NewRequest("POST", base+"/v1/dlq/"+id2+"/discard", strings.NewReader(`{"reason":"forged"}`))
	req.Header.Set("Content-Type", "application/json")
	req.AddCookie(cookie)
	resp, err := n.probeClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "forbidden") {
		t.Fatalf("a discard with the session cookie but no CSRF token: %d %s", resp.StatusCode, body)
	}
	n.okJSON(&tk, "task", "get", id2)
	if tk.State != "dead_letter" {
		t.Fatalf("the refused discard changed the task: %+v", tk)
	}
}

// consoleLogin logs in over plain HTTP and returns the session cookie.
func consoleLogin(t *testing.T, n *node, token string) *http.Cookie {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"token": token})
	resp, err := n.probeClient().Post(n.url()+"/ui/login", "application/json", strings.NewReader(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == "orloj_session" {
			return c
		}
	}
	t.Fatalf("login answered %d without a session cookie", resp.StatusCode)
	return nil
}

// streamEvent is one event read from GET /v1/events.
type streamEvent struct {
	id, event string
	data      struct {
		TaskID string `json:"task_id"`
		From   string `json:"from"`
		State  string `json:"state"`
	}
}

// readEvents reads count task or reset events from a stream of the node;
// opened, if not nil, is closed once the stream has begun (its first line
// read: from then on no change is missed). It may run on any goroutine.
func readEvents(n *node, token, query, lastID string, count int, opened chan struct{}) ([]streamEvent, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", n.url()+"/v1/events"+query, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := n.probeClient().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /v1/events: %d", resp.StatusCode)
	}
	var out []streamEvent
	var ev streamEvent
	rd := bufio.NewReader(resp.Body)
	for len(out) < count {
		s, err := rd.ReadString('\n')
		if err != nil {
			return out, fmt.Errorf("stream ended after %d events: %w", len(out), err)
		}
		s = strings.TrimSuffix(s, "\n")
		if opened != nil && strings.HasPrefix(s, "retry: ") {
			close(opened)
			opened = nil
		}
		switch {
		case s == "" && ev.event != "":
			out = append(out, ev)
			ev = streamEvent{}
		case strings.HasPrefix(s, "id: "):
			ev.id = s[4:]
		case strings.HasPrefix(s, "event: "):
			ev.event = s[7:]
		case strings.HasPrefix(s, "data: "):
			if err := json.Unmarshal([]byte(s[6:]), &ev.data); err != nil {
				return out, err
			}
		}
	}
	return out, nil
}

func mustEvents(t *testing.T, n *node, lastID string, count int) []streamEvent {
	t.Helper()
	evs, err := readEvents(n, readToken(t, n.dir), "", lastID, count, nil)
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestEventsStream: a task's state changes come in order on the node's
// stream, and a client that reconnects with Last-Event-ID gets the rest.
func TestEventsStream(t *testing.T) {
	t.Parallel()
	n := startNode(t)
	n.ok("agent", "push", agent("hello"), "--name", "hello")
	id := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"n":1}`))
	n.ok("task", "wait", id)
	// The stream started after the task finished: resume from before it
	// began (id 0 is older than anything the node holds, so a reset) ...
	evs := mustEvents(t, n, "0", 1)
	if evs[0].event != "reset" {
		t.Fatalf("resuming from 0 on a fresh node: %+v, want a reset", evs[0])
	}
	// ... so follow a second task live, filtered to it.
	type result struct {
		evs []streamEvent
		err error
	}
	got := make(chan result, 1)
	opened := make(chan struct{})
	token := readToken(t, n.dir)
	go func() {
		evs, err := readEvents(n, token, "?agent=hello", "", 3, opened)
		got <- result{evs, err}
	}()
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("the stream did not open within 30s")
	}
	id2 := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"n":2}`))
	var evs2 []streamEvent
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		evs2 = r.evs
	case <-time.After(40 * time.Second):
		t.Fatal("no events within 40s")
	}
	want := [][2]string{{"", "queued"}, {"queued", "running"}, {"running", "succeeded"}}
	for i, w := range want {
		if e := evs2[i]; e.event != "task" || e.data.TaskID != id2 || e.data.From != w[0] || e.data.State != w[1] {
			t.Fatalf("event %d = %+v, want %s -> %s of %s", i, e, w[0], w[1], id2)
		}
	}
	// Reconnect after the first: the other two again, in order.
	again := mustEvents(t, n, evs2[0].id, 2)
	if again[0].data.State != "running" || again[1].data.State != "succeeded" || again[1].id != evs2[2].id {
		t.Fatalf("after reconnecting from %s: %+v", evs2[0].id, again)
	}
}
