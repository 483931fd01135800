package host

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// DefaultEffectTries is how often the outbox tries one effect (the first
// dispatch included) before it marks it failed: with the default policy the
// last try comes within about four minutes of the first.
const DefaultEffectTries = 8

// OutboxConfig configures the outbox. Start from DefaultOutboxConfig.
type OutboxConfig struct {
	// Policy spaces the tries of a failing effect: capped exponential
	// backoff with full jitter (MaxAttempts is not used; MaxTries is).
	Policy cluster.RetryPolicy
	// MaxTries bounds the tries of one effect that fails transiently or
	// panics; after the last, the effect is marked failed with its error.
	MaxTries int
	Clock    func() time.Time
	Jitter   func() uint64 // uniform random; tests pin it
	Logger   hclog.Logger
	Metrics  *Metrics // nil records nothing
	// Declared builds the declared tools an effect's task pinned; nil
	// dispatches to built-in tools only.
	Declared *DeclaredTools
}

// DefaultOutboxConfig: tries 1 s apart doubling up to 5 min, 8 tries.
func DefaultOutboxConfig() OutboxConfig {
	return OutboxConfig{Policy: cluster.RetryPolicy{Base: time.Second, Factor: 2, Cap: 5 * time.Minute},
		MaxTries: DefaultEffectTries, Clock: time.Now, Jitter: rand.Uint64}
}

// Outbox dispatches the effects succeeded tasks staged with emit. Only the
// leader dispatches; each effect is invoked with its own idempotency key
// until the tool accepts it, refuses it for good, or MaxTries tries failed,
// then marked done (or failed, with the error: the journal shows
// effect_failed) through Raft. A tool that panics is one failed try, never a
// crash. Delivery is at least once, deduplicated by the key: a leader that
// dies between the tool's answer and the mark makes its successor send the
// same key again. A kv effect's write commits with the mark, so it is
// applied once.
//
// Tries are counted by the leader in memory: a new leader starts counting
// again, so an effect may get up to MaxTries tries per leader.
type Outbox struct {
	c        Cluster
	tools    *plugins.Registry
	isLeader func() bool
	cfg      OutboxConfig
	log      hclog.Logger
	tries    *backoffs // by effect key
	service
}

// NewOutbox builds the dispatcher; Start runs it. Zero fields of cfg take
// DefaultOutboxConfig's values.
func NewOutbox(c Cluster, tools *plugins.Registry, isLeader func() bool, cfg OutboxConfig) (*Outbox, error) {
	if err := requireDeps("outbox", namedDep{"cluster", c}, namedDep{"tools", tools}, namedDep{"isLeader", isLeader}); err != nil {
		return nil, err
	}
	d := DefaultOutboxConfig()
	if cfg.Policy == (cluster.RetryPolicy{}) {
		cfg.Policy = d.Policy
	}
	if cfg.MaxTries <= 0 {
		cfg.MaxTries = d.MaxTries
	}
	if cfg.Clock == nil {
		cfg.Clock = d.Clock
	}
	if cfg.Jitter == nil {
		cfg.Jitter = d.Jitter
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return &Outbox{c: c, tools: tools, isLeader: isLeader, cfg: cfg, log: cfg.Logger.Named("outbox"),
		tries: newBackoffs(cfg.Policy, cfg.Jitter)}, nil
}

// Start runs the dispatcher until Stop or until ctx ends.
func (o *Outbox) Start(ctx context.Context) error { return o.start(ctx, "outbox", o.log, o.run) }

// Stop ends the dispatcher and waits for it: an effect being sent is
// abandoned (its context ends) and tried again later, by this leader or
// the next.
func (o *Outbox) Stop() { o.stop() }

// run dispatches until ctx ends, waking on every applied change and when a
// retry falls due. A pass that panics is logged and the loop goes on.
func (o *Outbox) run(ctx context.Context) {
	for {
		changed := o.c.FSM().Changed()
		wait := time.Second
		if o.isLeader() {
			var next time.Time
			var pending bool
			_ = CatchPanic(o.log, "outbox pass", func() error {
				next, pending = o.dispatch(ctx)
				return nil
			})
			if pending {
				wait = min(wait, max(next.Sub(o.cfg.Clock()), time.Millisecond))
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// dispatch sends every pending effect that is due and returns when the next
// backed-off one will be.
func (o *Outbox) dispatch(ctx context.Context) (next time.Time, pending bool) {
	effects, err := o.c.FSM().PendingEffects()
	if err != nil {
		o.log.Error("list pending effects", "error", err)
		return o.cfg.Clock().Add(time.Second), true
	}
	o.forgetDone(effects)
	for _, e := range effects {
		if ctx.Err() != nil {
			return next, pending
		}
		if at, ok := o.tries.ready(e.Key, o.cfg.Clock()); !ok {
			if !pending || at.Before(next) {
				next, pending = at, true
			}
			continue
		}
		if at, retry := o.send(ctx, e); retry {
			if !pending || at.Before(next) {
				next, pending = at, true
			}
		}
	}
	return next, pending
}

// forgetDone drops the retry state of effects no longer pending (marked
// done by this leader or an earlier one).
func (o *Outbox) forgetDone(pending []cluster.Effect) {
	keep := make(map[string]bool, len(pending))
	for _, e := range pending {
		keep[e.Key] = true
	}
	o.tries.retain(func(k string) bool { return keep[k] })
}

// declared resolves an effect's tool among the declared tools its task
// pinned. failure is set when the tool cannot be built.
func (o *Outbox) declared(e cluster.Effect) (tool plugins.Tool, ok bool, failure string) {
	task, err := o.c.FSM().Task(e.TaskID)
	if err != nil {
		return nil, false, ""
	}
	tool, ok, err = o.cfg.Declared.forTask(task, e.Tool)
	if err != nil {
		return nil, false, err.Error()
	}
	return tool, ok, ""
}

// toolLabel is the metric label for an effect's tool: a guest chose the
// name, so only registered names become labels.
func (o *Outbox) toolLabel(name string) string {
	if _, ok := o.tools.Get(name); ok {
		return name
	}
	return "unregistered"
}

func (o *Outbox) send(ctx context.Context, e cluster.Effect) (retryAt time.Time, retry bool) {
	log := o.log.With("task", e.TaskID, "effect", e.N, "tool", e.Tool)
	label := o.toolLabel(e.Tool)
	var failure string
	var writes []cluster.KVWrite
	tool, ok := o.tools.Get(e.Tool)
	if !ok && o.cfg.Declared != nil {
		tool, ok, failure = o.declared(e)
	}
	switch {
	case failure != "":
	case !ok:
		failure = fmt.Sprintf("no tool %q on this node", e.Tool)
	default:
		ectx, collected := withEffect(ctx)
		err := CatchPanic(log, "tool "+e.Tool, func() error {
			_, err := tool.Invoke(ectx, plugins.Call{ID: e.Key, TaskID: e.TaskID, Params: e.Params})
			return err
		})
		st, classified := abi.StatusOf(err)
		switch {
		case err == nil:
			writes = collected.list()
		case ctx.Err() != nil:
			return time.Time{}, false // stopping or no longer leading: not the effect's fault
		case !classified || st == abi.StatusTransient:
			if n := o.tries.failures(e.Key) + 1; n >= o.cfg.MaxTries {
				failure = fmt.Sprintf("gave up after %d tries: %v", n, err)
				break
			}
			n, at := o.tries.fail(e.Key, o.cfg.Clock())
			o.cfg.Metrics.ObserveEffectRetry(label)
			log.Warn("effect failed; will retry", "error", err, "tries", n, "max_tries", o.cfg.MaxTries, "retry_at", at)
			return at, true
		default:
			failure = err.Error()
		}
	}
	failure = clipUTF8(failure, cluster.MaxErrorMessageBytes)
	mark := &cluster.MarkEffectDone{TaskID: e.TaskID, N: e.N, Error: failure, Writes: writes, Now: o.cfg.Clock().UnixNano()}
	_, err := o.c.Apply(ctx, mark)
	if err != nil && len(writes) > 0 && (errors.Is(err, cluster.ErrInvalidCmd) || errors.Is(err, cluster.ErrTooLarge)) {
		// The replicas refused the writes: record the effect as failed
		// with the reason rather than offer them again.
		failure = clipUTF8("kv writes refused: "+err.Error(), cluster.MaxErrorMessageBytes)
		mark.Error, mark.Writes = failure, nil
		_, err = o.c.Apply(ctx, mark)
	}
	if err != nil {
		log.Warn("mark effect done", "error", err)
		at := o.cfg.Clock().Add(time.Second)
		o.tries.holdUntil(e.Key, at)
		return at, true
	}
	o.tries.forget(e.Key)
	if failure != "" {
		o.cfg.Metrics.ObserveEffect(label, EffectFailed)
		log.Error("effect failed permanently", "error", failure)
	} else {
		o.cfg.Metrics.ObserveEffect(label, EffectDispatched)
	}
	return time.Time{}, false
}
