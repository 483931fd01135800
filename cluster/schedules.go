package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// A schedule submits a task on a cron schedule. The leader fires it: it
// reads the cron expression, works out the firing's time and the one
// after, and proposes FireSchedule, which the FSM applies only while the
// schedule's next firing is still the one the leader read. A firing is
// therefore made once whoever leads, a new leader does not repeat it, and
// none is skipped: a firing not yet applied is still the schedule's next.
// The task a firing submits has the idempotency key
// "schedule/NAME/UNIX-SECONDS" as well. The FSM never parses the cron
// expression: what time a firing is comes in the command, so replicas
// cannot disagree about it (time zone data differ between machines).

// Limits of schedules.
const (
	// MaxSchedules bounds the schedules a cluster holds; each is a record
	// and an index entry the leader scans for due ones.
	MaxSchedules = 10_000
	// MaxCronBytes bounds a cron expression.
	MaxCronBytes = 256
	// MaxCatchUp bounds the missed firings made one by one under
	// CatchUpAll; older ones are counted as skipped.
	MaxCatchUp = 100
	// CatchUpGrace is how late a firing may be and still be made whatever
	// the catch-up policy: a leader change takes seconds, and is not an
	// outage.
	CatchUpGrace = time.Minute
)

// ErrUnknownSchedule is a schedule name that is not registered.
var ErrUnknownSchedule = errors.New("unknown schedule")

// OverlapPolicy says what a firing does while the schedule's previous task
// is still queued, running or waiting to retry.
type OverlapPolicy string

const (
	// OverlapSkip skips the firing (counted in Skipped): one task at a time.
	OverlapSkip OverlapPolicy = "skip"
	// OverlapAllow submits the task anyway.
	OverlapAllow OverlapPolicy = "allow"
)

// CatchUpPolicy says what becomes of firings missed by more than
// CatchUpGrace (the cluster had no leader, the schedule was paused).
type CatchUpPolicy string

const (
	// CatchUpOne makes one firing, at the latest missed time, for all the
	// missed ones.
	CatchUpOne CatchUpPolicy = "one"
	// CatchUpAll makes each missed firing, at most MaxCatchUp of them.
	CatchUpAll CatchUpPolicy = "all"
	// CatchUpNone makes none of them.
	CatchUpNone CatchUpPolicy = "none"
)

// Schedule is a cron schedule of tasks of one agent.
type Schedule struct {
	Name string `json:"name"`
	// Agent, and Version: "" runs the agent's newest version at each
	// firing.
	Agent    string          `json:"agent"`
	Version  string          `json:"version,omitempty"`
	Cron     string          `json:"cron"`
	Timezone string          `json:"timezone,omitempty"` // IANA name; "" is UTC
	Input    json.RawMessage `json:"input,omitempty"`
	Overlap  OverlapPolicy   `json:"overlap"`
	CatchUp  CatchUpPolicy   `json:"catch_up"`
	Paused   bool            `json:"paused,omitempty"`
	// Next is the next firing's time (unix nanoseconds), set by the
	// proposer from Cron; 0 while paused.
	Next      int64  `json:"next"`
	LastFire  int64  `json:"last_fire,omitempty"` // the latest firing made or skipped
	LastTask  string `json:"last_task,omitempty"`
	LastError string `json:"last_error,omitempty"` // why the latest firing submitted nothing
	Fired     uint64 `json:"fired"`
	Skipped   uint64 `json:"skipped"`
	CreatedAt int64  `json:"created_at"`
	UpdatedAt int64  `json:"updated_at"`
}

// CronParser reads the cron expressions schedules take: five fields
// (minute to day of week), or six with seconds first, or a descriptor
// (@hourly, @every 10s).
var CronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron parses expr in the time zone tz ("" is UTC).
func ParseCron(expr, tz string) (cron.Schedule, *time.Location, error) {
	if len(expr) > MaxCronBytes {
		return nil, nil, fmt.Errorf("cron expression is %d bytes; the limit is %d", len(expr), MaxCronBytes)
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, nil, errors.New("cron expression: give the time zone as the schedule's timezone, not in the expression")
	}
	loc := time.UTC
	if tz != "" {
		var err error
		if loc, err = time.LoadLocation(tz); err != nil {
			return nil, nil, fmt.Errorf("timezone %q: %w", tz, err)
		}
	}
	s, err := CronParser.Parse(expr)
	if err != nil {
		return nil, nil, fmt.Errorf("cron expression %q: %w", expr, err)
	}
	if s.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return nil, nil, fmt.Errorf("cron expression %q never fires", expr)
	}
	return s, loc, nil
}

// NextFiring is the first firing of s strictly after t.
func NextFiring(s cron.Schedule, loc *time.Location, t time.Time) time.Time {
	return s.Next(t.In(loc))
}

// NewSchedule checks s, fills in its defaults (overlap skip, catch-up one)
// and its first firing after now, and returns the command that creates
// it. Errors wrap ErrInvalidCmd.
func NewSchedule(s Schedule, now time.Time) (*PutSchedule, error) {
	if s.Overlap == "" {
		s.Overlap = OverlapSkip
	}
	if s.CatchUp == "" {
		s.CatchUp = CatchUpOne
	}
	sched, loc, err := ParseCron(s.Cron, s.Timezone)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCmd, err)
	}
	if !s.Paused {
		s.Next = NextFiring(sched, loc, now).UnixNano()
	}
	c := &PutSchedule{Schedule: s, Now: now.UnixNano()}
	return c, c.Validate()
}

// ResumeSchedule returns the command that resumes s from its first firing
// after now.
func ResumeSchedule(s Schedule, now time.Time) (*PauseSchedule, error) {
	sched, loc, err := ParseCron(s.Cron, s.Timezone)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidCmd, err)
	}
	next := NextFiring(sched, loc, now)
	if next.IsZero() {
		return nil, fmt.Errorf("%w: schedule %s: the cron expression has no later firing", ErrInvalidCmd, s.Name)
	}
	return &PauseSchedule{Name: s.Name, Next: next.UnixNano(), Now: now.UnixNano()}, nil
}

// PutSchedule creates a schedule. Schedule.Next is the proposer's first
// firing; the counters start at zero.
type PutSchedule struct {
	Schedule Schedule `json:"schedule"`
	Now      int64    `json:"now"`
}

// PauseSchedule pauses or resumes a schedule. Resuming takes Next, the
// proposer's next firing after now: what was missed while paused is not
// caught up.
type PauseSchedule struct {
	Name   string `json:"name"`
	Paused bool   `json:"paused"`
	Next   int64  `json:"next,omitempty"`
	Now    int64  `json:"now"`
}

// DeleteSchedule removes a schedule; the tasks it submitted stay.
type DeleteSchedule struct {
	Name string `json:"name"`
	Now  int64  `json:"now"`
}

// FireSchedule makes the firing of the schedule whose Next is Expect: it
// submits a task at At (none if At is 0: firings passed over by the
// catch-up policy), counts Skipped more, and moves Next on; Next 0 (the
// expression has no later firing) pauses the schedule. A FireSchedule
// whose Expect is no longer the schedule's Next (another leader made that
// firing, or the schedule was paused or changed) does nothing.
type FireSchedule struct {
	Name    string `json:"name"`
	Expect  int64  `json:"expect"`
	At      int64  `json:"at,omitempty"`
	Next    int64  `json:"next"`
	Skipped uint64 `json:"skipped,omitempty"`
	TaskID  string `json:"task_id,omitempty"`
	Version string `json:"version,omitempty"` // the agent version the task runs; "" if the agent has none
	Now     int64  `json:"now"`
}

// FireResult is what a FireSchedule did.
type FireResult struct {
	Schedule Schedule `json:"schedule"`
	// Stale: the firing had been made, or the schedule changed; nothing
	// was done.
	Stale bool `json:"stale,omitempty"`
	// Task is the task submitted, if any.
	Task string `json:"task,omitempty"`
}

func (PutSchedule) messageType() MessageType    { return MsgPutSchedule }
func (PauseSchedule) messageType() MessageType  { return MsgPauseSchedule }
func (DeleteSchedule) messageType() MessageType { return MsgDeleteSchedule }
func (FireSchedule) messageType() MessageType   { return MsgFireSchedule }

func (c *PutSchedule) Validate() error {
	s := &c.Schedule
	if err := required("schedule name", s.Name, "schedule agent", s.Agent, "schedule cron", s.Cron); err != nil {
		return err
	}
	if strings.ContainsAny(s.Name, "/\x00") {
		return fmt.Errorf("%w: schedule name %q: no '/' or NUL", ErrInvalidCmd, s.Name)
	}
	if err := checkNames("schedule version", s.Version, "schedule timezone", s.Timezone); err != nil {
		return err
	}
	if err := checkBytes("schedule cron", len(s.Cron), MaxCronBytes); err != nil {
		return err
	}
	if err := checkBytes("schedule input", len(s.Input), MaxInputBytes); err != nil {
		return err
	}
	switch s.Overlap {
	case OverlapSkip, OverlapAllow:
	default:
		return fmt.Errorf("%w: schedule overlap %q: want skip or allow", ErrInvalidCmd, s.Overlap)
	}
	switch s.CatchUp {
	case CatchUpOne, CatchUpAll, CatchUpNone:
	default:
		return fmt.Errorf("%w: schedule catch_up %q: want one, all or none", ErrInvalidCmd, s.CatchUp)
	}
	if !s.Paused && s.Next <= 0 {
		return fmt.Errorf("%w: schedule %s: no next firing", ErrInvalidCmd, s.Name)
	}
	return nil
}

func (c *PauseSchedule) Validate() error {
	if err := required("schedule name", c.Name); err != nil {
		return err
	}
	if !c.Paused && c.Next <= 0 {
		return fmt.Errorf("%w: resuming schedule %s needs its next firing", ErrInvalidCmd, c.Name)
	}
	return nil
}

func (c *DeleteSchedule) Validate() error { return required("schedule name", c.Name) }

func (c *FireSchedule) Validate() error {
	if err := required("schedule name", c.Name); err != nil {
		return err
	}
	if err := checkNames("firing task_id", c.TaskID, "firing version", c.Version); err != nil {
		return err
	}
	if (c.Next != 0 && c.Next <= c.Expect) || (c.At != 0 && (c.At < c.Expect || c.TaskID == "")) {
		return fmt.Errorf("%w: firing of %s: want at >= expect < next (0: none), and a task id with at", ErrInvalidCmd, c.Name)
	}
	return nil
}

// Keys: sc/NAME holds a Schedule; sn/NEXT(16 hex)\x00NAME indexes the
// schedules that are not paused by their next firing.
func scheduleKey(name string) []byte { return []byte("sc/" + name) }
func scheduleDueKey(next int64, name string) []byte {
	return []byte("sn/" + hex16(uint64(next)) + "\x00" + name)
}

// FireKey is the idempotency key of a schedule's firing at at.
func FireKey(name string, at int64) string {
	return fmt.Sprintf("schedule/%s/%d", name, time.Unix(0, at).Unix())
}

func (a *applier) putSchedule(c *PutSchedule) any {
	s := c.Schedule
	if _, ok := a.getRaw(scheduleKey(s.Name)); ok {
		return fmt.Errorf("schedule %s: %w", s.Name, ErrAlreadyExists)
	}
	if n := len(a.tx.keys([]byte("sc/"), MaxSchedules)); n >= MaxSchedules {
		return fmt.Errorf("%w: the cluster holds %d schedules, the limit", ErrTooLarge, n)
	}
	if s.Paused {
		s.Next = 0
	}
	s.LastFire, s.LastTask, s.LastError, s.Fired, s.Skipped = 0, "", "", 0, 0
	s.CreatedAt, s.UpdatedAt = c.Now, c.Now
	a.setSchedule(nil, s)
	return s
}

// setSchedule writes s and moves its due-index entry from old's.
func (a *applier) setSchedule(old *Schedule, s Schedule) {
	if old != nil && old.Next != 0 {
		a.del(scheduleDueKey(old.Next, old.Name))
	}
	a.put(scheduleKey(s.Name), s)
	if s.Next != 0 {
		a.putRaw(scheduleDueKey(s.Next, s.Name), nil)
	}
}

func (a *applier) loadSchedule(name string) (*Schedule, error) {
	var s Schedule
	if !a.get(scheduleKey(name), &s) {
		if a.err != nil {
			return nil, a.err
		}
		return nil, fmt.Errorf("schedule %s: %w", name, ErrUnknownSchedule)
	}
	return &s, nil
}

func (a *applier) pauseSchedule(c *PauseSchedule) any {
	old, err := a.loadSchedule(c.Name)
	if err != nil {
		return err
	}
	if old.Paused == c.Paused {
		return *old
	}
	s := *old
	s.Paused, s.Next, s.UpdatedAt = c.Paused, c.Next, c.Now
	if c.Paused {
		s.Next = 0
	}
	a.setSchedule(old, s)
	return s
}

func (a *applier) deleteSchedule(c *DeleteSchedule) any {
	old, err := a.loadSchedule(c.Name)
	if err != nil {
		return err
	}
	if old.Next != 0 {
		a.del(scheduleDueKey(old.Next, old.Name))
	}
	a.del(scheduleKey(c.Name))
	return nil
}

func (a *applier) fireSchedule(c *FireSchedule) any {
	old, err := a.loadSchedule(c.Name)
	if err != nil {
		return err
	}
	if old.Paused || old.Next != c.Expect {
		return FireResult{Schedule: *old, Stale: true}
	}
	s := *old
	s.Next, s.Skipped, s.UpdatedAt = c.Next, s.Skipped+c.Skipped, c.Now
	res := FireResult{}
	if c.At != 0 {
		s.LastFire = c.At
		if id, busy := a.scheduleBusy(old); busy {
			s.Skipped++
			s.LastError = "skipped: task " + id + " of the previous firing has not finished (overlap skip)"
		} else if c.Version == "" {
			s.Skipped++
			s.LastError = fmt.Sprintf("agent %s has no version to run", s.Agent)
		} else {
			r := a.submit(&SubmitTask{Task: Task{ID: c.TaskID, Agent: s.Agent, Version: c.Version, Input: s.Input,
				IdempotencyKey: FireKey(s.Name, c.At)}, Now: c.Now})
			switch r := r.(type) {
			case SubmitResult:
				s.LastTask, s.LastError, res.Task = r.Task.ID, "", r.Task.ID
				s.Fired++
			case error:
				if a.err != nil { // a storage failure, not a refusal: the batch fails
					return r
				}
				s.Skipped++
				s.LastError = truncate(r.Error(), MaxErrorMessageBytes)
			}
		}
	}
	if s.Next == 0 {
		s.Paused, s.LastError = true, "paused: the cron expression has no later firing"
	}
	a.setSchedule(old, s)
	res.Schedule = s
	return res
}

// scheduleBusy reports whether s's previous task is unfinished and s
// skips overlapping firings. A dead letter is not running: it waits for a
// person, and must not stop the schedule.
func (a *applier) scheduleBusy(s *Schedule) (string, bool) {
	if s.Overlap != OverlapSkip || s.LastTask == "" {
		return "", false
	}
	var t Task
	if !a.get(taskKey(s.LastTask), &t) {
		return "", false
	}
	return t.ID, !t.State.Final() && t.State != StateDeadLetter
}

// Schedule returns one schedule.
func (f *FSM) Schedule(name string) (Schedule, error) {
	var s Schedule
	err := f.view(func(tx *tx) error {
		if !tx.get(scheduleKey(name), &s) && tx.err == nil {
			return fmt.Errorf("schedule %s: %w", name, ErrUnknownSchedule)
		}
		return nil
	})
	return s, err
}

// Schedules lists every schedule, by name.
func (f *FSM) Schedules() ([]Schedule, error) {
	out, err := decodeAll[Schedule](f, []byte("sc/"), nil)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// DueSchedules lists the schedules whose next firing is at or before now,
// earliest first, at most limit.
func (f *FSM) DueSchedules(now int64, limit int) ([]Schedule, error) {
	keys := f.idx.due.below(string(scheduleDueKey(now+1, "")), limit)
	var out []Schedule
	err := f.view(func(tx *tx) error {
		for _, k := range keys {
			var s Schedule
			if _, name, ok := strings.Cut(k, "\x00"); ok && tx.get(scheduleKey(name), &s) {
				out = append(out, s)
			}
		}
		return tx.err
	})
	return out, err
}
