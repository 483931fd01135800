package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/orloj/orloj/cluster"
)

// dlqFilter selects dead letters by agent, error class and when they
// entered the queue.
type dlqFilter struct {
	agent        string
	class        cluster.ErrorClass
	since, until int64 // unix nanos; 0 = open
}

// deadLetters lists the dead letters f matches, oldest first, at most
// limit of them (0: all).
func (s *Server) deadLetters(f dlqFilter, limit int) ([]cluster.Task, error) {
	// A dead letter is not updated until it leaves the queue, so
	// UpdatedAt is when it entered.
	return s.fsm.DeadLetters(cluster.TaskFilter{Agent: f.agent, Class: f.class, UpdatedSince: f.since, UpdatedUntil: f.until, Limit: limit})
}

func parseTime(what, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return 0, badRequest("%s %q is not an RFC 3339 time (e.g. 2026-11-27T10:00:00Z)", what, v)
	}
	// Times are kept as int64 nanoseconds: outside their range UnixNano
	// wraps, and a filter would silently match everything.
	if t.Before(minTime) || t.After(maxTime) {
		return 0, badRequest("%s %q is out of range: times must be from %s to %s", what, v,
			minTime.Format(time.RFC3339), maxTime.Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// parseWindow reads the since and until query parameters: unix nanos, 0
// for an open side; until must be after since.
func parseWindow(q url.Values) (since, until int64, err error) {
	if since, err = parseTime("since", q.Get("since")); err != nil {
		return 0, 0, err
	}
	if until, err = parseTime("until", q.Get("until")); err != nil {
		return 0, 0, err
	}
	if since != 0 && until != 0 && until <= since {
		return 0, 0, badRequest("until %s is not after since %s", q.Get("until"), q.Get("since"))
	}
	return since, until, nil
}

// The times an int64 of nanoseconds since 1970 can hold, to the second.
var (
	minTime = time.Unix(0, math.MinInt64).UTC().Truncate(time.Second).Add(time.Second)
	maxTime = time.Unix(0, math.MaxInt64).UTC().Truncate(time.Second)
)

// listDLQ: GET /v1/dlq?agent=&class=&since=&until=.
func (s *Server) listDLQ(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "agent", "class", "since", "until", "limit"); err != nil {
		return err
	}
	f := dlqFilter{agent: q.Get("agent")}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	if f.agent != "" {
		if err = checkName("agent", f.agent); err != nil {
			return err
		}
	}
	if f.class, err = parseClass(q.Get("class")); err != nil {
		return err
	}
	if f.since, f.until, err = parseWindow(q); err != nil {
		return err
	}
	ts, err := s.deadLetters(f, limit+1) // one more says whether more match
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, taskViews(cut(w, ts, limit)))
	return nil
}

// showDLQ: GET /v1/dlq/{id}: the task, its ledger (what each tool call
// recorded) and its journal.
func (s *Server) showDLQ(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	t, err := s.task(r)
	if err != nil {
		return err
	}
	if t.State != cluster.StateDeadLetter {
		return notFound("task %s is %s, not in the dead-letter queue", t.ID, t.State)
	}
	calls, err := s.fsm.Calls(t.ID)
	if err != nil {
		return err
	}
	events, err := s.fsm.Journal(t.ID)
	if err != nil {
		return err
	}
	v := DLQEntry{Task: taskView(t), CallsTotal: len(calls), EventsTotal: len(events)}
	v.Task.Spent = spentView(calls)
	calls, events = calls[max(len(calls)-dlqShowLast, 0):], events[max(len(events)-dlqShowLast, 0):]
	v.Calls, v.Events = ledgerViews(calls), eventViews(events)
	for i, c := range v.Calls {
		if len(c.Result) > dlqShowResult {
			v.Calls[i].Result = json.RawMessage(fmt.Sprintf(`{"truncated":true,"bytes":%d}`, len(c.Result)))
		}
	}
	s.reply(w, http.StatusOK, v)
	return nil
}

// retryDLQ: POST /v1/dlq/{id}/retry {"version"}: attempts reset, ledger
// kept, optionally pinned to another version of the agent.
func (s *Server) retryDLQ(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		return err
	}
	var req RetryDLQRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.Version != "" {
		if err := checkName("version", req.Version); err != nil {
			return err
		}
	}
	budget, err := budgetOf(req.Budget)
	if err != nil {
		return err
	}
	return s.applyTask(w, r, &cluster.RetryDLQ{TaskID: id, Version: req.Version, Budget: budget, Now: s.cfg.Clock().UnixNano()})
}

// discardDLQ: POST /v1/dlq/{id}/discard {"reason"}; the reason is required.
func (s *Server) discardDLQ(w http.ResponseWriter, r *http.Request) error {
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
	if err := checkReason(req.Reason); err != nil {
		return err
	}
	return s.applyTask(w, r, &cluster.DiscardDLQ{TaskID: id, Reason: req.Reason, Now: s.cfg.Clock().UnixNano()})
}

// resolveDLQ: POST /v1/dlq/{id}/resolve {"call_id","applied","result","by","note"}:
// records whether a call left in doubt took effect; a following retry
// replays the result or invokes the call again. Answers the call's ledger
// entry.
func (s *Server) resolveDLQ(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkID(id); err != nil {
		return err
	}
	var req ResolveRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := checkName("call_id", req.CallID); err != nil {
		return err
	}
	if strings.TrimSpace(req.By) == "" {
		return badRequest("by is required: say who decided")
	}
	if err := checkName("by", req.By); err != nil {
		return err
	}
	if strings.TrimSpace(req.Note) == "" {
		return badRequest("note is required: say how you know")
	}
	if err := checkText("note", req.Note, maxReasonBytes); err != nil {
		return err
	}
	if req.Result != nil && string(req.Result) == "null" {
		req.Result = nil
	}
	switch {
	case req.Applied && req.Result == nil:
		return badRequest("result is required with applied: the JSON the call returned, which retries replay")
	case !req.Applied && req.Result != nil:
		return badRequest("result goes with applied: true; a call that was not applied is invoked again")
	}
	resp, err := s.c.Apply(r.Context(), &cluster.ResolveCall{TaskID: id, CallID: req.CallID, Applied: req.Applied, Result: req.Result,
		By: req.By, Note: req.Note, Now: s.cfg.Clock().UnixNano()})
	if err != nil {
		return err
	}
	rec, ok := resp.(cluster.LedgerRecord)
	if !ok {
		return fmt.Errorf("resolve: unexpected response %T", resp)
	}
	s.reply(w, http.StatusOK, ledgerView(rec))
	return nil
}

func checkReason(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return badRequest("reason is required: say why the task is discarded")
	}
	return checkText("reason", reason, maxReasonBytes)
}

// bulkRetryDLQ: POST /v1/dlq/retry {"agent","class","version"}: retries
// every dead letter the filter matches.
func (s *Server) bulkRetryDLQ(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req BulkRetryRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	class, err := parseClass(req.Class)
	if err != nil {
		return err
	}
	if req.Version != "" {
		// A version belongs to one agent; without one the filter could
		// match tasks of agents that have no such version.
		if req.Agent == "" {
			return badRequest("version needs agent: a version belongs to one agent")
		}
		if err := checkName("version", req.Version); err != nil {
			return err
		}
		if _, err := s.fsm.Agent(req.Agent, req.Version); err != nil {
			return err
		}
	}
	return s.bulk(w, r, dlqFilter{agent: req.Agent, class: class}, "retry", func(id string, now int64) cluster.Command {
		return &cluster.RetryDLQ{TaskID: id, Version: req.Version, Now: now}
	})
}

// bulkDiscardDLQ: POST /v1/dlq/discard {"agent","class","reason"}.
func (s *Server) bulkDiscardDLQ(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req BulkDiscardRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	class, err := parseClass(req.Class)
	if err != nil {
		return err
	}
	if err := checkReason(req.Reason); err != nil {
		return err
	}
	return s.bulk(w, r, dlqFilter{agent: req.Agent, class: class}, "discard", func(id string, now int64) cluster.Command {
		return &cluster.DiscardDLQ{TaskID: id, Reason: req.Reason, Now: now}
	})
}

// MaxBulk is how many dead letters one bulk request acts on: each is a
// Raft entry, and a request must end within a client's patience.
const MaxBulk = 1000

// bulk proposes one command per matching dead letter, one at a time, for
// at most MaxBulk of them (the oldest). A task that left the queue
// meanwhile is skipped; any other failure stops the batch and says how far
// it got (the tasks already changed stay changed).
func (s *Server) bulk(w http.ResponseWriter, r *http.Request, f dlqFilter, verb string, cmd func(id string, now int64) cluster.Command) error {
	ts, err := s.deadLetters(f, 0) // all: the answer counts what remains
	if err != nil {
		return err
	}
	res := BulkResult{IDs: []string{}, Remaining: max(len(ts)-MaxBulk, 0)}
	ts = ts[:min(len(ts), MaxBulk)]
	for _, t := range ts {
		_, err := s.c.Apply(r.Context(), cmd(t.ID, s.cfg.Clock().UnixNano()))
		switch {
		case errors.Is(err, cluster.ErrInvalidState), errors.Is(err, cluster.ErrNotFound):
			continue
		case err != nil:
			return fmt.Errorf("%s dead letters: %d of %d done, then task %s: %w", verb, res.Count, len(ts), t.ID, err)
		}
		res.Count++
		res.IDs = append(res.IDs, t.ID)
	}
	if res.Count > 0 {
		s.log.Info("dead letters changed in bulk", "verb", verb, "count", res.Count, "agent", f.agent, "class", f.class)
	}
	s.reply(w, http.StatusOK, res)
	return nil
}
