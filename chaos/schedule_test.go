package chaos_test

import (
	"context"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/host/api"
)

// TestScheduleSurvivesLeaderKills: a schedule that fires every second on a
// three-node cluster whose leader is SIGKILLed twice makes every firing
// once: one task per second from its first firing to its last, none
// missing, none twice, and the schedule's counts agree.
func TestScheduleSurvivesLeaderKills(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real processes (skipped with -short)")
	}
	bin, _ := build(t)
	hello := buildWasm(t, "../examples/agents/hello")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	h := newHarness(t, bin, 3, 3*time.Second)
	h.heartbeat = 500 * time.Millisecond
	h.form(ctx, func() {
		if err := h.push(ctx, "hello", "", hello); err != nil {
			t.Fatal(err)
		}
	})
	var sv api.ScheduleView
	if _, err := h.call(ctx, h.leader(ctx), "POST", "/v1/schedules", map[string]any{"name": "tick", "agent": "hello",
		"cron": "* * * * * *", "overlap": "allow", "input": map[string]any{"n": 1}}, &sv); err != nil {
		t.Fatal(err)
	}

	// The window is 30 s; the leader dies at about 8 s and 18 s, and comes
	// back as a follower.
	start := time.Now()
	for _, at := range []time.Duration{8 * time.Second, 18 * time.Second} {
		time.Sleep(time.Until(start.Add(at))) // the scenario's timeline, not a wait for a condition
		l := h.leader(ctx)
		if l < 0 {
			t.Fatal("no leader to kill")
		}
		h.kill(l)
		await(t, 30*time.Second, "a new leader", func() bool { n := h.leader(ctx); return n >= 0 && n != l })
		h.restart(l)
	}
	time.Sleep(time.Until(start.Add(30 * time.Second)))
	l := h.leader(ctx)
	if _, err := h.call(ctx, max(l, 0), "POST", "/v1/schedules/tick/pause", nil, &sv); err != nil {
		t.Fatal(err)
	}
	if _, err := h.call(ctx, max(l, 0), "GET", "/v1/schedules/tick", nil, &sv); err != nil {
		t.Fatal(err)
	}

	var tasks []api.TaskView
	if _, err := h.call(ctx, max(l, 0), "GET", "/v1/tasks?agent=hello", nil, &tasks); err != nil {
		t.Fatal(err)
	}
	seconds := map[int64]int{}
	for _, tv := range tasks {
		s, ok := strings.CutPrefix(tv.IdempotencyKey, "schedule/tick/")
		n, err := strconv.ParseInt(s, 10, 64)
		if !ok || err != nil {
			t.Fatalf("task %s has key %q", tv.ID, tv.IdempotencyKey)
		}
		seconds[n]++
	}
	var keys []int64
	for s, n := range seconds {
		keys = append(keys, s)
		if n != 1 {
			t.Errorf("firing %d made %d times", s, n)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	if len(keys) < 25 {
		t.Fatalf("%d firings in a 30 s window: %v", len(keys), keys)
	}
	for i := 1; i < len(keys); i++ {
		if keys[i] != keys[i-1]+1 {
			t.Errorf("firings %d to %d missing", keys[i-1]+1, keys[i]-1)
		}
	}
	if sv.Fired != uint64(len(tasks)) || sv.Skipped != 0 {
		t.Errorf("the schedule counts %d fired and %d skipped; %d tasks exist", sv.Fired, sv.Skipped, len(tasks))
	}
	t.Logf("%d firings from %d to %d, each once, across two leader kills", len(keys), keys[0], keys[len(keys)-1])
}
