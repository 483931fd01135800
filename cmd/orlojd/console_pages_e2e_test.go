package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestConsolePages drives the console's other pages and actions in one
// browser against one node: agents and their digests, the cluster and its
// leader, declared tools without their secrets, pausing a schedule, the
// tasks' time filter, approving and denying calls, a bulk discard by
// filter, and resolving a call left in doubt, then retrying it.
func TestConsolePages(t *testing.T) {
	t.Parallel()
	const secret = "sk-console-e2e-not-for-pages"
	var posts atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ch_%d", posts.Add(1))
	}))
	t.Cleanup(svc.Close)
	n := startNode(t, withArgs("--http-tool", "payments:unsafe"), withEnv("ORLOJ_SECRET_SLACK_TOKEN="+secret))
	ctx := browser(t)
	n.ok("agent", "push", agent("hello"), "--name", "hello")
	n.ok("agent", "push", agent("paycall"), "--name", "approver", "--tools", "payments", "--approve", "payments")
	n.ok("agent", "push", agent("paycall"), "--name", "paycall", "--tools", "payments")
	n.ok("agent", "push", agent("paycall"), "--name", "failer", "--tools", "payments")
	def := filepath.Join(t.TempDir(), "slack.yaml")
	if err := os.WriteFile(def, []byte("name: slack\nkind: http\nhttp:\n  base_url: "+svc.URL+"\n  methods: [POST]\n"+
		"  headers:\n    Authorization: {secret: slack-token, format: \"Bearer %s\"}\n  semantics: idempotent\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.ok("tool", "push", def)
	n.ok("schedule", "create", "nightly", "--agent", "hello", "--cron", "0 3 * * *")
	hello := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"n":1}`))
	n.ok("task", "wait", hello)
	token := readToken(t, n.dir)
	base := n.url()
	run(t, ctx, "log in", chromedp.Navigate(base+"/ui/login"), chromedp.WaitVisible(chromedp.ID("token")),
		chromedp.SendKeys(chromedp.ID("token"), token), chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
		until(fmt.Sprintf(`!!document.querySelector('#tasks tr[data-task=%q]')`, hello)))

	t.Run("agents", func(t *testing.T) {
		var shown struct {
			Agent struct{ Digest string } `json:"agent"`
		}
		n.okJSON(&shown, "agent", "show", "hello")
		if len(shown.Agent.Digest) != 64 {
			t.Fatalf("agent show: digest %q", shown.Agent.Digest)
		}
		run(t, ctx, "the agents page", press("nav-agents"),
			until(fmt.Sprintf(`document.querySelector('tr[data-agent="hello"] .digest')?.textContent === %q`, shown.Agent.Digest)),
			until(noOverflow))
		screenshot(t, ctx, "agents")
		run(t, ctx, "an agent's versions and manifest", chromedp.Click(chromedp.CSS(`tr[data-agent="approver"] a`)),
			until(`document.querySelector('section[data-version]')?.textContent.includes("Need approvalpayments")`))
	})

	t.Run("cluster", func(t *testing.T) {
		run(t, ctx, "the cluster page", press("nav-cluster"),
			until(`document.getElementById("leader")?.textContent === "n1"`),
			until(`document.querySelector('tr[data-member="n1"]')?.textContent.includes("leader")`), until(noOverflow))
		screenshot(t, ctx, "cluster")
	})

	t.Run("tools", func(t *testing.T) {
		run(t, ctx, "the tools page", press("nav-tools"),
			until(`document.querySelector('section[data-tool="slack"]')?.textContent.includes("slack-token")`),
			until(`document.querySelector('section[data-tool="slack"]').textContent.includes("idempotent")`))
		html, err := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(html, secret) {
			t.Fatal("the tools page shows the secret's value")
		}
	})

	t.Run("schedules", func(t *testing.T) {
		var sc struct{ Paused bool }
		run(t, ctx, "pause a schedule", press("nav-schedules"),
			until(`document.querySelector('tr[data-schedule="nightly"] [data-state]')?.textContent === "active"`),
			press("pause-nightly"),
			until(`document.querySelector('tr[data-schedule="nightly"] [data-state]')?.textContent === "paused"`),
			until(`document.activeElement?.id === "resume-nightly"`))
		if n.okJSON(&sc, "schedule", "show", "nightly"); !sc.Paused {
			t.Fatal("the schedule the console paused is not paused")
		}
		screenshot(t, ctx, "schedules")
		run(t, ctx, "resume it", press("resume-nightly"),
			until(`document.querySelector('tr[data-schedule="nightly"] [data-state]')?.textContent === "active"`))
		if n.okJSON(&sc, "schedule", "show", "nightly"); sc.Paused {
			t.Fatal("the schedule the console resumed is paused")
		}
	})

	t.Run("tasks by time", func(t *testing.T) {
		row := fmt.Sprintf(`document.querySelector('#tasks tr[data-task=%q]')`, hello)
		run(t, ctx, "submitted before 2000",
			chromedp.Navigate(base+"/ui/tasks?until=2000-01-01T00:00"),
			until(`document.querySelector("#tasks tbody")?.textContent === "No tasks."`),
			until(`document.getElementById("f-until").value.startsWith("2000-01-01T00:00")`))
		run(t, ctx, "submitted after 2000",
			chromedp.Navigate(base+"/ui/tasks?since=2000-01-01T00:00"), until("!!"+row))
		// The CLI's task ls takes the same bounds.
		var ts []struct{ ID string }
		if n.okJSON(&ts, "task", "ls", "--agent", "hello", "--since", "1h"); len(ts) != 1 || ts[0].ID != hello {
			t.Fatalf("task ls --since 1h: %+v, want %s", ts, hello)
		}
		if n.okJSON(&ts, "task", "ls", "--agent", "hello", "--until", "1h"); len(ts) != 0 {
			t.Fatalf("task ls --until 1h: %+v, want none", ts)
		}
	})

	t.Run("approvals", func(t *testing.T) {
		id := strings.TrimSpace(n.ok("task", "submit", "approver", "--input", fmt.Sprintf(`{"url":%q}`, svc.URL)))
		a := awaitApproval(t, n, id)
		key := strings.Map(keepAlnum, a.ID)
		card := fmt.Sprintf(`document.querySelector('section[data-approval=%q]')`, a.ID)
		run(t, ctx, "approve a call", press("nav-approvals"),
			until(card+`?.textContent.includes("/charges")`), until(noOverflow))
		screenshot(t, ctx, "approvals")
		run(t, ctx, "approve it",
			chromedp.SendKeys(chromedp.ID("decider"), "ana"), chromedp.SendKeys(chromedp.ID("note-"+key), "looks right"),
			press("approve-"+key), until("!"+card))
		n.ok("task", "wait", id)
		var got approvalJSON
		if n.okJSON(&got, "approval", "show", a.ID); got.State != "approved" || got.By != "ana" || got.Note != "looks right" {
			t.Fatalf("after the console's approval: %+v", got)
		}
		if posts.Load() != 1 {
			t.Fatalf("%d charges after one approval", posts.Load())
		}

		// A call whose parameters hold 10,000 characters without a space.
		long := svc.URL + "/" + strings.Repeat("x", 10_000)
		id2 := strings.TrimSpace(n.ok("task", "submit", "approver", "--input", fmt.Sprintf(`{"url":%q}`, long), "--max-attempts", "1"))
		a2 := awaitApproval(t, n, id2)
		key2 := strings.Map(keepAlnum, a2.ID)
		card2 := fmt.Sprintf(`document.querySelector('section[data-approval=%q]')`, a2.ID)
		run(t, ctx, "deny without a reason", until("!!"+card2), until(card2+`.textContent.includes("xxxxxxxxxx")`), until(noOverflow),
			press("deny-"+key2),
			until(`document.getElementById("notice").textContent.includes("reason")`),
			until(`document.activeElement?.id === "reason-`+key2+`"`))
		run(t, ctx, "deny with one", chromedp.SendKeys(chromedp.ID("reason-"+key2), "not this customer"),
			press("deny-"+key2), until("!"+card2))
		if n.okJSON(&got, "approval", "show", a2.ID); got.State != "denied" || got.Note != "not this customer" {
			t.Fatalf("after the console's denial: %+v", got)
		}
		n.fails(1, []string{"dead_letter"}, "task", "wait", id2)
		if posts.Load() != 1 {
			t.Fatalf("%d charges after a denial", posts.Load())
		}
	})

	t.Run("bulk discard", func(t *testing.T) {
		var ids []string
		for i := 0; i < 2; i++ {
			// A host the node does not allow: the call is refused, and with
			// one attempt the task is a dead letter.
			id := strings.TrimSpace(n.ok("task", "submit", "failer", "--input", `{"url":"http://192.0.2.1"}`, "--max-attempts", "1"))
			n.fails(1, []string{"dead_letter"}, "task", "wait", id)
			ids = append(ids, id)
		}
		run(t, ctx, "the two dead letters of failer", chromedp.Navigate(base+"/ui/dlq?agent=failer"),
			until(`document.getElementById("bulk-count")?.dataset.count === "2"`))
		// Retry both: asked, cancelled with Escape, asked again, confirmed.
		// They fail again and come back to the queue, retried once each.
		run(t, ctx, "retry all, then cancel", press("bulk-retry"),
			until(`document.getElementById("bulk-q")?.textContent === "Retry 2 dead letters (agent failer, every class) on each entry's agent version?"`),
			until(`document.activeElement?.id === "bulk-confirm"`),
			chromedp.KeyEvent("\u001b"),
			until(`document.querySelector(".confirm").hidden && document.activeElement?.id === "bulk-retry"`))
		run(t, ctx, "retry all", press("bulk-retry"), press("bulk-confirm"),
			until(`document.querySelector("[role=status].progress")?.textContent === "2 of 2 done, 2 succeeded, 0 refused"`))
		for _, id := range ids {
			n.fails(1, []string{"dead_letter"}, "task", "wait", id)
			var events []struct{ Type string }
			n.okJSON(&events, "task", "events", id)
			retried := 0
			for _, e := range events {
				if e.Type == "dlq_retried" {
					retried++
				}
			}
			if retried != 1 {
				t.Fatalf("task %s was retried %d times from the queue, want 1: %+v", id, retried, events)
			}
		}
		run(t, ctx, "back in the queue", until(`document.getElementById("bulk-count")?.dataset.count === "2"`),
			press("bulk-discard"),
			until(`document.getElementById("notice").textContent.includes("reason")`),
			chromedp.SendKeys(chromedp.ID("bulk-reason"), "the host was never allowed"),
			press("bulk-discard"),
			until(`document.getElementById("bulk-q")?.textContent.startsWith("Discard 2 dead letters (agent failer, every class)")`),
			until(`document.activeElement?.id === "bulk-confirm"`), until(noOverflow),
			until(`document.querySelector(".confirm").textContent === "Discard 2 dead letters (agent failer, every class), because: the host was never allowedDiscard 2Cancel"`))
		screenshot(t, ctx, "dlq-bulk")
		run(t, ctx, "confirm", press("bulk-confirm"),
			until(`document.querySelectorAll(".results li.ok").length === 2`),
			until(`document.querySelector("[role=status].progress")?.textContent === "2 of 2 done, 2 succeeded, 0 refused"`),
			until(`document.getElementById("bulk-count").dataset.count === "0"`))
		for _, id := range ids {
			var tk struct {
				State         string `json:"state"`
				DiscardReason string `json:"discard_reason"`
			}
			if n.okJSON(&tk, "task", "get", id); tk.State != "discarded" || tk.DiscardReason != "the host was never allowed" {
				t.Fatalf("task %s after the bulk discard: %+v", id, tk)
			}
		}
	})

	// Last: it restarts the node.
	t.Run("resolve in doubt", func(t *testing.T) {
		p := startPayments(t, listen(t), false)
		id := killDuringCharge(t, n, p)
		run(t, ctx, "the in-doubt dead letter", chromedp.Navigate(base+"/ui/tasks/"+id),
			until(`document.querySelectorAll("form.resolve-call").length === 1`))
		screenshot(t, ctx, "task-in-doubt")
		run(t, ctx, "resolve it as not applied",
			press("resolve-r0"),
			until(`document.getElementById("notice").textContent.includes("took effect")`),
			press("applied-no-r0"),
			chromedp.SendKeys(chromedp.ID("note-r0"), "no charge in the dashboard"),
			eval(`document.getElementById("by-r0").value = "dana"`),
			press("resolve-r0"),
			until(`document.querySelector("section.resolve")?.textContent.includes("Every call is resolved")`))
		var events []struct{ Type, Message string }
		n.okJSON(&events, "task", "events", id)
		resolved := false
		for _, e := range events {
			resolved = resolved || (e.Type == "call_resolved" && strings.Contains(e.Message, "dana resolved it as not applied"))
		}
		if !resolved {
			t.Fatalf("no call_resolved event by dana: %+v", events)
		}
		run(t, ctx, "retry it", press("retry-"+id),
			until(`document.getElementById("task-state")?.textContent === "succeeded"`))
		if req, applied := p.counts(); req != 2 || applied != 1 {
			t.Fatalf("payments saw %d requests and applied %d charges; want 2 and 1", req, applied)
		}
	})

	// Every page fits the screen and a phone, and names every control.
	const labelled = `[...document.querySelectorAll("input, select, textarea, button")].every((e) =>
		e.labels?.length || e.getAttribute("aria-label") || (e.tagName === "BUTTON" && e.textContent.trim()))`
	t.Run("widths", func(t *testing.T) {
		for _, w := range [][2]int64{{1280, 800}, {390, 844}} {
			run(t, ctx, fmt.Sprintf("%d×%d", w[0], w[1]), chromedp.EmulateViewport(w[0], w[1]))
			for _, page := range []string{"agents", "agents/approver", "cluster", "tools", "schedules", "approvals?all=true", "dlq", "tasks?since=2000-01-01T00:00"} {
				run(t, ctx, fmt.Sprintf("%s at %d px", page, w[0]), chromedp.Navigate(base+"/ui/"+page),
					until(`!document.querySelector("main").textContent.startsWith("Loading")`), until(noOverflow), until(labelled))
			}
		}
	})
}

// press clicks the element with the given ID, after hiding the notice a
// previous action left, which may cover it.
func press(id string) step {
	return func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		if _, err := eval(`document.getElementById("notice").hidden = true`)(ctx, t); err != nil {
			return chromedp.Void{}, err
		}
		return chromedp.Click(chromedp.ID(id))(ctx, t)
	}
}

func keepAlnum(r rune) rune {
	if ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') || ('0' <= r && r <= '9') {
		return r
	}
	return -1
}
