package host

import (
	"context"
	"fmt"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/sandbox"
)

// awaitApproval holds a call of a tool that needs approval until a person
// has approved that very call (its ID: task, tool, canonical params,
// occurrence). It returns nothing when the call may go ahead; the recorded
// answer of a denied call; or, once the task waits for the decision, an
// error wrapping sandbox.ErrSuspend, which stops the guest. Called by
// begin, with d.mu held, after the ledger lookup: a call already made
// replays without asking again.
func (d *ledgerDispatcher) awaitApproval(ctx context.Context, id string, req abi.CallRequest) ([]byte, error) {
	if ap, err := d.c.FSM().Approval(id); err == nil && ap.State == cluster.ApprovalApproved && ap.TaskID == d.task.ID {
		return nil, nil
	}
	r, err := d.c.Apply(context.WithoutCancel(ctx), &cluster.Suspend{TaskID: d.task.ID, Token: d.lease.Token,
		Wait: cluster.Wait{Kind: cluster.WaitApproval, CallID: id, Tool: req.Tool}, Params: req.Params, Journal: d.events, Now: d.now()})
	if err != nil {
		return nil, d.proposeFailed(err)
	}
	d.events, d.eventBytes = nil, 0 // the Suspend entry journaled them
	sr, ok := r.(cluster.SuspendResult)
	switch {
	case !ok:
		return nil, fmt.Errorf("suspend answered %T", r)
	case sr.Record != nil: // denied meanwhile
		return replay(*sr.Record)
	case sr.Approved: // approved between the replica's answer and the leader's
		return nil, nil
	}
	d.suspended = true
	d.log.Info("call waits for approval", "task", d.task.ID, "tool", req.Tool, "call", id)
	return nil, d.suspendErr()
}

// suspendErr is what every call of an attempt that has suspended answers:
// the lease is gone, so nothing more may be invoked.
func (d *ledgerDispatcher) suspendErr() error {
	return fmt.Errorf("task %s waits: %w", d.task.ID, sandbox.ErrSuspend)
}
