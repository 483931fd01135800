package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// Call outcomes, as journaled and listed by `task calls`.
const (
	OutcomeInvoked  = "invoked"  // the tool ran and its result was recorded
	OutcomeReplayed = "replayed" // the recorded result was returned; the tool did not run
	OutcomeInDoubt  = "in_doubt" // an earlier attempt may have applied it; see the tool's semantics
	OutcomeDenied   = "denied"   // the agent's manifest does not allow the tool
	OutcomeError    = "error"    // the tool failed transiently; not recorded, retried next attempt
)

// nowTool names the ledger entries that record the guest's clock readings.
const nowTool = "orloj.now"

// maxLogEvents bounds how many guest log lines one attempt journals.
const maxLogEvents = 200

// CallDetail is the Detail of a "call" journal event.
type CallDetail struct {
	Outcome  string `json:"outcome"`
	Status   string `json:"status,omitempty"`
	Duration int64  `json:"duration_us"`
	Reason   string `json:"reason,omitempty"`
}

// errLeaseLost is the cause given to an attempt's context when its lease is
// gone: the attempt must stop and report nothing.
var errLeaseLost = errors.New("lease lost")

// ledgerDispatcher serves one attempt's host calls through the ledger. The
// sandbox calls it from the guest's goroutine, one call at a time.
type ledgerDispatcher struct {
	c       Cluster
	tools   *plugins.Registry
	task    cluster.Task
	lease   cluster.Lease
	allowed map[string]bool
	clock   func() time.Time
	log     hclog.Logger
	metrics *Metrics

	mu          sync.Mutex
	occurrences map[string]int
	expected    []string // call IDs recorded by earlier attempts, in order
	// recorded holds the results earlier attempts recorded, read once at
	// the start: a replay answers from here without decoding a record.
	recorded  map[string]cluster.LedgerRecord
	n         int // ledger calls made in this attempt
	diverged  bool
	output    []byte
	effects   []cluster.Effect
	events    []cluster.Event // journaled with the attempt's completion
	logEvents int

	// What the attempt ran into, for classifying its failure.
	inDoubt       string
	denied        string
	lastTransient bool
	fenced        error
}

func newLedgerDispatcher(c Cluster, tools *plugins.Registry, claim *cluster.Claim, agent cluster.Agent, clock func() time.Time, log hclog.Logger) (*ledgerDispatcher, error) {
	d := &ledgerDispatcher{
		c: c, tools: tools, task: claim.Task, lease: claim.Lease, clock: clock, log: log,
		allowed: map[string]bool{}, occurrences: map[string]int{}, recorded: map[string]cluster.LedgerRecord{},
	}
	for _, t := range agent.Manifest.Tools {
		d.allowed[t] = true
	}
	recs, err := c.FSM().Calls(claim.Task.ID)
	if err != nil {
		return nil, fmt.Errorf("read ledger of task %s: %w", claim.Task.ID, err)
	}
	for _, r := range recs {
		d.expected = append(d.expected, r.CallID)
		if r.HasResult {
			d.recorded[r.CallID] = r
		}
	}
	return d, nil
}

func (d *ledgerDispatcher) Input(context.Context) ([]byte, error) { return d.task.Input, nil }

func (d *ledgerDispatcher) Output(_ context.Context, out []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !json.Valid(out) {
		return abi.Errorf(abi.StatusInvalidArgument, "output is not valid JSON")
	}
	d.output = out
	return nil
}

func (d *ledgerDispatcher) Log(_ context.Context, level abi.LogLevel, line []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log.Debug("guest log", "task", d.task.ID, "level", level.String(), "line", string(line))
	if d.logEvents < maxLogEvents {
		d.logEvents++
		d.events = append(d.events, cluster.Event{At: d.now(), Type: "log", Attempt: d.lease.Attempt, Message: level.String() + ": " + string(line)})
	}
	return nil
}

func (d *ledgerDispatcher) Emit(_ context.Context, e abi.Effect) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.allowed[e.Tool] {
		return abi.Errorf(abi.StatusPermissionDenied, "agent %s may not call %s", d.task.Agent, e.Tool)
	}
	if _, ok := d.tools.Get(e.Tool); !ok {
		return abi.Errorf(abi.StatusNotFound, "no tool %q on this node", e.Tool)
	}
	occ := d.occurrences["emit\x00"+e.Tool+"\x00"+string(e.Params)]
	d.occurrences["emit\x00"+e.Tool+"\x00"+string(e.Params)]++
	key := CallID(d.task.ID, "emit:"+e.Tool, e.Params, e.Key, occ)
	d.effects = append(d.effects, cluster.Effect{Tool: e.Tool, Params: e.Params, Key: key})
	return nil
}

func (d *ledgerDispatcher) now() int64 { return d.clock().UnixNano() }

// Now returns the recorded clock reading for this point of the run, or
// records one.
func (d *ledgerDispatcher) Now(ctx context.Context) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	id := d.identify(nowTool, []byte("null"), "")
	rec, ok := d.recorded[id]
	if !ok {
		var err error
		if rec, ok, err = d.c.FSM().LedgerRecord(d.task.ID, id); err != nil {
			return time.Time{}, fmt.Errorf("ledger lookup: %w", err)
		}
	}
	if ok && rec.HasResult {
		ns, err := strconv.ParseInt(string(rec.Result), 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("recorded time %q: %w", rec.Result, err)
		}
		return time.Unix(0, ns), nil
	}
	now := d.now()
	_, err := d.c.Apply(ctx, &cluster.RecordResult{TaskID: d.task.ID, Token: d.lease.Token, CallID: id, Tool: nowTool,
		Status: abi.StatusOK.String(), Result: json.RawMessage(strconv.FormatInt(now, 10)), Now: now})
	if err != nil {
		return time.Time{}, d.proposeFailed(err)
	}
	return time.Unix(0, now), nil
}

// identify derives the next call's ID and notes a divergence from the calls
// earlier attempts made at the same point.
func (d *ledgerDispatcher) identify(tool string, params []byte, key string) string {
	occ := 0
	if key == "" {
		k := tool + "\x00" + string(params)
		occ = d.occurrences[k]
		d.occurrences[k]++
	}
	id := CallID(d.task.ID, tool, params, key, occ)
	if i := d.n; !d.diverged && i < len(d.expected) && d.expected[i] != id {
		d.diverged = true
		d.events = append(d.events, cluster.Event{At: d.now(), Type: "divergence", Attempt: d.lease.Attempt, CallID: id, Tool: tool,
			Message: fmt.Sprintf("call %d differs from the recorded run: expected %.12s, got %.12s (%s)", i+1, d.expected[i], id, tool)})
	}
	d.n++
	return id
}

func (d *ledgerDispatcher) callEvent(id, tool string, start time.Time, detail CallDetail) cluster.Event {
	took := time.Since(start)
	detail.Duration = took.Microseconds()
	label := tool
	if _, ok := d.tools.Get(tool); !ok {
		label = "unregistered" // a guest-chosen name must not become a label
	}
	d.metrics.ObserveCall(label, detail.Outcome, took)
	b, _ := json.Marshal(detail) // plain struct: cannot fail
	return cluster.Event{At: d.now(), Type: "call", Attempt: d.lease.Attempt, CallID: id, Tool: tool, Detail: b}
}

// proposeFailed turns a failed proposal into a host fault. A stale token
// means another worker owns the task now: the attempt stops.
func (d *ledgerDispatcher) proposeFailed(err error) error {
	if errors.Is(err, cluster.ErrStaleToken) {
		d.fenced = err
	}
	return fmt.Errorf("record call: %w", err)
}

// Call is the heart of Orloj: allowed? → recorded? → intent → invoke → result.
func (d *ledgerDispatcher) Call(ctx context.Context, req abi.CallRequest) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	id := d.identify(req.Tool, req.Params, req.Key)

	if !d.allowed[req.Tool] {
		d.denied = req.Tool
		d.events = append(d.events, d.callEvent(id, req.Tool, start, CallDetail{Outcome: OutcomeDenied, Status: abi.StatusPermissionDenied.String()}))
		return nil, abi.Errorf(abi.StatusPermissionDenied, "agent %s may not call %s (not in its manifest)", d.task.Agent, req.Tool)
	}
	tool, ok := d.tools.Get(req.Tool)
	if !ok {
		return nil, abi.Errorf(abi.StatusNotFound, "no tool %q on this node", req.Tool)
	}
	call := plugins.Call{ID: id, TaskID: d.task.ID, Attempt: d.lease.Attempt, Params: req.Params}

	rec, found := d.recorded[id]
	if !found {
		var err error
		if rec, found, err = d.c.FSM().LedgerRecord(d.task.ID, id); err != nil {
			return nil, fmt.Errorf("ledger lookup: %w", err)
		}
	}
	if found && rec.HasResult {
		d.lastTransient = false
		d.events = append(d.events, d.callEvent(id, req.Tool, start, CallDetail{Outcome: OutcomeReplayed, Status: rec.Status}))
		return replay(rec)
	}
	if found {
		// INTENT without RESULT: an earlier attempt may have applied it.
		switch tool.Semantics() {
		case plugins.Unsafe:
			d.inDoubt = fmt.Sprintf("call %s to %s (attempt %d) may have taken effect; %s is unsafe to repeat", id, req.Tool, rec.Attempt, req.Tool)
			d.events = append(d.events, d.callEvent(id, req.Tool, start, CallDetail{Outcome: OutcomeInDoubt, Status: abi.StatusInDoubt.String(), Reason: "unsafe tool"}))
			return nil, abi.Errorf(abi.StatusInDoubt, "%s", d.inDoubt)
		case plugins.Reconcile:
			if r, ok := tool.(plugins.Reconciler); ok {
				res, applied, err := r.Reconcile(ctx, call)
				if err != nil {
					d.lastTransient = true
					d.events = append(d.events, d.callEvent(id, req.Tool, start, CallDetail{Outcome: OutcomeError, Status: abi.StatusTransient.String(), Reason: "reconcile: " + err.Error()}))
					return nil, abi.Errorf(abi.StatusTransient, "reconcile %s: %v", req.Tool, err)
				}
				if applied {
					return d.record(ctx, id, req.Tool, start, res, nil, "reconciled")
				}
			}
		}
		// read_only and idempotent: invoke again with the same key.
	}

	r, err := d.c.Apply(ctx, &cluster.RecordIntent{TaskID: d.task.ID, Token: d.lease.Token, CallID: id, Tool: req.Tool, Now: d.now()})
	if err != nil {
		return nil, d.proposeFailed(err)
	}
	if lr, ok := r.(cluster.LedgerRecord); ok && lr.HasResult {
		d.events = append(d.events, d.callEvent(id, req.Tool, start, CallDetail{Outcome: OutcomeReplayed, Status: lr.Status}))
		return replay(lr)
	}
	res, err := tool.Invoke(withToken(ctx, d.lease.Token), call)
	return d.record(ctx, id, req.Tool, start, res, err, "")
}

// record commits a call's result (or permanent error) and answers the guest.
// Transient failures are not recorded: the next attempt invokes again.
func (d *ledgerDispatcher) record(ctx context.Context, id, tool string, start time.Time, res plugins.Result, callErr error, reason string) ([]byte, error) {
	st, ok := abi.StatusOf(callErr)
	if !ok || st == abi.StatusBufferTooSmall || st == abi.StatusFault || st == abi.StatusInDoubt || st == abi.StatusBudgetExceeded {
		st = abi.StatusTransient // an unclassified tool failure may succeed later
	}
	if st == abi.StatusTransient {
		if ctx.Err() != nil && d.fenced == nil {
			// The attempt's context ended (deadline, lost lease): say so plainly.
			return nil, fmt.Errorf("call %s: %w", tool, context.Cause(ctx))
		}
		d.lastTransient = true
		d.events = append(d.events, d.callEvent(id, tool, start, CallDetail{Outcome: OutcomeError, Status: st.String(), Reason: errText(callErr)}))
		return nil, abi.Errorf(abi.StatusTransient, "%s", errText(callErr))
	}
	d.lastTransient = false
	body := res.Body
	if st != abi.StatusOK {
		msg := errText(callErr)
		var ae *abi.Error
		if errors.As(callErr, &ae) {
			msg = ae.Message
		}
		body = abi.EncodeErrorBody(st, msg)
	}
	var usage json.RawMessage
	if res.Usage != nil {
		usage, _ = json.Marshal(res.Usage)
	}
	ev := d.callEvent(id, tool, start, CallDetail{Outcome: OutcomeInvoked, Status: st.String(), Reason: reason})
	_, err := d.c.Apply(context.WithoutCancel(ctx), &cluster.RecordResult{TaskID: d.task.ID, Token: d.lease.Token, CallID: id,
		Status: st.String(), Result: body, Usage: usage, Event: &ev, Now: d.now()})
	if err != nil {
		return nil, d.proposeFailed(err)
	}
	if st != abi.StatusOK {
		return nil, abi.DecodeErrorBody(st, body)
	}
	return body, nil
}

func replay(rec cluster.LedgerRecord) ([]byte, error) {
	st, ok := abi.ParseStatus(rec.Status)
	if !ok {
		return nil, fmt.Errorf("ledger record %s has status %q", rec.CallID, rec.Status)
	}
	if st != abi.StatusOK {
		return nil, abi.DecodeErrorBody(st, rec.Result)
	}
	return rec.Result, nil
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
