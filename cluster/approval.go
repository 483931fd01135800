package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"

	"github.com/orloj/orloj/abi"
)

// Approvals bound to the exact call. A call of a tool that needs approval
// is not invoked until a person approves that call: the attempt suspends
// on a wait of kind WaitApproval whose CallID is the call's ID, the hash
// of task, tool, canonical params and occurrence. Suspend creates the
// pending Approval with the params, so what the person sees is what will
// be sent; a run whose model changed one argument makes another call ID,
// and so another approval. DecideApproval ends the wait: approved, the
// task runs again and the call is invoked (once, through the ledger as any
// call); denied, the call's ledger record is permission_denied with the
// reason, which the rerun replays to the guest.

// ErrUnknownApproval is an approval ID (a call ID) with no approval.
var ErrUnknownApproval = errors.New("unknown approval")

// MaxApprovalParamsBytes bounds the params an approval keeps to show; a
// call's params past it are kept cut, marked so (the call ID still names
// the whole params).
const MaxApprovalParamsBytes = 64 << 10

// ApprovalState is where an approval stands.
type ApprovalState string

const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	// ApprovalWithdrawn: the task ended (cancelled) while it waited.
	ApprovalWithdrawn ApprovalState = "withdrawn"
)

// Approval is a person's decision about one call.
type Approval struct {
	CallID  string `json:"call_id"` // the approval's ID
	TaskID  string `json:"task_id"`
	Agent   string `json:"agent"`
	Version string `json:"version"`
	Tool    string `json:"tool"`
	// Params are the call's canonical params, cut at
	// MaxApprovalParamsBytes (ParamsCut).
	Params      json.RawMessage `json:"params"`
	ParamsCut   bool            `json:"params_cut,omitempty"`
	State       ApprovalState   `json:"state"`
	Attempt     int             `json:"attempt"`
	RequestedAt int64           `json:"requested_at"`
	DecidedAt   int64           `json:"decided_at,omitempty"`
	By          string          `json:"by,omitempty"`
	Note        string          `json:"note,omitempty"` // the approver's note, or the reason of a denial
}

// DecideApproval approves or denies the pending approval of a call. It is
// idempotent: the same decision again changes nothing; the other one is
// refused (ErrInvalidState).
type DecideApproval struct {
	CallID  string `json:"call_id"`
	Approve bool   `json:"approve"`
	By      string `json:"by"`
	Note    string `json:"note,omitempty"`
	Now     int64  `json:"now"`
}

func (DecideApproval) messageType() MessageType { return MsgDecideApproval }

func (c *DecideApproval) Validate() error {
	if err := required("approval call_id", c.CallID, "approval by", c.By); err != nil {
		return err
	}
	if !c.Approve && c.Note == "" {
		return fmt.Errorf("%w: a denial needs a reason", ErrInvalidCmd)
	}
	return checkBytes("approval note", len(c.Note), MaxEventMessageBytes)
}

// Keys: ap/TASK/CALLID holds an Approval (retention deletes a task's with
// it); ai/CALLID holds its task's ID, so an approval is found by its ID
// alone.
func approvalKey(taskID, callID string) []byte { return []byte("ap/" + taskID + "/" + callID) }
func approvalPrefix(taskID string) []byte      { return []byte("ap/" + taskID + "/") }
func approvalIndexKey(callID string) []byte    { return []byte("ai/" + callID) }

// getApproval reads the approval of callID, through its index.
func (t *tx) getApproval(callID string, ap *Approval) bool {
	task, ok := t.getRaw(approvalIndexKey(callID))
	return ok && t.get(approvalKey(string(task), callID), ap)
}

// requestApproval is Suspend for a WaitApproval: the approval's decision,
// or a new pending approval and the task waiting on it. It returns
// approved when the call may be invoked now.
func (a *applier) requestApproval(t *Task, w Wait, params json.RawMessage, now int64) (approved bool, err error) {
	var ap Approval
	if a.getApproval(w.CallID, &ap) {
		if ap.TaskID != t.ID {
			return false, fmt.Errorf("%w: call %s is another task's", ErrInvalidCmd, w.CallID)
		}
		switch ap.State {
		case ApprovalApproved:
			return true, nil
		case ApprovalPending:
			return false, nil // waits again (a crash after the first Suspend)
		}
		// Denied writes the ledger record, which Suspend returns before
		// this; withdrawn is a cancelled task's, which is not fenced in.
		return false, fmt.Errorf("call %s: approval %s: %w", w.CallID, ap.State, ErrInvalidState)
	}
	if a.err != nil {
		return false, a.err
	}
	ap = Approval{CallID: w.CallID, TaskID: t.ID, Agent: t.Agent, Version: t.Version, Tool: w.Tool, Params: params,
		State: ApprovalPending, Attempt: t.Attempts, RequestedAt: now}
	if len(params) > MaxApprovalParamsBytes {
		ap.Params, ap.ParamsCut = cutJSON(params), true
	}
	a.put(approvalKey(t.ID, w.CallID), ap)
	a.putRaw(approvalIndexKey(w.CallID), []byte(t.ID))
	a.journal(t.ID, now, Event{Type: EventApprovalRequested, Attempt: t.Attempts, CallID: w.CallID, Tool: w.Tool,
		Message: "approval needed to call " + w.Tool})
	return false, nil
}

// cutJSON keeps the start of params as a JSON string, so what is shown is
// still JSON.
func cutJSON(params json.RawMessage) json.RawMessage {
	b, _ := json.Marshal(string(params[:MaxApprovalParamsBytes-1024]) + "…")
	return b
}

func (a *applier) decideApproval(c *DecideApproval) any {
	var ap Approval
	if !a.getApproval(c.CallID, &ap) {
		if a.err != nil {
			return a.err
		}
		return fmt.Errorf("approval %s: %w", c.CallID, ErrUnknownApproval)
	}
	want := ApprovalDenied
	if c.Approve {
		want = ApprovalApproved
	}
	switch ap.State {
	case want:
		return ap
	case ApprovalPending:
	default:
		return fmt.Errorf("approval %s is %s already: %w", c.CallID, ap.State, ErrInvalidState)
	}
	t, err := a.loadTask(ap.TaskID)
	if err != nil {
		return err
	}
	w := t.Wait
	if t.State != StateWaiting || w == nil || w.Kind != WaitApproval || w.CallID != c.CallID {
		return fmt.Errorf("task %s is %s, not waiting for approval %s: %w", t.ID, t.State, c.CallID, ErrInvalidState)
	}
	ap.State, ap.DecidedAt, ap.By, ap.Note = want, c.Now, c.By, c.Note
	a.put(approvalKey(ap.TaskID, c.CallID), ap)
	msg := fmt.Sprintf("call of %s approved by %s", ap.Tool, c.By)
	typ := EventApprovalGranted
	if !c.Approve {
		msg, typ = fmt.Sprintf("call of %s denied by %s", ap.Tool, c.By), EventApprovalDenied
		a.answer(t, *w, abi.StatusPermissionDenied, abi.EncodeErrorBody(abi.StatusPermissionDenied,
			fmt.Sprintf("%s; reason: %s", msg, c.Note)), c.Now)
	}
	if c.Note != "" {
		msg += ": " + c.Note
	}
	a.journal(t.ID, c.Now, Event{Type: typ, CallID: c.CallID, Tool: ap.Tool, Message: msg})
	a.resume(t, c.Now, msg)
	return ap
}

// withdrawApproval marks the pending approval a cancelled task waited on.
func (a *applier) withdrawApproval(t *Task, now int64) {
	if t.Wait == nil || t.Wait.Kind != WaitApproval {
		return
	}
	var ap Approval
	if a.get(approvalKey(t.ID, t.Wait.CallID), &ap) && ap.State == ApprovalPending {
		ap.State, ap.DecidedAt = ApprovalWithdrawn, now
		a.put(approvalKey(t.ID, ap.CallID), ap)
	}
}

// Approval returns the approval of a call.
func (f *FSM) Approval(callID string) (Approval, error) {
	var ap Approval
	err := f.view(func(tx *tx) error {
		if !tx.getApproval(callID, &ap) && tx.err == nil {
			return fmt.Errorf("approval %s: %w", callID, ErrUnknownApproval)
		}
		return nil
	})
	return ap, err
}

// Approvals lists approvals, oldest request first: only the pending ones
// unless all.
func (f *FSM) Approvals(all bool) ([]Approval, error) {
	var out []Approval
	var err error
	if all {
		out, err = decodeAll[Approval](f, []byte("ap/"), nil)
	} else {
		// The pending ones only, from their mirror: decided approvals
		// accumulate with history.
		err = f.view(func(tx *tx) error {
			for _, k := range f.idx.approvals.all() {
				var ap Approval
				if tx.get([]byte(k), &ap) && ap.State == ApprovalPending {
					out = append(out, ap)
				}
			}
			return tx.err
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RequestedAt < out[j].RequestedAt })
	return out, err
}
