package host

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
)

// TestRoutinesReportPanics: a goroutine that panics is reported with its
// name and value, the others run to the end, and Wait waits for all.
func TestRoutinesReportPanics(t *testing.T) {
	t.Parallel()
	var reported []*PanicError
	var ran atomic.Int32
	r := Routines{Logger: testLogger(t), OnPanic: func(pe *PanicError) { reported = append(reported, pe) }}
	release := make(chan struct{})
	r.Go("slow", func() { <-release; ran.Add(1) })
	r.Go("broken", func() { panic("boom") })
	done := make(chan struct{})
	go func() { r.Wait(); close(done) }()
	select {
	case <-done:
		t.Fatal("Wait returned while a goroutine still ran")
	case <-time.After(20 * time.Millisecond):
	}
	close(release)
	<-done
	if ran.Load() != 1 || len(reported) != 1 || reported[0].In != "broken" || reported[0].Value != "boom" ||
		!strings.Contains(reported[0].Error(), "error id") {
		t.Fatalf("ran %d, reported %+v", ran.Load(), reported)
	}
}

type loopService struct {
	service
	runs atomic.Int32
}

func (l *loopService) Start(ctx context.Context) error {
	return l.start(ctx, "loop", nil, func(ctx context.Context) { l.runs.Add(1); <-ctx.Done() })
}

// TestServiceStartStop: Start runs the loop once, a second Start is
// refused, Stop waits for the loop, and the service starts again after.
func TestServiceStartStop(t *testing.T) {
	t.Parallel()
	var l loopService
	l.stop() // before Start: a no-op
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); !errors.Is(err, ErrServiceStarted) {
		t.Fatalf("second Start = %v, want ErrServiceStarted", err)
	}
	l.stop()
	if err := l.Start(context.Background()); err != nil {
		t.Fatalf("Start after Stop: %v", err)
	}
	l.stop()
	if n := l.runs.Load(); n != 2 {
		t.Fatalf("loop ran %d times, want 2", n)
	}
}

// TestBackoffs: failures count per key and space tries by the policy;
// holding a key does not count a failure; retain and forget drop state.
func TestBackoffs(t *testing.T) {
	t.Parallel()
	b := newBackoffs(cluster.RetryPolicy{Base: time.Second, Factor: 2, Cap: 4 * time.Second}, func() uint64 { return ^uint64(0) })
	now := time.Unix(1000, 0)
	if _, ok := b.ready("a", now); !ok {
		t.Fatal("a key never tried is not ready")
	}
	var last time.Time
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		n, at := b.fail("a", now)
		if n != i+1 || at.Sub(now) > want || at.Before(now) {
			t.Fatalf("failure %d: tries %d, next in %s, want at most %s", i+1, n, at.Sub(now), want)
		}
		last = at
	}
	if at, ok := b.ready("a", now); ok || !at.Equal(last) {
		t.Fatalf("ready before its time: %v %v", at, ok)
	}
	if _, ok := b.ready("a", last); !ok {
		t.Fatal("not ready when due")
	}
	b.holdUntil("b", now.Add(time.Minute))
	if _, ok := b.ready("b", now); ok || b.failures("b") != 0 {
		t.Fatalf("hold: ready %v, failures %d", ok, b.failures("b"))
	}
	b.retain(func(k string) bool { return k == "a" })
	if _, ok := b.ready("b", now); !ok {
		t.Fatal("retain kept a key it was told to drop")
	}
	b.forget("a")
	if b.failures("a") != 0 {
		t.Fatal("forget kept the failures")
	}
}
