package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/orloj/orloj/host"
)

type approvalJSON struct {
	ID     string         `json:"id"`
	TaskID string         `json:"task_id"`
	Tool   string         `json:"tool"`
	State  string         `json:"state"`
	Params map[string]any `json:"params"`
	By     string         `json:"by"`
	Note   string         `json:"note"`
}

// awaitApproval polls until task id waits for an approval, and returns it.
func awaitApproval(t *testing.T, n *node, id string) approvalJSON {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var list []approvalJSON
		n.okJSON(&list, "approval", "ls")
		for _, a := range list {
			if a.TaskID == id {
				var tk taskJSON
				if n.okJSON(&tk, "task", "get", id); tk.State == "waiting" {
					return a
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s did not come to wait for an approval", id)
		}
		time.Sleep(100 * time.Millisecond) // a poll interval, not synchronisation
	}
}

// TestApprovalsThroughNode, through `orlojd serve`: a charge through a tool
// the manifest lists under --approve waits, with no request sent, until a
// person approves that call; then it is made once, even with the node
// SIGKILLed right after the approval. A denied charge answers the agent
// permission_denied with the reason, and is never sent.
func TestApprovalsThroughNode(t *testing.T) {
	t.Parallel()
	needBinary(t)
	var posts atomic.Int64
	svc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ch_%d", posts.Add(1))
	}))
	t.Cleanup(svc.Close)
	// A service that holds every request until its client goes: a task
	// calling it holds the node's one worker.
	busy := make(chan struct{}, 4)
	hold := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		busy <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(hold.Close)
	paged := make(chan host.ApprovalNotice, 8)
	pager := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var an host.ApprovalNotice
		if err := json.NewDecoder(r.Body).Decode(&an); err == nil && r.Header.Get("Idempotency-Key") == an.Key {
			paged <- an
		}
	}))
	t.Cleanup(pager.Close)
	n := startNode(t, withArgs("--http-tool", "payments:unsafe", "--workers", "1", "--approval-webhook", pager.URL))
	n.fails(1, []string{`approve: "model" is not one of the agent's tools`}, "agent", "push", agent("paycall"), "--name", "paycall",
		"--tools", "payments", "--approve", "model")
	n.ok("agent", "push", agent("paycall"), "--name", "paycall", "--tools", "payments", "--approve", "payments")
	n.ok("agent", "push", agent("paycall"), "--name", "holder", "--tools", "payments")

	id := strings.TrimSpace(n.ok("task", "submit", "paycall", "--input", fmt.Sprintf(`{"url":%q}`, svc.URL)))
	a := awaitApproval(t, n, id)
	if a.Tool != "payments" || a.State != "pending" || a.Params["method"] != "POST" || a.Params["url"] != svc.URL+"/charges" {
		t.Fatalf("the pending approval: %+v", a)
	}
	if got := posts.Load(); got != 0 {
		t.Fatalf("%d charges before the approval", got)
	}
	select {
	case an := <-paged:
		if an.Event != "approval.requested" || an.Key != a.ID || an.TaskID != id || an.Tool != "payments" || !strings.Contains(string(an.Params), "/charges") {
			t.Fatalf("the approval webhook's notice: %+v", an)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the approval webhook was not called")
	}
	if show := n.ok("approval", "show", a.ID); !strings.Contains(show, svc.URL+"/charges") || !strings.Contains(show, "pending") {
		t.Fatalf("show:\n%s", show)
	}
	// The node's worker is held by another task, so the approved call
	// cannot run before the node is killed: the crash falls between the
	// approval and the invocation.
	n.ok("task", "submit", "holder", "--input", fmt.Sprintf(`{"url":%q}`, hold.URL), "--max-attempts", "1")
	select {
	case <-busy:
	case <-time.After(60 * time.Second):
		t.Fatal("the holder never reached its service")
	}
	if out := n.ok("approval", "approve", a.ID, "--by", "ana", "--note", "ok"); !strings.HasPrefix(out, "approved call "+a.ID) {
		t.Fatalf("approve said %q", out)
	}
	if got := posts.Load(); got != 0 {
		t.Fatalf("%d charges with the worker held", got)
	}
	if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
		t.Fatalf("exit %d after SIGKILL", code)
	}
	n.start()
	n.ok("task", "wait", id, "--timeout", "2m")
	if got := posts.Load(); got != 1 {
		t.Fatalf("%d charges after the approval, want 1", got)
	}
	var events []struct{ Type, Message string }
	n.okJSON(&events, "task", "events", id)
	var journal []string
	for _, e := range events {
		journal = append(journal, e.Type+": "+e.Message)
	}
	if j := strings.Join(journal, "\n"); !strings.Contains(j, "approval_requested") || !strings.Contains(j, "approval_granted: call of payments approved by ana: ok") {
		t.Fatalf("journal:\n%s", j)
	}
	n.fails(1, []string{"approved already"}, "approval", "deny", a.ID, "--reason", "late")

	// Denied: the agent's call answers permission_denied; nothing is sent.
	id2 := strings.TrimSpace(n.ok("task", "submit", "paycall", "--input", fmt.Sprintf(`{"url":%q}`, svc.URL), "--max-attempts", "1"))
	a2 := awaitApproval(t, n, id2)
	if a2.ID == a.ID {
		t.Fatal("two tasks' calls share an approval")
	}
	n.fails(2, []string{"--reason"}, "approval", "deny", a2.ID)
	n.ok("approval", "deny", a2.ID, "--by", "bob", "--reason", "over the limit")
	n.fails(1, []string{"dead_letter"}, "task", "wait", id2, "--timeout", "1m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id2)
	if tk.Error == nil || !strings.Contains(tk.Error.StderrTail, "permission_denied") || !strings.Contains(tk.Error.StderrTail, "over the limit") {
		t.Fatalf("the denied task: %+v", tk.Error)
	}
	if got := posts.Load(); got != 1 {
		t.Fatalf("%d charges after the denial, want still 1", got)
	}
	var all []approvalJSON
	n.okJSON(&all, "approval", "ls", "--all")
	if len(all) != 2 || all[0].State != "approved" || all[1].State != "denied" || all[1].By != "bob" {
		t.Fatalf("approval ls --all: %+v", all)
	}
	if ls := n.ok("approval", "ls"); strings.Contains(ls, a2.ID) {
		t.Fatalf("a decided approval listed as pending:\n%s", ls)
	}
	n.fails(1, []string{"unknown approval"}, "approval", "show", "nosuch")
}
