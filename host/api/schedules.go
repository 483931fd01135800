package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/orloj/orloj/cluster"
)

// ScheduleRequest creates a schedule (POST /v1/schedules).
type ScheduleRequest struct {
	Name     string          `json:"name"`
	Agent    string          `json:"agent"`
	Version  string          `json:"version"` // "" runs the newest at each firing
	Cron     string          `json:"cron"`
	Timezone string          `json:"timezone"`
	Input    json.RawMessage `json:"input"`
	Overlap  string          `json:"overlap"`  // skip (default) or allow
	CatchUp  string          `json:"catch_up"` // one (default), all or none
	Paused   bool            `json:"paused"`
}

// ScheduleView is a schedule as the API shows it.
type ScheduleView struct {
	Name      string          `json:"name"`
	Agent     string          `json:"agent"`
	Version   string          `json:"version,omitempty"`
	Cron      string          `json:"cron"`
	Timezone  string          `json:"timezone"`
	Input     json.RawMessage `json:"input"`
	Overlap   string          `json:"overlap"`
	CatchUp   string          `json:"catch_up"`
	Paused    bool            `json:"paused"`
	Next      *string         `json:"next"`
	LastFire  *string         `json:"last_fire"`
	LastTask  string          `json:"last_task,omitempty"`
	LastError string          `json:"last_error,omitempty"`
	Fired     uint64          `json:"fired"`
	Skipped   uint64          `json:"skipped"`
	CreatedAt *string         `json:"created_at"`
}

func scheduleView(s cluster.Schedule) ScheduleView {
	tz := s.Timezone
	if tz == "" {
		tz = "UTC"
	}
	return ScheduleView{Name: s.Name, Agent: s.Agent, Version: s.Version, Cron: s.Cron, Timezone: tz, Input: rawView(s.Input),
		Overlap: string(s.Overlap), CatchUp: string(s.CatchUp), Paused: s.Paused, Next: timeView(s.Next),
		LastFire: timeView(s.LastFire), LastTask: s.LastTask, LastError: s.LastError, Fired: s.Fired, Skipped: s.Skipped,
		CreatedAt: timeView(s.CreatedAt)}
}

// createSchedule: POST /v1/schedules.
func (s *Server) createSchedule(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req ScheduleRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := checkName("schedule name", req.Name); err != nil {
		return err
	}
	if err := checkAgentRef(req.Agent, req.Version); err != nil {
		return err
	}
	// The agent must exist now: a schedule of a misspelt agent would
	// fire nothing, quietly, every time.
	if _, err := s.fsm.Agent(req.Agent, req.Version); err != nil {
		return err
	}
	input, err := compactJSON("input", req.Input)
	if err != nil {
		return err
	}
	cmd, err := cluster.NewSchedule(cluster.Schedule{Name: req.Name, Agent: req.Agent, Version: req.Version, Cron: req.Cron,
		Timezone: req.Timezone, Input: input, Overlap: cluster.OverlapPolicy(req.Overlap), CatchUp: cluster.CatchUpPolicy(req.CatchUp),
		Paused: req.Paused}, s.cfg.Clock())
	if err != nil {
		return badRequest("%s", trimInvalid(err))
	}
	res, err := s.c.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	sc, ok := res.(cluster.Schedule)
	if !ok {
		return fmt.Errorf("create schedule: unexpected response %T", res)
	}
	s.log.Info("schedule created", "schedule", sc.Name, "agent", sc.Agent, "cron", sc.Cron, "timezone", sc.Timezone)
	s.reply(w, http.StatusCreated, scheduleView(sc))
	return nil
}

// trimInvalid is err's message without the sentinel's prefix.
func trimInvalid(err error) string {
	return strings.TrimPrefix(err.Error(), cluster.ErrInvalidCmd.Error()+": ")
}

// listSchedules: GET /v1/schedules.
func (s *Server) listSchedules(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	all, err := s.fsm.Schedules()
	if err != nil {
		return err
	}
	out := make([]ScheduleView, 0, len(all))
	for _, sc := range all {
		out = append(out, scheduleView(sc))
	}
	s.reply(w, http.StatusOK, out)
	return nil
}

func (s *Server) scheduleParam(r *http.Request) (cluster.Schedule, error) {
	if err := checkQuery(r.URL.Query()); err != nil {
		return cluster.Schedule{}, err
	}
	name := r.PathValue("name")
	if err := checkName("schedule name", name); err != nil {
		return cluster.Schedule{}, err
	}
	return s.fsm.Schedule(name)
}

// showSchedule: GET /v1/schedules/{name}.
func (s *Server) showSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scheduleParam(r)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, scheduleView(sc))
	return nil
}

// pauseSchedule: POST /v1/schedules/{name}/pause.
func (s *Server) pauseSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scheduleParam(r)
	if err != nil {
		return err
	}
	return s.applySchedule(w, r, &cluster.PauseSchedule{Name: sc.Name, Paused: true, Now: s.cfg.Clock().UnixNano()}, "paused")
}

// resumeSchedule: POST /v1/schedules/{name}/resume, from the next firing
// after now.
func (s *Server) resumeSchedule(w http.ResponseWriter, r *http.Request) error {
	sc, err := s.scheduleParam(r)
	if err != nil {
		return err
	}
	cmd, err := cluster.ResumeSchedule(sc, s.cfg.Clock())
	if err != nil {
		return badRequest("%s", trimInvalid(err))
	}
	return s.applySchedule(w, r, cmd, "resumed")
}

func (s *Server) applySchedule(w http.ResponseWriter, r *http.Request, cmd cluster.Command, did string) error {
	res, err := s.c.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	sc, ok := res.(cluster.Schedule)
	if !ok {
		return fmt.Errorf("schedule: unexpected response %T", res)
	}
	s.log.Info("schedule "+did, "schedule", sc.Name)
	s.reply(w, http.StatusOK, scheduleView(sc))
	return nil
}

// deleteSchedule: DELETE /v1/schedules/{name}. Its tasks stay.
func (s *Server) deleteSchedule(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := checkName("schedule name", name); err != nil {
		return err
	}
	if _, err := s.c.Apply(r.Context(), &cluster.DeleteSchedule{Name: name, Now: s.cfg.Clock().UnixNano()}); err != nil {
		if errors.Is(err, cluster.ErrUnknownSchedule) {
			return notFound("schedule %s: unknown schedule", name)
		}
		return err
	}
	s.log.Info("schedule deleted", "schedule", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
