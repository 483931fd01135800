package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
)

// Limits on free text stored with a task.
const (
	maxKeyBytes    = 256
	maxReasonBytes = 1024
	maxFactor      = 100
)

// submitTask: POST /v1/tasks[?wait=30s]. The task ID and "now" are chosen
// here, by the proposer; an idempotency key that matches an earlier
// submission returns that task (200, existing: true) instead of creating
// another. With wait, the answer comes when the task settles or the wait
// ends, as /wait's does, and carries the task as it then is; the status is
// still 201 for a new task and 200 for an existing one, so a client tells
// "done" from "still going" by the state, as with /wait.
func (s *Server) submitTask(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "wait"); err != nil {
		return err
	}
	wait, err := s.waitParam(q, "wait", 0)
	if err != nil {
		return err
	}
	var req SubmitRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := checkAgentRef(req.Agent, req.Version); err != nil {
		return err
	}
	if err := checkText("idempotency_key", req.IdempotencyKey, maxKeyBytes); err != nil {
		return err
	}
	policy, err := retryPolicy(req)
	if err != nil {
		return err
	}
	budget, err := budgetOf(req.Budget)
	if err != nil {
		return err
	}
	version := req.Version
	if version == "" {
		ag, err := s.fsm.Agent(req.Agent, "")
		if err != nil {
			return err
		}
		version = ag.Version
	}
	input, err := compactJSON("input", req.Input)
	if err != nil {
		return err
	}
	resp, err := s.c.Apply(r.Context(), &cluster.SubmitTask{
		Task: cluster.Task{ID: s.cfg.NewTaskID(), Agent: req.Agent, Version: version, Input: input,
			IdempotencyKey: req.IdempotencyKey, Policy: policy, Budget: budget},
		Now: s.cfg.Clock().UnixNano(),
	})
	if err != nil {
		return err
	}
	res, ok := resp.(cluster.SubmitResult)
	if !ok {
		return fmt.Errorf("submit task: unexpected response %T", resp)
	}
	if wait > 0 {
		t, err := s.awaitTask(r.Context(), res.Task.ID, wait)
		switch {
		case err == nil:
			res.Task = t
		case !errors.Is(err, cluster.ErrNotFound):
			return err
		}
		// Not found here (a replica that has not applied it within the
		// follower lag): the submission stands; answer with it.
	}
	v := taskView(res.Task)
	v.Existing = res.Existing
	status := http.StatusCreated
	if res.Existing {
		status = http.StatusOK
	}
	s.reply(w, status, v)
	return nil
}

// budgetOf validates a budget override; nil overrides nothing.
func budgetOf(req *BudgetRequest) (cluster.Budget, error) {
	if req == nil {
		return cluster.Budget{}, nil
	}
	b := cluster.Budget{MaxCalls: req.MaxCalls, MaxTokens: req.MaxTokens, MaxEffects: req.MaxEffects}
	if req.MaxDuration != "" {
		d, err := parseDuration("budget.max_duration", req.MaxDuration)
		if err != nil {
			return b, err
		}
		b.MaxDuration = d
	}
	if err := b.Validate(); err != nil {
		return b, badRequest("%v", err)
	}
	return b, nil
}

// retryPolicy validates a submission's retry overrides; zero fields are
// filled with the defaults by the FSM.
func retryPolicy(req SubmitRequest) (cluster.RetryPolicy, error) {
	p := cluster.RetryPolicy{MaxAttempts: req.MaxAttempts}
	if req.MaxAttempts < 0 || req.MaxAttempts > maxAttemptsLimit {
		return p, badRequest("max_attempts %d must be from 0 (the agent's or the default) to %d", req.MaxAttempts, maxAttemptsLimit)
	}
	if req.Retry == nil {
		return p, nil
	}
	var err error
	if req.Retry.Base != "" {
		if p.Base, err = parseDuration("retry.base", req.Retry.Base); err != nil {
			return p, err
		}
	}
	if req.Retry.Cap != "" {
		if p.Cap, err = parseDuration("retry.cap", req.Retry.Cap); err != nil {
			return p, err
		}
	}
	if req.Retry.Factor < 0 || req.Retry.Factor > maxFactor {
		return p, badRequest("retry.factor %d must be from 1 to %d (0 means 2)", req.Retry.Factor, maxFactor)
	}
	p.Factor = req.Retry.Factor
	if p.Base > 0 && p.Cap > 0 && p.Cap < p.Base {
		return p, badRequest("retry.cap %s is below retry.base %s", p.Cap, p.Base)
	}
	return p, nil
}

// listTasks: GET /v1/tasks?state=&agent=&since=&until=&limit=&order=, oldest
// submission first, or newest with order=newest.
func (s *Server) listTasks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "state", "agent", "since", "until", "limit", "order"); err != nil {
		return err
	}
	newest := false
	switch q.Get("order") {
	case "", "oldest":
	case "newest":
		newest = true
	default:
		return badRequest("order %q must be oldest or newest", q.Get("order"))
	}
	var fl cluster.TaskFilter
	if v := q.Get("state"); v != "" {
		st, err := parseState(v)
		if err != nil {
			return err
		}
		fl.State = st
	}
	if fl.Agent = q.Get("agent"); fl.Agent != "" {
		if err := checkName("agent", fl.Agent); err != nil {
			return err
		}
	}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	if fl.Since, fl.Until, err = parseWindow(q); err != nil {
		return err
	}
	// One more than asked tells whether more match.
	fl.Limit, fl.Newest = limit+1, newest
	ts, err := s.fsm.Tasks(fl)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, taskViews(cut(w, ts, limit)))
	return nil
}

// task reads the task named by the {id} path segment.
func (s *Server) task(r *http.Request) (cluster.Task, error) {
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		return cluster.Task{}, err
	}
	return s.fsm.Task(id)
}

// getTask: GET /v1/tasks/{id}.
func (s *Server) getTask(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	t, err := s.task(r)
	if err != nil {
		return err
	}
	calls, err := s.fsm.Calls(t.ID)
	if err != nil {
		return err
	}
	v := taskView(t)
	v.Spent = spentView(calls)
	s.reply(w, http.StatusOK, v)
	return nil
}

// taskEvents: GET /v1/tasks/{id}/events, the journal in order.
func (s *Server) taskEvents(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	t, err := s.task(r)
	if err != nil {
		return err
	}
	es, err := s.fsm.Journal(t.ID)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, eventViews(es))
	return nil
}

// taskCalls: GET /v1/tasks/{id}/calls, one item per call per attempt.
func (s *Server) taskCalls(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	t, err := s.task(r)
	if err != nil {
		return err
	}
	es, err := s.fsm.Journal(t.ID)
	if err != nil {
		return err
	}
	recs, err := s.fsm.Calls(t.ID)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, withTokens(callViews(es), recs))
	return nil
}

// settled reports whether a task has reached a state /wait returns on: it
// will not change again without a person acting.
func settled(st cluster.TaskState) bool {
	return st.Final() || st == cluster.StateDeadLetter
}

// waitTask: GET /v1/tasks/{id}/wait?timeout=30s. It answers 200 with the
// task once it settles or the timeout passes; the caller reads its state.
func (s *Server) waitTask(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "timeout"); err != nil {
		return err
	}
	timeout, err := s.waitParam(q, "timeout", defaultWait)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		return err
	}
	t, err := s.awaitTask(r.Context(), id, timeout)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, taskView(t))
	return nil
}

// waitParam reads a wait duration from q[name] (def when absent), capped
// at MaxWait.
func (s *Server) waitParam(q url.Values, name string, def time.Duration) (time.Duration, error) {
	d := def
	if v := q.Get(name); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil || d < 0 {
			return 0, badRequest("%s %q must be a non-negative duration (e.g. 30s, 5m)", name, v)
		}
	}
	return min(d, s.cfg.MaxWait), nil
}

// followerLag bounds how long a follower's wait treats an unknown task as
// one it has not applied yet.
const followerLag = 5 * time.Second

// awaitTask waits until task id settles, timeout passes or the server
// closes, and returns the task as it then is. It sleeps on the task's own
// watch (cluster.FSM.WatchTask), so a waiter costs one read per change of
// its task, whatever else the cluster applies.
func (s *Server) awaitTask(ctx context.Context, id string, timeout time.Duration) (cluster.Task, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	watch := s.fsm.WatchTask(id)
	defer watch.Stop()
	// A follower may not have applied a submission the leader just
	// acknowledged: there, "not found" means "not yet" for a little while.
	lagUntil := time.Now().Add(min(timeout, followerLag))
	for {
		changed := watch.Changed() // before reading, so no change is missed
		t, err := s.fsm.Task(id)
		if errors.Is(err, cluster.ErrNotFound) && s.node.Role() != cluster.RoleLeader && time.Now().Before(lagUntil) {
			select {
			case <-changed:
			case <-time.After(time.Until(lagUntil)):
			case <-s.closing:
				lagUntil = time.Time{} // answer now: not found
			case <-ctx.Done():
				return cluster.Task{}, ctx.Err()
			}
			continue
		}
		if err != nil {
			return cluster.Task{}, err
		}
		if settled(t.State) {
			return t, nil
		}
		select {
		case <-changed:
			continue
		case <-timer.C:
		case <-s.closing:
		case <-ctx.Done():
			return cluster.Task{}, ctx.Err()
		}
		if latest, err := s.fsm.Task(id); err == nil {
			t = latest
		}
		return t, nil
	}
}

// cancelTask: POST /v1/tasks/{id}/cancel {"reason"}.
func (s *Server) cancelTask(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		return err
	}
	var req ReasonRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if err := checkText("reason", req.Reason, maxReasonBytes); err != nil {
		return err
	}
	return s.applyTask(w, r, &cluster.CancelTask{TaskID: id, Reason: req.Reason, Now: s.cfg.Clock().UnixNano()})
}

// signalTask: POST /v1/tasks/{id}/signals/{name}[?key=K]; the body is the
// signal's payload (JSON, at most abi.MaxSignalBytes; empty is null). The
// key, from ?key= or else the Idempotency-Key header, makes a resent signal
// a no-op (duplicate: true). A signal the task does not await yet is kept
// for it.
func (s *Server) signalTask(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "key"); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := abi.ValidSignalName(name); err != nil {
		return badRequest("%s", messageOf(err))
	}
	key := q.Get("key")
	if key == "" {
		key = r.Header.Get("Idempotency-Key")
	}
	if err := checkText("key", key, abi.MaxKeyBytes); err != nil {
		return err
	}
	body, err := readCapped(w, r, min(s.cfg.MaxBodyBytes, abi.MaxSignalBytes))
	if err != nil {
		return err
	}
	payload, err := compactJSON("payload", body)
	if err != nil {
		return err
	}
	resp, err := s.c.Apply(r.Context(), &cluster.SendSignal{TaskID: id, Name: name, Key: key, Payload: payload, Now: s.cfg.Clock().UnixNano()})
	if err != nil {
		return err
	}
	res, ok := resp.(cluster.SignalResult)
	if !ok {
		return fmt.Errorf("send signal: unexpected response %T", resp)
	}
	s.reply(w, http.StatusOK, SignalView{Task: taskView(res.Task), Delivered: res.Delivered, Duplicate: res.Duplicate})
	return nil
}

// messageOf is an *abi.Error's message without its status name.
func messageOf(err error) string {
	var ae *abi.Error
	if errors.As(err, &ae) {
		return ae.Message
	}
	return err.Error()
}

// applyTask proposes a command whose response is the changed task.
func (s *Server) applyTask(w http.ResponseWriter, r *http.Request, cmd cluster.Command) error {
	resp, err := s.c.Apply(r.Context(), cmd)
	if err != nil {
		return err
	}
	t, ok := resp.(cluster.Task)
	if !ok {
		return fmt.Errorf("apply %T: unexpected response %T", cmd, resp)
	}
	s.reply(w, http.StatusOK, taskView(t))
	return nil
}

// listLeases: GET /v1/leases, soonest expiry first.
func (s *Server) listLeases(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	ls, err := s.fsm.Leases()
	if err != nil {
		return err
	}
	out := make([]LeaseView, 0, len(ls))
	for _, l := range ls {
		out = append(out, leaseView(l))
	}
	s.reply(w, http.StatusOK, out)
	return nil
}
