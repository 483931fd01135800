package host

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// Outbox dispatches the effects succeeded tasks staged with emit. Only the
// leader dispatches; each effect is invoked with its own idempotency key
// until the tool accepts or refuses it for good, then marked done through
// Raft. Delivery is at least once, deduplicated by the key: a leader that
// dies between the tool's answer and the mark makes its successor send the
// same key again.
type Outbox struct {
	c        Cluster
	tools    *plugins.Registry
	isLeader func() bool
	clock    func() time.Time
	log      hclog.Logger
	policy   cluster.RetryPolicy

	failures map[string]int       // effect key → transient failures so far
	notAfter map[string]time.Time // effect key → earliest next try
}

// NewOutbox builds the dispatcher; Run drives it.
func NewOutbox(c Cluster, tools *plugins.Registry, isLeader func() bool, clock func() time.Time, log hclog.Logger) *Outbox {
	if clock == nil {
		clock = time.Now
	}
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Outbox{c: c, tools: tools, isLeader: isLeader, clock: clock, log: log.Named("outbox"),
		policy:   cluster.RetryPolicy{Base: time.Second, Factor: 2, Cap: 5 * time.Minute},
		failures: map[string]int{}, notAfter: map[string]time.Time{}}
}

// Run dispatches until ctx ends, waking on every applied change and when a
// retry falls due.
func (o *Outbox) Run(ctx context.Context) {
	for {
		changed := o.c.FSM().Changed()
		wait := time.Second
		if o.isLeader() {
			if next, ok := o.dispatch(ctx); ok {
				wait = min(wait, max(time.Until(next), time.Millisecond))
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
		return o.clock().Add(time.Second), true
	}
	for _, e := range effects {
		if ctx.Err() != nil {
			return next, pending
		}
		if at, ok := o.notAfter[e.Key]; ok && o.clock().Before(at) {
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

func (o *Outbox) send(ctx context.Context, e cluster.Effect) (retryAt time.Time, retry bool) {
	log := o.log.With("task", e.TaskID, "effect", e.N, "tool", e.Tool)
	var failure string
	tool, ok := o.tools.Get(e.Tool)
	if !ok {
		failure = fmt.Sprintf("no tool %q on this node", e.Tool)
	} else {
		_, err := tool.Invoke(ctx, plugins.Call{ID: e.Key, TaskID: e.TaskID, Params: e.Params})
		st, classified := abi.StatusOf(err)
		switch {
		case err == nil:
		case !classified || st == abi.StatusTransient:
			n := o.failures[e.Key] + 1
			o.failures[e.Key] = n
			at := o.clock().Add(cluster.Backoff(o.policy, n, rand.Uint64()))
			o.notAfter[e.Key] = at
			log.Warn("effect failed; will retry", "error", err, "retry_at", at)
			return at, true
		default:
			failure = err.Error()
		}
	}
	_, err := o.c.Apply(ctx, &cluster.MarkEffectDone{TaskID: e.TaskID, N: e.N, Error: failure, Now: o.clock().UnixNano()})
	if err != nil {
		log.Warn("mark effect done", "error", err)
		return o.clock().Add(time.Second), true
	}
	delete(o.failures, e.Key)
	delete(o.notAfter, e.Key)
	if failure != "" {
		log.Error("effect failed permanently", "error", failure)
	}
	return time.Time{}, false
}
