package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/orloj/orloj/cluster"
)

// ApprovalView is an approval as the API shows it. Its ID is the call's.
type ApprovalView struct {
	ID          string          `json:"id"`
	TaskID      string          `json:"task_id"`
	Agent       string          `json:"agent"`
	Version     string          `json:"version"`
	Tool        string          `json:"tool"`
	Params      json.RawMessage `json:"params"`
	ParamsCut   bool            `json:"params_cut,omitempty"`
	State       string          `json:"state"`
	Attempt     int             `json:"attempt"`
	RequestedAt *string         `json:"requested_at"`
	DecidedAt   *string         `json:"decided_at"`
	By          string          `json:"by,omitempty"`
	Note        string          `json:"note,omitempty"`
}

func approvalView(a cluster.Approval) ApprovalView {
	return ApprovalView{ID: a.CallID, TaskID: a.TaskID, Agent: a.Agent, Version: a.Version, Tool: a.Tool, Params: rawView(a.Params),
		ParamsCut: a.ParamsCut, State: string(a.State), Attempt: a.Attempt, RequestedAt: timeView(a.RequestedAt),
		DecidedAt: timeView(a.DecidedAt), By: a.By, Note: a.Note}
}

// DecisionRequest approves (note optional) or denies (reason required) a
// call.
type DecisionRequest struct {
	By     string `json:"by"`     // who decides; default "admin"
	Note   string `json:"note"`   // approve
	Reason string `json:"reason"` // deny
}

// listApprovals: GET /v1/approvals[?all=true], pending ones by default.
func (s *Server) listApprovals(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "all", "limit"); err != nil {
		return err
	}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	all := false
	if v := q.Get("all"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return badRequest("all %q: want true or false", v)
		}
		all = b
	}
	list, err := s.fsm.Approvals(all)
	if err != nil {
		return err
	}
	list = cut(w, list, limit)
	out := make([]ApprovalView, 0, len(list))
	for _, a := range list {
		out = append(out, approvalView(a))
	}
	s.reply(w, http.StatusOK, out)
	return nil
}

// showApproval: GET /v1/approvals/{id}.
func (s *Server) showApproval(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkName("approval id", id); err != nil {
		return err
	}
	a, err := s.fsm.Approval(id)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, approvalView(a))
	return nil
}

// approveCall: POST /v1/approvals/{id}/approve.
func (s *Server) approveCall(w http.ResponseWriter, r *http.Request) error {
	return s.decide(w, r, true)
}

// denyCall: POST /v1/approvals/{id}/deny.
func (s *Server) denyCall(w http.ResponseWriter, r *http.Request) error { return s.decide(w, r, false) }

func (s *Server) decide(w http.ResponseWriter, r *http.Request, approve bool) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	id := r.PathValue("id")
	if err := checkName("approval id", id); err != nil {
		return err
	}
	var req DecisionRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	if req.By == "" {
		req.By = "admin"
	}
	note := req.Note
	if !approve {
		note = req.Reason
		if note == "" {
			return badRequest("a denial needs a reason (\"reason\"); the agent is told it")
		}
	}
	for what, v := range map[string]string{"by": req.By, "note": req.Note, "reason": req.Reason} {
		if err := checkText(what, v, cluster.MaxEventMessageBytes/2); err != nil {
			return err
		}
	}
	res, err := s.c.Apply(r.Context(), &cluster.DecideApproval{CallID: id, Approve: approve, By: req.By, Note: note, Now: s.cfg.Clock().UnixNano()})
	if err != nil {
		return err
	}
	a, ok := res.(cluster.Approval)
	if !ok {
		return fmt.Errorf("decide approval: unexpected response %T", res)
	}
	s.log.Info("approval decided", "approval", a.CallID, "task", a.TaskID, "tool", a.Tool, "state", a.State, "by", a.By)
	s.reply(w, http.StatusOK, approvalView(a))
	return nil
}
