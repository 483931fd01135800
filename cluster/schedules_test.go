package cluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// schedHarness drives a schedule's firings on an FSM with a fake clock, as
// the leader's scheduler would, without Raft.
type schedHarness struct {
	*harness
	clock *fakeClock
	f     *firer
}

func newSchedHarness(t *testing.T, start time.Time) *schedHarness {
	h := &schedHarness{harness: newHarness(t), clock: newFakeClock(start)}
	h.agent("doc", "v1", "m")
	h.f = &firer{fsm: h.fsm, clock: h.clock.Now, log: hclog.NewNullLogger(), warned: map[string]time.Time{},
		apply: func(_ context.Context, c Command) (any, error) {
			r := h.apply(c)
			if err, ok := r.(error); ok {
				return nil, err
			}
			return r, nil
		}}
	return h
}

func (h *schedHarness) create(s Schedule) Schedule {
	h.t.Helper()
	s.Agent = "doc"
	c, err := NewSchedule(s, h.clock.Now())
	if err != nil {
		h.t.Fatal(err)
	}
	return h.ok(c).(Schedule)
}

// tasks returns the schedule's tasks' idempotency keys, oldest first.
func (h *schedHarness) keys() []string {
	h.t.Helper()
	ts, err := h.fsm.Tasks(TaskFilter{})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, t := range ts {
		out = append(out, t.IdempotencyKey)
	}
	return out
}

// TestScheduleFiresEachTimeOnce: every firing is made once, at its time,
// whoever proposes it how often: a FireSchedule for a firing already made
// is stale and submits nothing.
func TestScheduleFiresEachTimeOnce(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	h := newSchedHarness(t, start)
	s := h.create(Schedule{Name: "tick", Cron: "* * * * *", Overlap: OverlapAllow})
	if want := time.Date(2026, 12, 2, 10, 1, 0, 0, time.UTC); s.Next != want.UnixNano() || s.Overlap != OverlapAllow || s.CatchUp != CatchUpOne {
		t.Fatalf("created %+v, want next %s", s, want)
	}
	h.f.fireDue(context.Background())
	if k := h.keys(); len(k) != 0 {
		t.Fatalf("fired before its time: %v", k)
	}
	h.clock.Add(31 * time.Second) // 10:01:01
	plan, err := h.f.plan(s, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.f.fireDue(context.Background())
	h.f.fireDue(context.Background())
	// A leader that planned the same firing before losing leadership.
	if r := h.ok(plan).(FireResult); !r.Stale || r.Task != "" {
		t.Fatalf("the firing made again: %+v", r)
	}
	h.clock.Add(time.Minute) // 10:02:01
	h.f.fireDue(context.Background())
	want := []string{FireKey("tick", start.Add(30*time.Second).UnixNano()), FireKey("tick", start.Add(90*time.Second).UnixNano())}
	if k := h.keys(); strings.Join(k, " ") != strings.Join(want, " ") {
		t.Fatalf("tasks %v, want %v", k, want)
	}
	got, _ := h.fsm.Schedule("tick")
	if got.Fired != 2 || got.Skipped != 0 || got.Next != start.Add(150*time.Second).UnixNano() || got.LastTask == "" {
		t.Fatalf("after two firings: %+v", got)
	}
	if tk := h.task(got.LastTask); tk.Agent != "doc" || tk.Version != "v1" || tk.State != StateQueued {
		t.Fatalf("the firing's task: %+v", tk)
	}
}

// TestScheduleCatchUp: firings missed by more than CatchUpGrace are made
// by the policy: one for all, each, or none; firings missed by less (a
// leader change) are each made whatever the policy.
func TestScheduleCatchUp(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	minute := func(m int) int64 { return time.Date(2026, 12, 2, 10, m, 0, 0, time.UTC).UnixNano() }
	for policy, want := range map[CatchUpPolicy]struct {
		keys    []string
		skipped uint64
	}{
		CatchUpOne:  {[]string{FireKey("s", minute(10))}, 9},
		CatchUpAll:  {[]string{FireKey("s", minute(1)), FireKey("s", minute(2)), FireKey("s", minute(3)), FireKey("s", minute(4)), FireKey("s", minute(5)), FireKey("s", minute(6)), FireKey("s", minute(7)), FireKey("s", minute(8)), FireKey("s", minute(9)), FireKey("s", minute(10))}, 0},
		CatchUpNone: {nil, 10},
	} {
		h := newSchedHarness(t, start)
		h.create(Schedule{Name: "s", Cron: "* * * * *", CatchUp: policy, Overlap: OverlapAllow})
		h.clock.Add(10 * time.Minute) // 10:10:30: ten firings missed
		h.f.fireDue(context.Background())
		got, _ := h.fsm.Schedule("s")
		if k := h.keys(); strings.Join(k, " ") != strings.Join(want.keys, " ") || got.Skipped != want.skipped || got.Next != minute(11) {
			t.Errorf("%s: tasks %v skipped %d next %s; want %v, %d, 10:11", policy, k, got.Skipped, time.Unix(0, got.Next).UTC(), want.keys, want.skipped)
		}
	}
	h := newSchedHarness(t, start)
	h.create(Schedule{Name: "s", Cron: "*/10 * * * * *", CatchUp: CatchUpNone, Overlap: OverlapAllow})
	h.clock.Add(45 * time.Second) // four firings late by at most 45 s
	h.f.fireDue(context.Background())
	if k := h.keys(); len(k) != 4 {
		t.Errorf("a short gap under none: %d tasks, want each of the 4 made", len(k))
	}
}

// TestScheduleOverlapPauseDelete: overlap skip passes over a firing while
// the previous task runs, not while it is a dead letter; a paused schedule
// is not due and resumes from the next firing after now; a deleted one is
// gone and its tasks stay.
func TestScheduleOverlapPauseDelete(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC)
	h := newSchedHarness(t, start)
	h.create(Schedule{Name: "s", Cron: "@every 1m"})
	h.clock.Add(time.Minute)
	h.f.fireDue(context.Background())
	h.clock.Add(time.Minute)
	h.f.fireDue(context.Background())
	got, _ := h.fsm.Schedule("s")
	if got.Fired != 1 || got.Skipped != 1 || !strings.Contains(got.LastError, "overlap skip") {
		t.Fatalf("overlap: %+v", got)
	}
	// The first task dead-letters: the next firing is made.
	first := got.LastTask
	claim := h.claim(h.clock.Now().UnixNano())
	h.ok(&FailAttempt{TaskID: first, Token: claim.Lease.Token, Error: TaskError{Class: ClassPermanent, Message: "x"}, Now: h.clock.Now().UnixNano()})
	h.clock.Add(time.Minute)
	h.f.fireDue(context.Background())
	if got, _ = h.fsm.Schedule("s"); got.Fired != 2 || got.LastError != "" {
		t.Fatalf("after the dead letter: %+v", got)
	}

	h.ok(&PauseSchedule{Name: "s", Paused: true, Now: 1})
	h.clock.Add(10 * time.Minute)
	if due, _ := h.fsm.DueSchedules(h.clock.Now().UnixNano(), 10); len(due) != 0 {
		t.Fatalf("a paused schedule is due: %+v", due)
	}
	got, _ = h.fsm.Schedule("s")
	resume, err := ResumeSchedule(got, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got = h.ok(resume).(Schedule); got.Paused || got.Next <= h.clock.Now().UnixNano() {
		t.Fatalf("resumed: %+v", got)
	}
	h.f.fireDue(context.Background())
	if got.Fired != 2 {
		t.Fatalf("what was missed while paused was made: %+v", got)
	}

	if err, _ := h.apply(&PutSchedule{Schedule: got, Now: 1}).(error); !errors.Is(err, ErrAlreadyExists) {
		t.Fatalf("a second create: %v", err)
	}
	h.ok(&DeleteSchedule{Name: "s", Now: 1})
	if _, err := h.fsm.Schedule("s"); !errors.Is(err, ErrUnknownSchedule) {
		t.Fatalf("after delete: %v", err)
	}
	if due, _ := h.fsm.DueSchedules(h.clock.Now().Add(time.Hour).UnixNano(), 10); len(due) != 0 {
		t.Fatalf("a deleted schedule is due: %+v", due)
	}
	if k := h.keys(); len(k) != 2 {
		t.Fatalf("the deleted schedule's tasks: %v", k)
	}
	if err, _ := h.apply(&DeleteSchedule{Name: "s", Now: 1}).(error); !errors.Is(err, ErrUnknownSchedule) {
		t.Fatalf("a second delete: %v", err)
	}
}

// TestScheduleAgentMissing: a firing with no version to run submits
// nothing and says why; the schedule goes on.
func TestScheduleAgentMissing(t *testing.T) {
	t.Parallel()
	h := newSchedHarness(t, time.Date(2026, 12, 2, 10, 0, 30, 0, time.UTC))
	c, err := NewSchedule(Schedule{Name: "s", Agent: "nosuch", Cron: "* * * * *"}, h.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	h.ok(c)
	h.clock.Add(time.Minute)
	h.f.fireDue(context.Background())
	got, _ := h.fsm.Schedule("s")
	if got.Fired != 0 || got.Skipped != 1 || !strings.Contains(got.LastError, "nosuch") || got.Next <= h.clock.Now().UnixNano() {
		t.Fatalf("%+v", got)
	}
}

func TestScheduleRefuses(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for name, tc := range map[string]struct {
		s    Schedule
		want string
	}{
		"bad cron":      {Schedule{Name: "s", Agent: "a", Cron: "every day"}, "cron expression"},
		"tz in cron":    {Schedule{Name: "s", Agent: "a", Cron: "CRON_TZ=UTC * * * * *"}, "timezone"},
		"bad timezone":  {Schedule{Name: "s", Agent: "a", Cron: "* * * * *", Timezone: "Mars/Olympus"}, "Mars/Olympus"},
		"never fires":   {Schedule{Name: "s", Agent: "a", Cron: "0 0 30 2 *"}, "never fires"},
		"bad overlap":   {Schedule{Name: "s", Agent: "a", Cron: "* * * * *", Overlap: "queue"}, "overlap"},
		"bad catch-up":  {Schedule{Name: "s", Agent: "a", Cron: "* * * * *", CatchUp: "some"}, "catch_up"},
		"slash in name": {Schedule{Name: "a/b", Agent: "a", Cron: "* * * * *"}, "no '/'"},
		"no agent":      {Schedule{Name: "s", Cron: "* * * * *"}, "agent"},
		"long cron":     {Schedule{Name: "s", Agent: "a", Cron: strings.Repeat("*", MaxCronBytes+1)}, "limit"},
	} {
		if _, err := NewSchedule(tc.s, now); !errors.Is(err, ErrInvalidCmd) && !errors.Is(err, ErrTooLarge) || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an invalid command saying %q", name, err, tc.want)
		}
	}
	// A time zone shifts the firings.
	c, err := NewSchedule(Schedule{Name: "s", Agent: "a", Cron: "0 9 * * *", Timezone: "Europe/Prague"}, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC); c.Schedule.Next != want.UnixNano() {
		t.Fatalf("09:00 in Prague is %s, want %s", time.Unix(0, c.Schedule.Next).UTC(), want)
	}
}
