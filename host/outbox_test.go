package host

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// succeededWithEffects commits a succeeded task whose outbox holds effects,
// without running a guest.
func (e *env) succeededWithEffects(id string, effects ...cluster.Effect) {
	e.t.Helper()
	now := time.Now().UnixNano()
	if _, err := e.node.FSM().Agent("fx", "v1"); err != nil {
		e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "fx", Version: "v1"}, Module: []byte("\x00asm"), Now: now})
	}
	e.apply(&cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: "fx", Version: "v1", Input: json.RawMessage(`{}`)}, Now: now})
	c, _ := e.apply(&cluster.ClaimTask{Node: "n1", TTL: time.Minute, Now: now}).(*cluster.Claim)
	if c == nil || c.Task.ID != id {
		e.t.Fatalf("claim = %+v, want task %s", c, id)
	}
	e.apply(&cluster.CompleteTask{TaskID: id, Token: c.Lease.Token, Output: json.RawMessage(`1`), Outbox: effects, Now: now})
}

// newIdleEnv is a node without workers. None of its users restarts it, so
// it is an in-memory one.
func newIdleEnv(t *testing.T, reg *plugins.Registry) *env {
	t.Helper()
	return newMemEnv(t, reg)
}

type outboxSetup struct {
	e     *env
	ob    *Outbox
	clock *fakeClock
	m     *Metrics
}

// newOutboxSetup: a node without workers and an outbox on a manual clock
// whose jitter is pinned at the top, so each delay is the policy's ceiling.
func newOutboxSetup(t *testing.T, tools ...plugins.Tool) outboxSetup {
	t.Helper()
	reg, err := plugins.NewRegistry(tools...)
	if err != nil {
		t.Fatal(err)
	}
	e := newIdleEnv(t, reg)
	clock := &fakeClock{now: time.Unix(1_000_000, 0)}
	m := NewMetrics(prometheus.NewRegistry())
	ob, err := NewOutbox(e.node, reg, e.node.IsLeader, OutboxConfig{
		Policy: cluster.RetryPolicy{Base: time.Second, Factor: 2, Cap: 10 * time.Second},
		Clock:  clock.Now, Jitter: func() uint64 { return math.MaxUint64 }, Logger: e.log, Metrics: m,
	})
	if err != nil {
		t.Fatal(err)
	}
	return outboxSetup{e: e, ob: ob, clock: clock, m: m}
}

// drain runs dispatch passes, moving the clock to each retry, until nothing
// is pending; it returns the delays it was asked to wait.
func (s outboxSetup) drain(t *testing.T) []time.Duration {
	t.Helper()
	var waits []time.Duration
	for range 100 {
		next, pending := s.ob.dispatch(context.Background())
		if !pending {
			return waits
		}
		waits = append(waits, next.Sub(s.clock.Now()))
		s.clock.Add(next.Sub(s.clock.Now()))
	}
	t.Fatal("the outbox never finished")
	return nil
}

func effectEvents(t *testing.T, e *env, id string) []cluster.Event {
	t.Helper()
	var out []cluster.Event
	for _, ev := range e.journal(id) {
		if strings.HasPrefix(string(ev.Type), "effect_") {
			out = append(out, ev)
		}
	}
	return out
}

// TestOutboxPanickingToolFailsAfterBoundedTries: a tool that panics on every
// dispatch is tried DefaultEffectTries times with capped backoff, then its
// effect is marked failed through Raft with the panic's message (journal
// and metrics say so), and the node goes on serving.
func TestOutboxPanickingToolFailsAfterBoundedTries(t *testing.T) {
	t.Parallel()
	var tries atomic.Int32
	boom := plugins.NewStub("boom", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		tries.Add(1)
		panic("kaboom")
	})
	s := newOutboxSetup(t, boom)
	s.e.succeededWithEffects("t", cluster.Effect{Tool: "boom", Params: json.RawMessage(`{}`), Key: "k-boom"})

	waits := s.drain(t)
	if n := tries.Load(); n != DefaultEffectTries {
		t.Fatalf("tool tried %d times, want %d", n, DefaultEffectTries)
	}
	want := []time.Duration{1, 2, 4, 8, 10, 10, 10} // seconds: doubling, capped
	if len(waits) != len(want) {
		t.Fatalf("waited %v, want %d waits", waits, len(want))
	}
	for i, w := range waits {
		if d := want[i] * time.Second; w < d-time.Millisecond || w > d {
			t.Fatalf("wait %d = %s, want %s (all %v)", i, w, d, waits)
		}
	}
	eff, _ := s.e.node.FSM().Outbox("t")
	if len(eff) != 1 || !eff[0].Done || !strings.Contains(eff[0].Error, "panic in tool boom: kaboom") {
		t.Fatalf("effect = %+v, want done with the panic's message", eff)
	}
	ev := effectEvents(t, s.e, "t")
	if len(ev) != 1 || ev[0].Type != "effect_failed" || !strings.Contains(ev[0].Message, "kaboom") ||
		!strings.Contains(ev[0].Message, "gave up after 8 tries") || strings.Contains(ev[0].Message, "goroutine") {
		t.Fatalf("journal = %+v, want one effect_failed naming the panic, without a stack", ev)
	}
	if got := testutil.ToFloat64(s.m.effects.done.WithLabelValues("boom", string(EffectFailed))); got != 1 {
		t.Fatalf("orloj_effects_total{boom,failed} = %v", got)
	}
	if got := testutil.ToFloat64(s.m.effects.retries.WithLabelValues("boom")); got != DefaultEffectTries-1 {
		t.Fatalf("orloj_effect_retries_total{boom} = %v", got)
	}
	// Still serving: the node applies, and a later pass has nothing to do.
	s.e.apply(&cluster.AppendJournal{TaskID: "t", Events: []cluster.Event{{Type: "note"}}, Now: 1})
	if _, pending := s.ob.dispatch(context.Background()); pending || tries.Load() != DefaultEffectTries {
		t.Fatal("a failed effect was tried again")
	}
}

// TestOutboxPanicThenWorks: a tool that panics twice, then accepts, is
// dispatched once; a permanent refusal fails at once; an effect for a tool
// this node lacks fails under the "unregistered" label.
func TestOutboxPanicThenWorks(t *testing.T) {
	t.Parallel()
	var calls atomic.Int32
	var keys sync.Map
	flaky := plugins.NewStub("flaky", plugins.Idempotent, func(_ context.Context, c plugins.Call) (plugins.Result, error) {
		keys.Store(c.ID, true)
		if calls.Add(1) <= 2 {
			panic("not yet")
		}
		return plugins.Result{Body: json.RawMessage(`{}`)}, nil
	})
	refuse := plugins.NewStub("refuse", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		return plugins.Result{}, abi.Errorf(abi.StatusToolError, "bad request")
	})
	s := newOutboxSetup(t, flaky, refuse)
	s.e.succeededWithEffects("t",
		cluster.Effect{Tool: "flaky", Params: json.RawMessage(`{}`), Key: "k-flaky"},
		cluster.Effect{Tool: "refuse", Params: json.RawMessage(`{}`), Key: "k-refuse"},
		cluster.Effect{Tool: "gone", Params: json.RawMessage(`{}`), Key: "k-gone"})

	if waits := s.drain(t); len(waits) != 2 {
		t.Fatalf("waited %v, want the two retries of flaky", waits)
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("flaky invoked %d times, want 3", n)
	}
	n := 0
	keys.Range(func(k, _ any) bool { n++; return k == "k-flaky" })
	if n != 1 {
		t.Fatal("the retries did not all carry the effect's key")
	}
	got := map[string]string{}
	for _, ev := range effectEvents(t, s.e, "t") {
		got[ev.Tool] = string(ev.Type)
	}
	if got["flaky"] != "effect_dispatched" || got["refuse"] != "effect_failed" || got["gone"] != "effect_failed" || len(got) != 3 {
		t.Fatalf("journal effects = %v", got)
	}
	for _, c := range []struct {
		tool   string
		result EffectResult
		want   float64
	}{{"flaky", EffectDispatched, 1}, {"flaky", EffectFailed, 0}, {"refuse", EffectFailed, 1}, {"unregistered", EffectFailed, 1}} {
		if v := testutil.ToFloat64(s.m.effects.done.WithLabelValues(c.tool, string(c.result))); v != c.want {
			t.Errorf("orloj_effects_total{%s,%s} = %v, want %v", c.tool, c.result, v, c.want)
		}
	}
	if v := testutil.ToFloat64(s.m.effects.retries.WithLabelValues("flaky")); v != 2 {
		t.Errorf("orloj_effect_retries_total{flaky} = %v, want 2", v)
	}
}

// TestOutboxRunSurvivesPanics: the Run loop itself, on the real clock with
// a millisecond policy: an effect whose tool always panics ends failed, and
// the loop still dispatches an effect committed after it.
func TestOutboxRunSurvivesPanics(t *testing.T) {
	t.Parallel()
	boom := plugins.NewStub("boom", plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		panic("kaboom")
	})
	sent := make(chan string, 1)
	notify := plugins.NewStub("notify", plugins.Idempotent, func(_ context.Context, c plugins.Call) (plugins.Result, error) {
		sent <- c.TaskID
		return plugins.Result{Body: json.RawMessage(`{}`)}, nil
	})
	reg, _ := plugins.NewRegistry(boom, notify)
	e := newIdleEnv(t, reg)
	ob, err := NewOutbox(e.node, reg, e.node.IsLeader, OutboxConfig{Policy: cluster.RetryPolicy{Base: time.Millisecond, Factor: 2, Cap: time.Millisecond}, Logger: e.log})
	if err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ob.Start(context.Background()); !errors.Is(err, ErrServiceStarted) {
		t.Fatalf("second Start = %v, want ErrServiceStarted", err)
	}
	t.Cleanup(ob.Stop)

	e.succeededWithEffects("a", cluster.Effect{Tool: "boom", Params: json.RawMessage(`{}`), Key: "k-a"})
	for {
		changed := e.node.FSM().Changed()
		if ev := effectEvents(t, e, "a"); len(ev) == 1 {
			if ev[0].Type != "effect_failed" {
				t.Fatalf("journal = %+v", ev)
			}
			break
		}
		select {
		case <-changed:
		case <-time.After(settle):
			t.Fatal("the panicking effect was never marked failed")
		}
	}
	e.succeededWithEffects("b", cluster.Effect{Tool: "notify", Params: json.RawMessage(`{}`), Key: "k-b"})
	select {
	case id := <-sent:
		if id != "b" {
			t.Fatalf("dispatched for %s", id)
		}
	case <-time.After(settle):
		t.Fatal("the outbox stopped dispatching after a panic")
	}
}

func TestNewOutboxRefusesNilDependencies(t *testing.T) {
	t.Parallel()
	reg, _ := plugins.NewRegistry()
	var fwd *Forwarder // typed nil: the wiring mistake an interface hides
	if _, err := NewOutbox(fwd, reg, func() bool { return true }, OutboxConfig{}); err == nil || !strings.Contains(err.Error(), "cluster is nil") {
		t.Fatalf("NewOutbox(nil forwarder) = %v", err)
	}
	if _, err := NewKVBackend(fwd, func() int64 { return 0 }); err == nil || !strings.Contains(err.Error(), "cluster is nil") {
		t.Fatalf("NewKVBackend(nil forwarder) = %v", err)
	}
}

// TestOutboxKVEffect: a kv effect's write is applied in the entry that marks
// it dispatched, not staged (its task has no lease any more); a delete
// removes; a bad op is refused for good.
func TestOutboxKVEffect(t *testing.T) {
	t.Parallel()
	s := newOutboxSetup(t)
	backend, err := NewKVBackend(s.e.node, func() int64 { return 1 })
	if err != nil {
		t.Fatal(err)
	}
	if err := s.e.tools.Register(plugins.NewKV(backend)); err != nil {
		t.Fatal(err)
	}
	s.e.succeededWithEffects("t",
		cluster.Effect{Tool: "kv", Params: json.RawMessage(`{"op":"put","key":"a","value":{"n":1}}`), Key: "k0"},
		cluster.Effect{Tool: "kv", Params: json.RawMessage(`{"op":"put","key":"b","value":2}`), Key: "k1"},
		cluster.Effect{Tool: "kv", Params: json.RawMessage(`{"op":"delete","key":"b"}`), Key: "k2"},
		cluster.Effect{Tool: "kv", Params: json.RawMessage(`{"op":"swap","key":"c"}`), Key: "k3"})
	if waits := s.drain(t); len(waits) != 0 {
		t.Fatalf("kv effects were retried: %v", waits)
	}
	if v, ok, _ := s.e.node.FSM().KV("a"); !ok || string(v) != `{"n":1}` {
		t.Fatalf("kv a = %s %v", v, ok)
	}
	if _, ok, _ := s.e.node.FSM().KV("b"); ok {
		t.Fatal("kv b survived its delete")
	}
	var types []string
	for _, ev := range effectEvents(t, s.e, "t") {
		types = append(types, string(ev.Type))
	}
	if strings.Join(types, ",") != "effect_dispatched,effect_dispatched,effect_dispatched,effect_failed" {
		t.Fatalf("journal effects = %v", types)
	}
	if v := testutil.ToFloat64(s.m.effects.done.WithLabelValues("kv", string(EffectDispatched))); v != 3 {
		t.Fatalf("orloj_effects_total{kv,dispatched} = %v", v)
	}
}
