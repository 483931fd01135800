package cluster

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func approvalWait(call, tool string) Wait { return Wait{Kind: WaitApproval, CallID: call, Tool: tool} }

func (h *harness) requestApproval(id string, token uint64, call, params string, now int64) SuspendResult {
	h.t.Helper()
	return h.ok(&Suspend{TaskID: id, Token: token, Wait: approvalWait(call, "pay"), Params: json.RawMessage(params), Now: now}).(SuspendResult)
}

// TestApprovalApprove: a call that needs approval suspends with a pending
// approval showing its params; approving queues the task, and the next
// attempt's Suspend for the same call answers "approved": invoke it. The
// same decision again changes nothing; the other is refused.
func TestApprovalApprove(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	c := h.claim(2 * sec)
	res := h.requestApproval("t1", c.Lease.Token, "c1", `{"amount":5}`, 3*sec)
	if res.Approved || res.Record != nil || h.task("t1").State != StateWaiting || h.task("t1").Wait.Kind != WaitApproval {
		t.Fatalf("first request: %+v, task %+v", res, h.task("t1"))
	}
	ap, err := h.fsm.Approval("c1")
	if err != nil || ap.State != ApprovalPending || ap.TaskID != "t1" || string(ap.Params) != `{"amount":5}` || ap.Tool != "pay" || ap.Agent != "doc" {
		t.Fatalf("pending approval: %+v, %v", ap, err)
	}
	if list, _ := h.fsm.Approvals(false); len(list) != 1 || list[0].CallID != "c1" {
		t.Fatalf("pending list: %+v", list)
	}
	if _, err := h.fsm.Approval("nosuch"); !errors.Is(err, ErrUnknownApproval) {
		t.Fatalf("unknown approval: %v", err)
	}

	got := h.ok(&DecideApproval{CallID: "c1", Approve: true, By: "ana", Note: "ok for 5", Now: 4 * sec}).(Approval)
	if got.State != ApprovalApproved || got.By != "ana" || got.DecidedAt != 4*sec || h.task("t1").State != StateQueued {
		t.Fatalf("approved: %+v, task %s", got, h.task("t1").State)
	}
	if again := h.ok(&DecideApproval{CallID: "c1", Approve: true, By: "bob", Now: 5 * sec}).(Approval); again.By != "ana" {
		t.Fatalf("approving again changed it: %+v", again)
	}
	if err, _ := h.apply(&DecideApproval{CallID: "c1", By: "bob", Note: "no", Now: 5 * sec}).(error); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("denying an approved call: %v", err)
	}
	if list, _ := h.fsm.Approvals(false); len(list) != 0 {
		t.Fatalf("pending after the decision: %+v", list)
	}
	c = h.claim(6 * sec)
	if res := h.requestApproval("t1", c.Lease.Token, "c1", `{"amount":5}`, 6*sec); !res.Approved || h.task("t1").State != StateRunning {
		t.Fatalf("the rerun's request: %+v", res)
	}
	// The model changed one argument: another call, another approval.
	if res := h.requestApproval("t1", c.Lease.Token, "c2", `{"amount":6}`, 7*sec); res.Approved || h.task("t1").State != StateWaiting {
		t.Fatalf("a changed call: %+v", res)
	}
	if list, _ := h.fsm.Approvals(true); len(list) != 2 || list[1].CallID != "c2" || list[1].State != ApprovalPending {
		t.Fatalf("all approvals: %+v", list)
	}
	if list, _ := h.fsm.Approvals(false); len(list) != 1 || list[0].CallID != "c2" {
		t.Fatalf("pending list: %+v", list)
	}
	indexesAgree(t, h.fsm) // the pending approvals' mirror among them
}

// TestApprovalDeny: a denial records the call's answer, permission_denied
// with who and why, which the rerun's Suspend returns; a denial without a
// reason is refused; cancelling a task withdraws its pending approval.
func TestApprovalDeny(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, sec)
	c := h.claim(2 * sec)
	h.requestApproval("t1", c.Lease.Token, "c1", `{"amount":500}`, 3*sec)
	if err, _ := h.apply(&DecideApproval{CallID: "c1", By: "ana", Now: 4 * sec}).(error); !errors.Is(err, ErrInvalidCmd) {
		t.Fatalf("a denial without a reason: %v", err)
	}
	h.ok(&DecideApproval{CallID: "c1", By: "ana", Note: "over the limit", Now: 4 * sec})
	rec := h.record("t1", "c1")
	if rec.Status != "permission_denied" || !strings.Contains(string(rec.Result), "denied by ana") || !strings.Contains(string(rec.Result), "over the limit") {
		t.Fatalf("the denied call's record: %+v %s", rec, rec.Result)
	}
	c = h.claim(5 * sec)
	if res := h.requestApproval("t1", c.Lease.Token, "c1", `{"amount":500}`, 6*sec); res.Record == nil || res.Record.Status != "permission_denied" {
		t.Fatalf("the rerun's request of a denied call: %+v", res)
	}

	h.submit("t2", RetryPolicy{}, 7*sec)
	c = h.claim(8 * sec)
	h.requestApproval("t2", c.Lease.Token, "c9", `{}`, 8*sec)
	h.ok(&CancelTask{TaskID: "t2", Reason: "not needed", Now: 9 * sec})
	if ap, _ := h.fsm.Approval("c9"); ap.State != ApprovalWithdrawn {
		t.Fatalf("a cancelled task's approval: %+v", ap)
	}
	if err, _ := h.apply(&DecideApproval{CallID: "c9", Approve: true, By: "ana", Now: 10 * sec}).(error); !errors.Is(err, ErrInvalidState) {
		t.Fatalf("approving a withdrawn approval: %v", err)
	}
	// Another task cannot reuse a call ID that is not its own.
	h.submit("t3", RetryPolicy{}, 11*sec)
	c = h.claim(12 * sec)
	if err, _ := h.apply(&Suspend{TaskID: "t3", Token: c.Lease.Token, Wait: approvalWait("c1", "pay"), Now: 12 * sec}).(error); !errors.Is(err, ErrInvalidCmd) {
		t.Fatalf("another task's call ID: %v", err)
	}
}
