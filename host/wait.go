package host

import (
	"context"
	"fmt"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/sandbox"
)

// The ledger names of the guest's waits. Like the clock's readings
// (orloj.now) they are host calls, not tool calls: no budget counts them,
// and the manifest does not list them.
const (
	sleepTool  = "orloj.sleep"
	signalTool = "orloj.signal"
)

func isWaitTool(tool string) bool { return tool == sleepTool || tool == signalTool }

func waitTool(k abi.WaitKind) string {
	if k == abi.WaitSleep {
		return sleepTool
	}
	return signalTool
}

// Wait serves the guest's durable waits. A wait is identified like a call
// (its canonical request and occurrence) and answered from the ledger when
// an earlier run recorded its answer. Otherwise the host proposes Suspend
// with the wait's deadline (chosen here, from this node's clock, the first
// time the wait is met): the FSM answers at once when it can (a time
// passed, a signal kept), else the task waits, the lease is released, and
// the guest is stopped (sandbox.ErrSuspend).
func (d *ledgerDispatcher) Wait(ctx context.Context, req abi.WaitRequest, canonical []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.flush(ctx, false); err != nil {
		return nil, err
	}
	tool := waitTool(req.Kind)
	id := d.identify(tool, canonical, "")
	rec, found := d.recorded[id]
	if !found {
		var err error
		if rec, found, err = d.c.FSM().LedgerRecord(d.task.ID, id); err != nil {
			return nil, fmt.Errorf("ledger lookup: %w", err)
		}
	}
	if found && rec.HasResult {
		return replay(rec)
	}
	now := d.now()
	w := cluster.Wait{Kind: cluster.WaitSleep, CallID: id, Tool: tool}
	switch req.Kind {
	case abi.WaitSleep:
		w.Until = req.Until
		if w.Until == 0 {
			w.Until = now + req.Duration
		}
	case abi.WaitSignal:
		w.Kind, w.Signal = cluster.WaitSignal, req.Name
		if req.Timeout > 0 {
			w.Until = now + req.Timeout
		}
	}
	if w.Until < 0 { // an overflowing duration: wait as long as can be said
		w.Until = 1<<63 - 1
	}
	r, err := d.c.Apply(context.WithoutCancel(ctx), &cluster.Suspend{TaskID: d.task.ID, Token: d.lease.Token, Wait: w,
		Journal: d.events, Now: now})
	if err != nil {
		return nil, d.proposeFailed(err)
	}
	d.events, d.eventBytes = nil, 0 // the Suspend entry journaled them
	sr, ok := r.(cluster.SuspendResult)
	if !ok {
		return nil, fmt.Errorf("suspend answered %T", r)
	}
	if sr.Record != nil {
		return replay(*sr.Record)
	}
	d.suspended = true
	d.log.Debug("task waiting", "task", d.task.ID, "kind", w.Kind, "until", time.Unix(0, w.Until).UTC(), "signal", w.Signal)
	return nil, fmt.Errorf("task %s waits (%s): %w", d.task.ID, w.Kind, sandbox.ErrSuspend)
}

func (d *ledgerDispatcher) isSuspended() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.suspended
}

var _ sandbox.WaitDispatcher = (*ledgerDispatcher)(nil)
