package host

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// CallOutcome is what became of one tool call of the guest: the outcome of
// a call journal event (CallDetail), of `task calls`, and the outcome label
// of the call metrics. It is stored as its string; values never change.
type CallOutcome string

const (
	OutcomeInvoked  CallOutcome = "invoked"         // the tool ran and its result was recorded
	OutcomeReplayed CallOutcome = "replayed"        // the recorded result was returned; the tool did not run
	OutcomeInDoubt  CallOutcome = "in_doubt"        // an earlier attempt may have applied it; see the tool's semantics
	OutcomeDenied   CallOutcome = "denied"          // the agent's manifest does not allow the tool
	OutcomeError    CallOutcome = "error"           // the tool failed transiently; not recorded, retried next attempt
	OutcomeBudget   CallOutcome = "budget_exceeded" // a budget of the task ran out; the tool did not run
)

// CallOutcomes lists every CallOutcome.
func CallOutcomes() []CallOutcome {
	return []CallOutcome{OutcomeInvoked, OutcomeReplayed, OutcomeInDoubt, OutcomeDenied, OutcomeError, OutcomeBudget}
}

// DefaultBatchConcurrency is how many calls of one call_batch a node runs at
// once unless configured otherwise.
const DefaultBatchConcurrency = 8

// nowTool names the ledger entries that record the guest's clock readings.
const nowTool = "orloj.now"

// maxLogEvents bounds how many guest log lines one attempt journals.
const maxLogEvents = 200

// maxDeniedEvents bounds how many refused calls one attempt journals one
// by one; the rest are counted in one summary event.
const maxDeniedEvents = 100

// A long attempt's journal goes to the cluster in chunks while it runs, so
// no entry carries more than the FSM accepts and the host holds little:
// at journalFlushEvents events or journalFlushBytes bytes, whichever first.
const (
	journalFlushEvents = cluster.MaxEventsPerEntry / 2
	journalFlushBytes  = 512 << 10
)

// maxReasonBytes bounds the reason a call event carries (a tool's error
// text), so the event stays within cluster.MaxEventDetailBytes.
const maxReasonBytes = 1 << 10

// maxPreloadBytes bounds the recorded results an attempt holds in memory
// for fast replay; the rest are read from the local replica when asked.
const maxPreloadBytes = 32 << 20

// maxEffectBytes bounds the params of all effects one attempt emits: they
// travel in the entry that completes the task.
const maxEffectBytes = 512 << 10

// CallDetail is the Detail of a cluster.EventCall journal event.
type CallDetail struct {
	Outcome  CallOutcome `json:"outcome"`
	Status   string      `json:"status,omitempty"`
	Duration int64       `json:"duration_us"`
	Reason   string      `json:"reason,omitempty"`
}

// errLeaseLost is the cause given to an attempt's context when its lease is
// gone: the attempt must stop and report nothing.
var errLeaseLost = errors.New("lease lost")

// ledgerDispatcher serves one attempt's host calls through the ledger. The
// sandbox calls it from the guest's goroutine, one call at a time; the calls
// of a batch then run at once, so what they change is under mu.
type ledgerDispatcher struct {
	c       Cluster
	tools   *plugins.Registry
	task    cluster.Task
	lease   cluster.Lease
	allowed map[string]bool
	approve map[string]bool // tools whose calls wait for a person's approval
	clock   func() time.Time
	log     hclog.Logger
	metrics *Metrics
	tracing *Tracing // nil: no spans
	// batchLimit bounds the calls of one batch that run at once.
	batchLimit int

	mu sync.Mutex
	// occurrences counts earlier identical (tool, params) calls, keyed by
	// a hash so a guest repeating huge params costs 32 bytes, not a copy.
	occurrences map[[sha256.Size]byte]int
	expected    []string // call IDs recorded by earlier attempts, in order
	// recorded holds results earlier attempts recorded, read once at the
	// start (up to maxPreloadBytes): a replay answers from here without
	// decoding a record.
	recorded    map[string]cluster.LedgerRecord
	n           int // ledger calls made in this attempt
	diverged    bool
	output      []byte
	effects     []cluster.Effect
	effectBytes int
	events      []cluster.Event // not yet journaled: flushed in chunks, the rest with the attempt's end
	eventBytes  int
	logEvents   int
	denials     int // refused calls (manifest or budget) in this attempt
	spend       *spend

	// What the attempt ran into, for classifying its failure.
	inDoubt       string
	denied        string
	lastTransient bool
	fenced        error
	flushErr      error // a chunk of the journal could not be recorded
	suspended     bool  // a wait suspended the attempt: the task is waiting
}

func newLedgerDispatcher(c Cluster, tools *plugins.Registry, claim *cluster.Claim, agent cluster.Agent, clock func() time.Time, log hclog.Logger) (*ledgerDispatcher, error) {
	d := &ledgerDispatcher{
		c: c, tools: tools, task: claim.Task, lease: claim.Lease, clock: clock, log: log,
		batchLimit: DefaultBatchConcurrency, allowed: map[string]bool{}, approve: map[string]bool{}, occurrences: map[[sha256.Size]byte]int{}, recorded: map[string]cluster.LedgerRecord{},
	}
	for _, t := range agent.Manifest.Tools {
		d.allowed[t] = true
	}
	for _, t := range agent.Manifest.Approve {
		d.approve[t] = true
	}
	recs, err := c.FSM().Calls(claim.Task.ID)
	if err != nil {
		return nil, fmt.Errorf("read ledger of task %s: %w", claim.Task.ID, err)
	}
	preloaded := 0
	for _, r := range recs {
		d.expected = append(d.expected, r.CallID)
		if r.HasResult && preloaded+len(r.Result) <= maxPreloadBytes {
			preloaded += len(r.Result)
			d.recorded[r.CallID] = r
		}
	}
	d.spend = newSpend(claim.Task, recs, clock)
	return d, nil
}

// note adds an event to the attempt's journal, cut to the sizes the FSM
// accepts.
func (d *ledgerDispatcher) note(e cluster.Event) {
	e = e.Bounded()
	d.events = append(d.events, e)
	d.eventBytes += len(e.Message) + len(e.Detail) + len(e.CallID) + len(e.Tool) + len(e.Type) + 64
}

// flush journals the events gathered so far when there are enough of them
// to make an entry worth it, or when all is set. Called at the start of each
// host call, so a guest that makes 20,000 calls leaves no 20,000-event
// entry behind.
func (d *ledgerDispatcher) flush(ctx context.Context, all bool) error {
	if len(d.events) == 0 || (!all && len(d.events) < journalFlushEvents && d.eventBytes < journalFlushBytes) {
		return nil
	}
	_, err := d.c.Apply(context.WithoutCancel(ctx), &cluster.AppendJournal{TaskID: d.task.ID, Token: d.lease.Token,
		Events: d.events, Now: d.now()})
	if err != nil {
		d.flushErr = err
		return d.proposeFailed(err)
	}
	d.events, d.eventBytes = nil, 0
	return nil
}

// summarize journals how many refused calls were not journaled one by one.
func (d *ledgerDispatcher) summarize() {
	if n := d.denials - maxDeniedEvents; n > 0 {
		d.note(cluster.Event{At: d.now(), Type: cluster.EventCallsRefused, Attempt: d.lease.Attempt,
			Message: fmt.Sprintf("%d more refused calls not journaled one by one (%d in this attempt)", n, d.denials)})
	}
}

// refused notes a call the manifest or a budget refused; after
// maxDeniedEvents, only the count.
func (d *ledgerDispatcher) refused(e cluster.Event) {
	d.denials++
	if d.denials <= maxDeniedEvents {
		d.note(e)
	}
}

func (d *ledgerDispatcher) Input(context.Context) ([]byte, error) { return d.task.Input, nil }

func (d *ledgerDispatcher) Output(_ context.Context, out []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(out) > cluster.MaxOutputBytes {
		return abi.Errorf(abi.StatusInvalidArgument, "output is %d bytes; the limit is %d", len(out), cluster.MaxOutputBytes)
	}
	if !json.Valid(out) {
		return abi.Errorf(abi.StatusInvalidArgument, "output is not valid JSON")
	}
	d.output = out
	return nil
}

func (d *ledgerDispatcher) Log(ctx context.Context, level abi.LogLevel, line []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.flush(ctx, false); err != nil {
		return err
	}
	if d.logEvents < maxLogEvents {
		d.logEvents++
		msg := clipUTF8(level.String()+": "+string(line), cluster.MaxEventMessageBytes)
		d.log.Debug("guest log", "task", d.task.ID, "level", level.String(), "line", msg)
		d.note(cluster.Event{At: d.now(), Type: cluster.EventLog, Attempt: d.lease.Attempt, Message: msg})
	}
	return nil
}

func (d *ledgerDispatcher) Emit(ctx context.Context, e abi.Effect) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.flush(ctx, false); err != nil {
		return err
	}
	if !d.allowed[e.Tool] {
		return abi.Errorf(abi.StatusPermissionDenied, "agent %s may not call %s", d.task.Agent, e.Tool)
	}
	if _, ok := d.tools.Get(e.Tool); !ok {
		return abi.Errorf(abi.StatusNotFound, "no tool %q on this node", e.Tool)
	}
	if d.effectBytes+len(e.Params) > maxEffectBytes {
		return abi.Errorf(abi.StatusInvalidArgument, "the effects of one attempt may carry %d bytes of params; this one would make %d", maxEffectBytes, d.effectBytes+len(e.Params))
	}
	if berr := d.spend.effect(); berr != nil {
		return d.overBudget(berr, cluster.Event{At: d.now(), Type: cluster.EventEffectRefused, Attempt: d.lease.Attempt, Tool: e.Tool})
	}
	d.effectBytes += len(e.Params)
	k := occurrenceKey("emit", e.Tool, e.Params)
	occ := d.occurrences[k]
	d.occurrences[k]++
	key := CallID(d.task.ID, "emit:"+e.Tool, e.Params, e.Key, occ)
	d.effects = append(d.effects, cluster.Effect{Tool: e.Tool, Params: e.Params, Key: key})
	return nil
}

// overBudget refuses a call or effect because a budget ran out: the first
// refusal is journaled with what ran out, later ones are only counted.
func (d *ledgerDispatcher) overBudget(berr *BudgetError, e cluster.Event) error {
	d.metrics.ObserveBudgetExceeded(berr.Kind)
	e.Message = berr.Error()
	d.refused(e)
	return abi.Errorf(abi.StatusBudgetExceeded, "%s", berr.Error())
}

// occurrenceKey names a (kind, tool, params) triple for counting repeats.
func occurrenceKey(kind, tool string, params []byte) [sha256.Size]byte {
	var stack [512]byte
	b := append(append(append(append(stack[:0], kind...), 0), tool...), 0)
	return sha256.Sum256(append(b, params...))
}

func (d *ledgerDispatcher) now() int64 { return d.clock().UnixNano() }

// Now returns the recorded clock reading for this point of the run, or
// records one.
func (d *ledgerDispatcher) Now(ctx context.Context) (time.Time, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.flush(ctx, false); err != nil {
		return time.Time{}, err
	}
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
		k := occurrenceKey("call", tool, params)
		occ = d.occurrences[k]
		d.occurrences[k]++
	}
	id := CallID(d.task.ID, tool, params, key, occ)
	if i := d.n; !d.diverged && i < len(d.expected) && d.expected[i] != id {
		d.diverged = true
		d.note(cluster.Event{At: d.now(), Type: cluster.EventDivergence, Attempt: d.lease.Attempt, CallID: id, Tool: tool,
			Message: fmt.Sprintf("call %d differs from the recorded run: expected %.12s, got %.12s (%s)", i+1, d.expected[i], id, tool)})
	}
	d.n++
	return id
}

// callEvent is the journal event of a call's end; it also counts the call
// in the metrics and ends its span. ctx is the one the call was invoked
// with (holding its span), or the attempt's for a call answered at once;
// usage is what an invocation spent, nil otherwise.
func (d *ledgerDispatcher) callEvent(ctx context.Context, id, tool string, start time.Time, detail CallDetail, usage *plugins.Usage) cluster.Event {
	took := time.Since(start)
	detail.Duration = took.Microseconds()
	detail.Reason = clipUTF8(detail.Reason, maxReasonBytes)
	label := d.label(tool)
	d.metrics.ObserveCall(label, detail.Outcome, took)
	d.tracing.call(ctx, id, label, start, start.Add(took), detail, usage)
	return cluster.Event{At: d.now(), Type: cluster.EventCall, Attempt: d.lease.Attempt, CallID: id, Tool: tool, Detail: detail.json()}
}

// json is detail as json.Marshal writes it. Every call journals one, and
// reflection was a tenth of a replayed call's host-side cost; text that
// json.Marshal would escape takes the reflective path.
func (detail CallDetail) json() []byte {
	if !plainJSON(string(detail.Outcome)) || !plainJSON(detail.Status) || !plainJSON(detail.Reason) {
		b, _ := json.Marshal(detail) // plain struct: cannot fail
		return b
	}
	b := make([]byte, 0, 48+len(detail.Outcome)+len(detail.Status)+len(detail.Reason))
	b = append(b, `{"outcome":"`...)
	b = append(b, detail.Outcome...)
	b = append(b, '"')
	if detail.Status != "" {
		b = append(b, `,"status":"`...)
		b = append(b, detail.Status...)
		b = append(b, '"')
	}
	b = append(b, `,"duration_us":`...)
	b = strconv.AppendInt(b, detail.Duration, 10)
	if detail.Reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, detail.Reason...)
		b = append(b, '"')
	}
	return append(b, '}')
}

// plainJSON reports whether json.Marshal writes s as it is, between quotes.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// label is the name a call's tool goes by in metrics and spans: a
// guest-chosen name must not become a label; a manifest's may (a call
// replayed on a node without the tool).
func (d *ledgerDispatcher) label(tool string) string {
	if _, ok := d.tools.Get(tool); !ok && !d.allowed[tool] {
		return "unregistered"
	}
	return tool
}

// proposeFailed turns a failed proposal into a host fault. A stale token
// means another worker owns the task now: the attempt stops.
func (d *ledgerDispatcher) proposeFailed(err error) error {
	if errors.Is(err, cluster.ErrStaleToken) {
		d.fenced = err
	}
	return fmt.Errorf("record call: %w", err)
}

// Call is the heart of Orloj: allowed? → recorded? → intent (unsafe and
// reconcile tools only) → invoke → result.
func (d *ledgerDispatcher) Call(ctx context.Context, req abi.CallRequest) ([]byte, error) {
	d.mu.Lock()
	if err := d.flush(ctx, false); err != nil {
		d.mu.Unlock()
		return nil, err
	}
	p, body, err := d.begin(ctx, req)
	d.mu.Unlock()
	if p == nil {
		return body, err
	}
	return d.invoke(ctx, p)
}

// CallBatch serves call_batch: every call is identified, checked and looked
// up in the ledger in request order, as consecutive Calls would be, and the
// ones that must reach their tools then run at once, at most batchLimit at
// a time, each with its own INTENT and RESULT.
func (d *ledgerDispatcher) CallBatch(ctx context.Context, reqs []abi.CallRequest) []sandbox.CallResult {
	out := make([]sandbox.CallResult, len(reqs))
	pending := make([]*pendingCall, len(reqs))
	d.mu.Lock()
	if err := d.flush(ctx, false); err != nil {
		d.mu.Unlock()
		for i := range out {
			out[i].Err = err
		}
		return out
	}
	for i, r := range reqs {
		pending[i], out[i].Body, out[i].Err = d.begin(ctx, r)
	}
	if d.suspended {
		// A call waits for approval and the lease is released: invoke
		// none of the batch; the rerun replays what was recorded.
		for i, p := range pending {
			if p != nil {
				out[i].Err = d.suspendErr()
			}
		}
		d.mu.Unlock()
		return out
	}
	d.mu.Unlock()

	sem := make(chan struct{}, max(d.batchLimit, 1))
	var wg sync.WaitGroup
	for i, p := range pending {
		if p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			defer func() {
				if r := recover(); r != nil {
					// As in Call: a panic while serving a call is a host
					// fault (an error without a status ends the attempt).
					d.log.Error("tool panicked in a batch", "task", d.task.ID, "tool", p.req.Tool, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
					out[i] = sandbox.CallResult{Err: fmt.Errorf("tool %s panicked: %v", p.req.Tool, r)}
				}
			}()
			out[i].Body, out[i].Err = d.invoke(ctx, p)
		}()
	}
	wg.Wait()
	// The calls finished in any order; what the guest saw last is the
	// whole batch, transient if any of it was.
	transient := false
	for _, r := range out {
		if st, ok := abi.StatusOf(r.Err); ok && st == abi.StatusTransient {
			transient = true
		}
	}
	d.mu.Lock()
	d.lastTransient = transient
	d.mu.Unlock()
	return out
}

// pendingCall is a call that begin found must reach its tool.
type pendingCall struct {
	id    string
	req   abi.CallRequest
	tool  plugins.Tool
	call  plugins.Call
	start time.Time
	// reconcile: an earlier attempt left an INTENT without RESULT and the
	// tool can say whether it applied it.
	reconcile bool
}

// begin decides a call from what this node knows, with d.mu held: refused
// (manifest, budget), replayed from the ledger, or in doubt, answered at
// once; otherwise a pendingCall for invoke. The ledger comes before the
// tool: a recorded result replays on any node, with or without the tool.
func (d *ledgerDispatcher) begin(ctx context.Context, req abi.CallRequest) (*pendingCall, []byte, error) {
	start := time.Now()
	if d.suspended { // an earlier call of the batch suspended the attempt
		return nil, nil, d.suspendErr()
	}
	id := d.identify(req.Tool, req.Params, req.Key)

	if !d.allowed[req.Tool] {
		// A refused call still counts toward max_calls: an agent that
		// loops on a forbidden tool ends at its budget, not its timeout.
		if berr := d.spend.call(id); berr != nil {
			return nil, nil, d.overBudget(berr, d.callEvent(ctx, id, req.Tool, start, CallDetail{Outcome: OutcomeBudget, Status: abi.StatusBudgetExceeded.String()}, nil))
		}
		d.denied = req.Tool
		d.refused(d.callEvent(ctx, id, req.Tool, start, CallDetail{Outcome: OutcomeDenied, Status: abi.StatusPermissionDenied.String()}, nil))
		return nil, nil, abi.Errorf(abi.StatusPermissionDenied, "agent %s may not call %s (not in its manifest)", d.task.Agent, req.Tool)
	}

	rec, found := d.recorded[id]
	if !found {
		var err error
		if rec, found, err = d.c.FSM().LedgerRecord(d.task.ID, id); err != nil {
			return nil, nil, fmt.Errorf("ledger lookup: %w", err)
		}
	}
	if found && rec.HasResult {
		d.lastTransient = false
		d.note(d.callEvent(ctx, id, req.Tool, start, CallDetail{Outcome: OutcomeReplayed, Status: rec.Status}, nil))
		body, err := replay(rec)
		return nil, body, err
	}
	tool, ok := d.tools.Get(req.Tool)
	if !ok {
		return nil, nil, abi.Errorf(abi.StatusNotFound, "no tool %q on this node", req.Tool)
	}
	if d.approve[req.Tool] {
		if body, err := d.awaitApproval(ctx, id, req); body != nil || err != nil {
			return nil, body, err
		}
	}
	// Checked before the intent: a call over budget never reaches the
	// ledger, let alone the tool.
	if berr := d.spend.call(id); berr != nil {
		return nil, nil, d.overBudget(berr, d.callEvent(ctx, id, req.Tool, start, CallDetail{Outcome: OutcomeBudget, Status: abi.StatusBudgetExceeded.String()}, nil))
	}
	p := &pendingCall{id: id, req: req, tool: tool, start: start,
		call: plugins.Call{ID: id, TaskID: d.task.ID, Attempt: d.lease.Attempt, Params: req.Params}}
	if found && rec.InDoubt() {
		// INTENT without RESULT: an earlier attempt may have applied it.
		// (One known not to have, NotApplied, is invoked afresh.)
		switch tool.Semantics() {
		case plugins.Unsafe:
			d.inDoubt = fmt.Sprintf("call %s to %s (attempt %d) may have taken effect; %s is unsafe to repeat", id, req.Tool, rec.Attempt, req.Tool)
			d.note(d.callEvent(ctx, id, req.Tool, start, CallDetail{Outcome: OutcomeInDoubt, Status: abi.StatusInDoubt.String(), Reason: "unsafe tool"}, nil))
			return nil, nil, abi.Errorf(abi.StatusInDoubt, "%s", d.inDoubt)
		case plugins.Reconcile:
			_, p.reconcile = tool.(plugins.Reconciler)
		}
		// read_only and idempotent: invoke again with the same key.
	}
	return p, nil, nil
}

// invoke makes a call begin could not answer, without d.mu held (the calls
// of a batch run at once), taking it for what it changes.
func (d *ledgerDispatcher) invoke(ctx context.Context, p *pendingCall) ([]byte, error) {
	id, name := p.id, p.req.Tool
	ctx, span := d.tracing.startCall(ctx, id, d.label(name), p.start)
	defer d.tracing.endCall(span)
	if p.reconcile {
		res, applied, err := p.tool.(plugins.Reconciler).Reconcile(ctx, p.call)
		if err != nil {
			d.mu.Lock()
			d.lastTransient = true
			d.note(d.callEvent(ctx, id, name, p.start, CallDetail{Outcome: OutcomeError, Status: abi.StatusTransient.String(), Reason: "reconcile: " + err.Error()}, nil))
			d.mu.Unlock()
			return nil, abi.Errorf(abi.StatusTransient, "reconcile %s: %v", name, err)
		}
		if applied {
			return d.record(ctx, id, name, p.start, res, nil, "reconciled")
		}
	}
	if !needsIntent(p.tool.Semantics()) {
		// One commit: the RESULT alone (see docs/RATIONALE.md, "One commit
		// for a call that is safe to repeat"). A lease already lost is not
		// worth a call the RESULT would be refused for.
		if ctx.Err() != nil {
			return nil, fmt.Errorf("call %s: %w", name, context.Cause(ctx))
		}
		if err := d.leaseHeld(); err != nil {
			return nil, err
		}
		res, err := p.tool.Invoke(withToken(ctx, d.lease.Token), p.call)
		return d.record(ctx, id, name, p.start, res, err, "")
	}
	r, err := d.c.Apply(ctx, &cluster.RecordIntent{TaskID: d.task.ID, Token: d.lease.Token, CallID: id, Tool: name, Now: d.now()})
	if err != nil {
		return nil, d.proposeFailedLocked(err)
	}
	if lr, ok := r.(cluster.LedgerRecord); ok && lr.HasResult {
		d.mu.Lock()
		d.note(d.callEvent(ctx, id, name, p.start, CallDetail{Outcome: OutcomeReplayed, Status: lr.Status}, nil))
		d.mu.Unlock()
		return replay(lr)
	}
	res, err := p.tool.Invoke(withToken(ctx, d.lease.Token), p.call)
	if err != nil && errors.Is(err, plugins.ErrNotSent) {
		// Nothing reached the service: say so beside the INTENT, so the
		// next attempt invokes again instead of stopping in doubt.
		if _, cerr := d.c.Apply(context.WithoutCancel(ctx), &cluster.ClearIntent{TaskID: d.task.ID, Token: d.lease.Token, CallID: id, Now: d.now()}); cerr != nil {
			return nil, d.proposeFailedLocked(cerr)
		}
	}
	return d.record(ctx, id, name, p.start, res, err, "")
}

// proposeFailedLocked is proposeFailed for a caller without d.mu.
func (d *ledgerDispatcher) proposeFailedLocked(err error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.proposeFailed(err)
}

// leaseHeld checks on the local replica that this attempt still holds its
// lease: with no INTENT, this is where a worker whose lease was taken over
// stops before invoking. The replica may lag the leader, so it only
// narrows the window; the RESULT is fenced by the leader, and a stale
// invocation carries the call's key, which a safe-to-repeat tool dedupes.
func (d *ledgerDispatcher) leaseHeld() error {
	token, ok := d.c.FSM().LeaseToken(d.task.ID)
	if !ok {
		return fmt.Errorf("lease check: task %s: %w", d.task.ID, cluster.ErrNotFound)
	}
	if token != d.lease.Token {
		err := fmt.Errorf("task %s: lease %d is no longer held: %w", d.task.ID, d.lease.Token, cluster.ErrStaleToken)
		d.mu.Lock()
		d.fenced = err
		d.mu.Unlock()
		return err
	}
	return nil
}

// needsIntent reports whether a call to a tool of these semantics records an
// INTENT before it is invoked. Only unsafe and reconcile tools read it: an
// INTENT without RESULT makes the next attempt stop (unsafe) or ask the tool
// (reconcile). For read_only and idempotent tools the next attempt invokes
// again with the same key whether or not an INTENT exists, so it would be a
// Raft entry that changes nothing.
func needsIntent(s plugins.Semantics) bool { return s == plugins.Unsafe || s == plugins.Reconcile }

// record commits a call's result (or permanent error) and answers the guest.
// Transient failures are not recorded: the next attempt invokes again.
// Called without d.mu; it takes it for what it changes, not for the commit.
func (d *ledgerDispatcher) record(ctx context.Context, id, tool string, start time.Time, res plugins.Result, callErr error, reason string) ([]byte, error) {
	st, ok := abi.StatusOf(callErr)
	if !ok || st == abi.StatusBufferTooSmall || st == abi.StatusFault || st == abi.StatusInDoubt || st == abi.StatusBudgetExceeded {
		st = abi.StatusTransient // an unclassified tool failure may succeed later
	}
	if st == abi.StatusTransient {
		d.mu.Lock()
		defer d.mu.Unlock()
		if ctx.Err() != nil && d.fenced == nil {
			// The attempt's context ended (deadline, lost lease): say so plainly.
			return nil, fmt.Errorf("call %s: %w", tool, context.Cause(ctx))
		}
		d.lastTransient = true
		d.note(d.callEvent(ctx, id, tool, start, CallDetail{Outcome: OutcomeError, Status: st.String(), Reason: errText(callErr)}, nil))
		return nil, abi.Errorf(abi.StatusTransient, "%s", clipUTF8(statusless(callErr), maxReasonBytes))
	}
	body := res.Body
	if st == abi.StatusOK && len(body) > abi.MaxResponseBytes {
		// The guest could not take it anyway; record what it is told.
		st, callErr = abi.StatusToolError, abi.Errorf(abi.StatusToolError, "tool %s returned %d bytes, limit %d", tool, len(body), abi.MaxResponseBytes)
	}
	if st != abi.StatusOK {
		msg := errText(callErr)
		var ae *abi.Error
		if errors.As(callErr, &ae) {
			msg = ae.Message
		}
		body = abi.EncodeErrorBody(st, clipUTF8(msg, abi.MaxResponseBytes/2))
	}
	var usage json.RawMessage
	d.mu.Lock()
	d.lastTransient = false
	if res.Usage != nil {
		usage, _ = json.Marshal(res.Usage)
		d.spend.tokens += max(res.Usage.PromptTokens, 0) + max(res.Usage.CompletionTokens, 0)
		d.metrics.ObserveUsage(tool, d.task.Agent, *res.Usage)
	}
	d.mu.Unlock()
	ev := d.callEvent(ctx, id, tool, start, CallDetail{Outcome: OutcomeInvoked, Status: st.String(), Reason: reason}, res.Usage).Bounded()
	// Tool is set so the RESULT stands alone when no INTENT was recorded.
	rr := &cluster.RecordResult{TaskID: d.task.ID, Token: d.lease.Token, CallID: id, Tool: tool,
		Status: st.String(), Result: body, Usage: usage, Event: &ev, Now: d.now()}
	r, err := d.c.Apply(context.WithoutCancel(ctx), rr)
	if errors.Is(err, cluster.ErrTooLarge) {
		// The result cannot be recorded (its JSON grows past an entry
		// when escaped): record, and answer, what the guest is told.
		st = abi.StatusToolError
		body = abi.EncodeErrorBody(st, fmt.Sprintf("tool %s returned a result too large to record (%d bytes): %v", tool, len(body), err))
		rr.Status, rr.Result = st.String(), body
		r, err = d.c.Apply(context.WithoutCancel(ctx), rr)
	}
	if err != nil {
		return nil, d.proposeFailedLocked(err)
	}
	if lr, ok := r.(cluster.LedgerRecord); ok && lr.HasResult && lr.ResultAt != rr.Now {
		// The ledger already held a result for this call (the first
		// recorded wins): that is the answer, now and on every replay.
		return replay(lr)
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

// statusless is err's text without the status an *abi.Error inside it
// prints, keeping any context wrapped around it: the guest's error body
// names the status once, not "transient: transient: ...".
func statusless(err error) string {
	msg := errText(err)
	var ae *abi.Error
	if errors.As(err, &ae) && ae.Message != "" {
		msg = strings.Replace(msg, ae.Error(), ae.Message, 1)
	}
	return msg
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
