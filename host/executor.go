package host

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// stderrTail is how much of an attempt's stderr a failure keeps.
const stderrTail = 4 << 10

// Executor runs one attempt of a claimed task: sandbox, ledger dispatcher,
// lease renewal, and the completion or classified failure it reports.
type Executor struct {
	c       Cluster
	rt      *sandbox.Runtime
	tools   *plugins.Registry
	clock   func() time.Time
	log     hclog.Logger
	modules sync.Map // digest → *sandbox.Module
	metrics *Metrics // nil: not recorded
	tracing *Tracing // nil: no spans
	// renewEvery overrides TTL/3 (tests).
	renewEvery time.Duration
	batch      int            // calls of one batch run at once
	declared   *DeclaredTools // nil: built-in tools only
	rehearse   bool           // WithRehearsal
	rehearsed  sync.Map       // task ID → struct{}: its rehearsal is done
}

// ExecutorOption adjusts an Executor at construction.
type ExecutorOption func(*Executor)

// WithMetrics records attempts, tool calls and the executor's Raft proposals
// in m.
func WithMetrics(m *Metrics) ExecutorOption {
	return func(e *Executor) {
		e.metrics = m
		e.c = m.Instrument(e.c)
	}
}

// WithBatchConcurrency bounds how many calls of one call_batch run at once
// (default DefaultBatchConcurrency; n < 1 means the default).
func WithBatchConcurrency(n int) ExecutorOption {
	return func(e *Executor) {
		if n >= 1 {
			e.batch = n
		}
	}
}

// WithRehearsal makes the first attempt of each task that would succeed
// fail as transient instead, after its calls are recorded: the next
// attempt then replays them, as a retry on another node would. It is for
// orlojd run --retry, which shows a local agent's replay; a node never
// sets it.
func WithRehearsal() ExecutorOption {
	return func(e *Executor) { e.rehearse = true }
}

// NewExecutor builds an executor.
func NewExecutor(c Cluster, rt *sandbox.Runtime, tools *plugins.Registry, clock func() time.Time, log hclog.Logger, opts ...ExecutorOption) *Executor {
	if clock == nil {
		clock = time.Now
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	e := &Executor{c: c, rt: rt, tools: tools, clock: clock, log: log.Named("executor"), batch: DefaultBatchConcurrency}
	for _, o := range opts {
		o(e)
	}
	return e
}

// AttemptReport says how an attempt ended, for the worker's logs and tests.
type AttemptReport struct {
	TaskID    string
	Attempt   int
	Succeeded bool
	Class     cluster.ErrorClass // when it failed
	Err       error              // the failure, or why nothing could be reported
	LeaseLost bool               // another worker owns the task; nothing was reported
	Suspended bool               // the attempt stopped at a wait; the task is waiting
	Result    sandbox.Result
	// Output is what the guest wrote as the task's output, when it ran to
	// its end (also for a rehearsed attempt, whose output is not kept).
	Output json.RawMessage
}

// outcome names how the attempt ended, for the metrics and the attempt's
// span: lease_lost, succeeded, suspended, an error class, or error (the end
// could not be reported).
func (rep AttemptReport) outcome() string {
	switch {
	case rep.LeaseLost:
		return "lease_lost"
	case rep.Succeeded:
		return "succeeded"
	case rep.Suspended:
		return "suspended"
	case rep.Class != "":
		return string(rep.Class)
	}
	return "error"
}

func (e *Executor) module(ctx context.Context, agent cluster.Agent) (*sandbox.Module, error) {
	if m, ok := e.modules.Load(agent.Digest); ok {
		return m.(*sandbox.Module), nil
	}
	wasm, err := e.c.FSM().Module(agent.Digest)
	if err != nil {
		return nil, fmt.Errorf("load module of %s@%s: %w", agent.Name, agent.Version, err)
	}
	m, err := e.rt.Compile(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("compile %s@%s: %w", agent.Name, agent.Version, err)
	}
	if m.Kind() == sandbox.ModuleReactor {
		if err := m.Preinitialized(); err != nil {
			e.log.Warn("reactor cannot be pre-initialized; every attempt runs its initialization",
				"agent", agent.Name, "version", agent.Version, "error", err)
		}
	}
	e.modules.Store(agent.Digest, m)
	return m, nil
}

// Run executes the attempt a claim grants and reports its end to the cluster.
func (e *Executor) Run(ctx context.Context, claim *cluster.Claim) (rep AttemptReport) {
	start := time.Now()
	defer func() { e.metrics.ObserveAttempt(rep, time.Since(start)) }()
	ctx, span := e.tracing.startAttempt(ctx, claim)
	defer func() { e.tracing.endAttempt(span, rep) }()
	task, lease := claim.Task, claim.Lease
	rep = AttemptReport{TaskID: task.ID, Attempt: lease.Attempt}
	log := e.log.With("task", task.ID, "attempt", lease.Attempt, "token", lease.Token)

	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.keepLease(runCtx, cancel, lease, log)
	}()
	stopRenew := func() { cancel(context.Canceled); wg.Wait() }

	agent, err := e.c.FSM().Agent(task.Agent, task.Version)
	var mod *sandbox.Module
	if err == nil {
		mod, err = e.module(runCtx, agent)
	}
	if err != nil {
		stopRenew()
		class := cluster.ClassTransient
		if errors.Is(err, sandbox.ErrInvalidModule) || errors.Is(err, cluster.ErrUnknownAgent) {
			class = cluster.ClassPermanent
		}
		return e.fail(ctx, rep, lease, cluster.TaskError{Class: class, Message: err.Error()}, nil, log)
	}
	agent = e.withApprovals(task, agent)
	tools, err := e.toolsFor(task, agent)
	if err != nil {
		stopRenew()
		return e.fail(ctx, rep, lease, cluster.TaskError{Class: toolsError(err), Message: err.Error()}, nil, log)
	}
	d, err := newLedgerDispatcher(e.c, tools, claim, agent, e.clock, log)
	if err != nil {
		stopRenew()
		return e.fail(ctx, rep, lease, cluster.TaskError{Class: cluster.ClassTransient, Message: err.Error()}, nil, log)
	}
	d.metrics, d.tracing = e.metrics, e.tracing
	d.batchLimit = e.batch
	timeout := cmp.Or(agent.Manifest.Timeout, sandbox.DefaultTimeout)
	left, limited := d.spend.remaining()
	if limited && left <= 0 {
		stopRenew()
		berr := d.spend.deadline()
		e.metrics.ObserveBudgetExceeded(berr.Kind)
		return e.fail(ctx, rep, lease, cluster.TaskError{Class: cluster.ClassBudget, Message: berr.Error()}, nil, log)
	}
	budgetBound := limited && left < timeout
	if budgetBound {
		timeout = left
	}
	res := e.rt.Run(runCtx, mod, sandbox.RunConfig{
		TaskID:      task.ID,
		Name:        agent.Name,
		MemoryLimit: agent.Manifest.MemoryLimit,
		Timeout:     timeout,
		Dispatcher:  d,
	})
	res = logHostFault(res, log)
	if res.Outcome == sandbox.OutcomeSuspended && d.isSuspended() {
		// Suspend released the lease and ended the attempt: nothing more
		// to report (the renewer, refused now, stops with it).
		stopRenew()
		rep.Result, rep.Suspended = res, true
		log.Debug("attempt suspended at a wait", "duration", res.Duration)
		return rep
	}
	lost := errors.Is(context.Cause(runCtx), errLeaseLost) || d.fenced != nil
	stopRenew()
	rep.Result = res
	if lost {
		rep.LeaseLost = true
		rep.Err = fmt.Errorf("task %s attempt %d: %w", task.ID, lease.Attempt, errLeaseLost)
		log.Warn("lease lost; attempt abandoned", "outcome", res.Outcome.String())
		return rep
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if budgetBound && res.Outcome == sandbox.OutcomeDeadline {
		e.metrics.ObserveBudgetExceeded(d.spend.deadline().Kind)
	}
	d.summarize()
	if res.Outcome == sandbox.OutcomeSuccess {
		rep.Output = d.output
	}
	if res.Outcome == sandbox.OutcomeSuccess && d.inDoubt == "" && d.spend.tripped == nil && e.rehearseOnce(task.ID) {
		te := cluster.TaskError{Class: cluster.ClassTransient,
			Message: fmt.Sprintf("rehearsal: attempt %d ran to its end; the next attempt replays its calls", lease.Attempt)}
		return e.fail(ctx, rep, lease, te, d.events, log)
	}
	if res.Outcome == sandbox.OutcomeSuccess && d.inDoubt == "" && d.spend.tripped == nil {
		done, err := e.complete(ctx, d, task, lease)
		if done {
			rep.Err = err
			rep.LeaseLost = errors.Is(err, cluster.ErrStaleToken)
			rep.Succeeded = err == nil
			if err != nil {
				log.Warn("complete", "error", err)
			} else {
				log.Debug("attempt succeeded", "duration", res.Duration)
			}
			return rep
		}
		// The completion is over a limit: the task cannot succeed as it is.
		return e.fail(ctx, rep, lease, cluster.TaskError{Class: cluster.ClassPermanent, Message: err.Error()}, d.events, log)
	}
	return e.fail(ctx, rep, lease, classify(res, d), d.events, log)
}

// rehearseOnce reports whether this successful attempt is the task's
// rehearsal (WithRehearsal): true once per task.
func (e *Executor) rehearseOnce(taskID string) bool {
	if !e.rehearse {
		return false
	}
	_, done := e.rehearsed.LoadOrStore(taskID, struct{}{})
	return !done
}

// complete reports a successful attempt. A completion too large for one
// entry journals its events on their own first; if it is still too large
// (the output and the outbox are what remain), done is false and err says
// why: the attempt must be failed instead.
func (e *Executor) complete(ctx context.Context, d *ledgerDispatcher, task cluster.Task, lease cluster.Lease) (done bool, err error) {
	size := len(d.output) + d.effectBytes + 256*len(d.effects) + d.eventBytes
	if size > cluster.MaxCommandBytes/2 {
		if err := d.flush(ctx, true); err != nil {
			return true, fmt.Errorf("complete task %s: journal: %w", task.ID, err)
		}
	}
	_, err = e.c.Apply(ctx, &cluster.CompleteTask{TaskID: task.ID, Token: lease.Token, Output: d.output,
		Outbox: d.effects, Journal: d.events, Now: e.clock().UnixNano()})
	switch {
	case errors.Is(err, cluster.ErrTooLarge):
		if d.flush(ctx, true) != nil {
			d.events = nil // the failure must fit; it says why
		}
		return false, fmt.Errorf("the attempt's completion cannot be recorded (output %d bytes, %d effects): %w", len(d.output), len(d.effects), err)
	case err != nil:
		return true, fmt.Errorf("complete task %s: %w", task.ID, err)
	}
	return true, nil
}

func (e *Executor) fail(ctx context.Context, rep AttemptReport, lease cluster.Lease, te cluster.TaskError, events []cluster.Event, log hclog.Logger) AttemptReport {
	if len(rep.Result.Stderr) > 0 {
		te.StderrTail = string(rep.Result.Stderr[max(len(rep.Result.Stderr)-stderrTail, 0):])
	}
	te = te.Bounded()
	rep.Class, rep.Err = te.Class, errors.New(te.Message)
	_, err := e.c.Apply(ctx, &cluster.FailAttempt{TaskID: lease.TaskID, Token: lease.Token, Error: te, Journal: events,
		Jitter: rand.Uint64(), Now: e.clock().UnixNano()})
	if err != nil {
		rep.Err = fmt.Errorf("report failure of task %s: %w (failure: %s)", lease.TaskID, err, te.Message)
		rep.LeaseLost = errors.Is(err, cluster.ErrStaleToken)
	}
	log.Info("attempt failed", "class", te.Class, "error", te.Message)
	return rep
}

// classify decides what a failed attempt means for its task.
func classify(res sandbox.Result, d *ledgerDispatcher) cluster.TaskError {
	msg := "attempt failed"
	if res.Err != nil {
		msg = res.Err.Error()
	}
	switch {
	case d.inDoubt != "":
		return cluster.TaskError{Class: cluster.ClassInDoubt, Message: d.inDoubt}
	case d.spend.tripped != nil:
		return cluster.TaskError{Class: cluster.ClassBudget, Message: d.spend.tripped.Error()}
	case res.Outcome == sandbox.OutcomeGuestError && res.ExitCode == abi.ExitTransient:
		return cluster.TaskError{Class: cluster.ClassTransient, Message: msg}
	case d.denied != "" && res.Outcome == sandbox.OutcomeGuestError:
		return cluster.TaskError{Class: cluster.ClassPolicy, Message: fmt.Sprintf("tool %s denied by the agent's manifest; %s", d.denied, msg)}
	case res.Outcome == sandbox.OutcomeGuestError && d.lastTransient:
		// The guest gave up right after a transient tool failure.
		return cluster.TaskError{Class: cluster.ClassTransient, Message: msg}
	case res.Outcome == sandbox.OutcomeGuestError, res.Outcome == sandbox.OutcomeInvalidModule:
		return cluster.TaskError{Class: cluster.ClassPermanent, Message: msg}
	default:
		// Trap, deadline, memory limit, host fault: retried under the
		// policy, so a guest that fails this way every time reaches the DLQ
		// after max_attempts.
		return cluster.TaskError{Class: cluster.ClassTransient, Message: msg}
	}
}

// keepLease renews every TTL/3. A rejected or timed-out renewal, or none
// accepted before the lease would expire, cancels the attempt at once.
func (e *Executor) keepLease(ctx context.Context, cancel context.CancelCauseFunc, lease cluster.Lease, log hclog.Logger) {
	every := e.renewEvery
	if every <= 0 {
		every = lease.TTL / 3
	}
	t := time.NewTicker(every)
	defer t.Stop()
	validUntil := lease.ExpiresAt
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := e.clock().UnixNano()
		// A renewal that has not committed by the time the lease would
		// lapse has timed out: past that point another worker may hold it.
		rctx, rcancel := context.WithTimeout(ctx, max(time.Duration(validUntil-now), time.Millisecond))
		r, err := e.c.Apply(rctx, &cluster.RenewLease{TaskID: lease.TaskID, Token: lease.Token, TTL: lease.TTL, Now: now})
		rcancel()
		switch {
		case err == nil:
			validUntil = r.(cluster.Lease).ExpiresAt
		case errors.Is(err, cluster.ErrStaleToken), errors.Is(err, cluster.ErrNotFound),
			errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
			log.Warn("lease renewal rejected or timed out; stopping the attempt", "error", err)
			cancel(errLeaseLost)
			return
		case ctx.Err() != nil:
			return
		default:
			log.Warn("lease renewal failed", "error", err)
			if e.clock().UnixNano() >= validUntil {
				cancel(errLeaseLost)
				return
			}
		}
	}
}
