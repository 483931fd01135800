package cluster

import (
	"context"
	"time"

	"github.com/hashicorp/go-hclog"
)

// scheduleInterval is how often the leader looks for due schedules: a
// firing is made within this of its time.
const scheduleInterval = 200 * time.Millisecond

// maxMissedScan bounds counting the firings a long outage missed (every
// second for 11 days); past it, the count is short and the latest missed
// firing is the last one counted.
const maxMissedScan = 1_000_000

// dueBatch bounds the schedules one pass fires.
const dueBatch = 256

// firer is the leader's scheduler, run by leaderDuties on one goroutine.
type firer struct {
	fsm   *FSM
	clock func() time.Time
	apply func(context.Context, Command) (any, error)
	log   hclog.Logger
	// warned: when a schedule that cannot be planned was last logged, so
	// a pass every 200 ms does not flood the log.
	warned map[string]time.Time
}

// fireDue makes the firings that are due: each schedule's in turn, until
// its next is in the future (a firing missed by a leader change is made
// at once, not one per pass).
func (f *firer) fireDue(ctx context.Context) {
	now := f.clock()
	due, err := f.fsm.DueSchedules(now.UnixNano(), dueBatch)
	if err != nil {
		f.log.Error("list due schedules", "error", err)
		return
	}
	for _, s := range due {
		for i := 0; i <= MaxCatchUp && s.Next != 0 && s.Next <= now.UnixNano(); i++ {
			if ctx.Err() != nil {
				return
			}
			cmd, err := f.plan(s, now)
			if err != nil {
				if last, ok := f.warned[s.Name]; !ok || now.Sub(last) > time.Minute {
					f.log.Warn("schedule cannot fire", "schedule", s.Name, "error", err)
					f.warned[s.Name] = now
				}
				break
			}
			res, err := f.apply(ctx, cmd)
			if err != nil {
				f.log.Warn("fire schedule", "schedule", s.Name, "error", err)
				return
			}
			fr, ok := res.(FireResult)
			if !ok || fr.Stale {
				break
			}
			f.log.Info("schedule fired", "schedule", s.Name, "at", time.Unix(0, cmd.At).UTC(), "task", fr.Task,
				"skipped", cmd.Skipped, "next", time.Unix(0, fr.Schedule.Next).UTC(), "note", fr.Schedule.LastError)
			s = fr.Schedule
		}
	}
}

// plan is the FireSchedule for s's next firing at now, by its catch-up
// policy when it is late by more than CatchUpGrace.
func (f *firer) plan(s Schedule, now time.Time) (*FireSchedule, error) {
	sched, loc, err := ParseCron(s.Cron, s.Timezone)
	if err != nil {
		return nil, err
	}
	next := time.Unix(0, s.Next)
	cmd := &FireSchedule{Name: s.Name, Expect: s.Next, Now: now.UnixNano()}
	// after is the firing after t; 0 when there is none (robfig/cron looks
	// five years ahead), which ends the schedule.
	after := func(t time.Time) int64 {
		if n := NextFiring(sched, loc, t); !n.IsZero() {
			return n.UnixNano()
		}
		return 0
	}
	if now.Sub(next) <= CatchUpGrace {
		cmd.At, cmd.Next = s.Next, after(next)
	} else {
		// The missed firings: next, and each after it up to now.
		last, count := next, uint64(1)
		for t := NextFiring(sched, loc, next); !t.IsZero() && !t.After(now) && count < maxMissedScan; t = NextFiring(sched, loc, t) {
			last, count = t, count+1
		}
		switch s.CatchUp {
		case CatchUpAll:
			if count > MaxCatchUp {
				// Keep the newest MaxCatchUp: pass over the others in one
				// step, then make each.
				skip := count - MaxCatchUp
				t := next
				for i := uint64(0); i < skip; i++ {
					t = NextFiring(sched, loc, t)
				}
				cmd.Next, cmd.Skipped = t.UnixNano(), skip
			} else {
				cmd.At, cmd.Next = s.Next, after(next)
			}
		case CatchUpNone:
			cmd.Next, cmd.Skipped = after(last), count
		default: // CatchUpOne
			cmd.At, cmd.Next, cmd.Skipped = last.UnixNano(), after(last), count-1
		}
	}
	if cmd.At != 0 {
		cmd.TaskID, cmd.Version = NewTaskID(now), s.Version
		if cmd.Version == "" {
			// The newest version now; none (an agent not pushed yet) is
			// recorded by the FSM as the firing's error.
			if ag, err := f.fsm.Agent(s.Agent, ""); err == nil {
				cmd.Version = ag.Version
			}
		}
	}
	return cmd, nil
}
