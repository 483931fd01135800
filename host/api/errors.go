package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
)

// Error codes of the API contract. Each has one HTTP status.
const (
	CodeBadRequest    = "bad_request"    // 400
	CodeInvalidModule = "invalid_module" // 400, the message names the refused import
	CodeUnauthorized  = "unauthorized"   // 401
	CodeForbidden     = "forbidden"      // 403: a console session's write without its CSRF token
	CodeNotFound      = "not_found"      // 404
	CodeConflict      = "conflict"       // 409
	CodeTooLarge      = "too_large"      // 413
	CodeNotLeader     = "not_leader"     // 421
	CodeInternal      = "internal"       // 500
	CodeUnavailable   = "unavailable"    // 503
)

// ErrorBody is every error response.
type ErrorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
	// Leader is set only with not_leader: the leader's API address, or ""
	// when this node does not know it.
	Leader *string `json:"leader,omitempty"`
	// LeaderID is the leader's node ID, when known (not_leader only).
	LeaderID string `json:"leader_id,omitempty"`
	// ErrorID is set only with internal: the server logged the failure's
	// detail under this ID, which the answer leaves out.
	ErrorID string `json:"error_id,omitempty"`
}

// apiError is an error that already knows its response.
type apiError struct {
	status int
	body   ErrorBody
}

func (e *apiError) Error() string { return e.body.Error }

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, body: ErrorBody{Error: fmt.Sprintf(format, args...), Code: code}}
}

func badRequest(format string, args ...any) error {
	return newError(http.StatusBadRequest, CodeBadRequest, format, args...)
}

func notFound(format string, args ...any) error {
	return newError(http.StatusNotFound, CodeNotFound, format, args...)
}

func conflict(format string, args ...any) error {
	return newError(http.StatusConflict, CodeConflict, format, args...)
}

func tooLarge(format string, args ...any) error {
	return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, format, args...)
}

func unavailable(format string, args ...any) error {
	return newError(http.StatusServiceUnavailable, CodeUnavailable, format, args...)
}

// notLeader answers a write sent to a follower with the leader it knows.
func (s *Server) notLeader() *apiError {
	l := s.node.LeaderInfo()
	e := newError(http.StatusMisdirectedRequest, CodeNotLeader,
		"node %s is not the leader and no leader is known yet; retry shortly", s.node.ID())
	leader := ""
	if l.Known() {
		leader = l.APIAddr
		e.body.Error = fmt.Sprintf("node %s is not the leader; send writes to the leader, node %s (raft address %s, API %s)", s.node.ID(), l.ID, l.RaftAddr, orUnknown(leader))
		e.body.LeaderID = l.ID
	}
	e.body.Leader = &leader
	return e
}

// toAPIError maps an error to its response. Cluster sentinels carry
// messages written for operators ("task X: not found"), so they are shown;
// anything unexpected is logged and answered with one generic sentence.
func (s *Server) toAPIError(r *http.Request, err error) *apiError {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, cluster.ErrNotLeader), errors.Is(err, raft.ErrNotLeader):
		return s.notLeader()
	case errors.Is(err, cluster.ErrUnknownAgent), errors.Is(err, cluster.ErrNotFound), errors.Is(err, cluster.ErrUnknownSchedule), errors.Is(err, cluster.ErrUnknownApproval):
		return newError(http.StatusNotFound, CodeNotFound, "%s", err.Error())
	case errors.Is(err, cluster.ErrInvalidState), errors.Is(err, cluster.ErrAlreadyExists), errors.Is(err, cluster.ErrStaleToken),
		errors.Is(err, cluster.ErrRemoved), errors.Is(err, cluster.ErrLastVoter), errors.Is(err, cluster.ErrNotVoter), errors.Is(err, cluster.ErrAlreadyLeader):
		return newError(http.StatusConflict, CodeConflict, "%s", err.Error())
	case errors.Is(err, cluster.ErrTooLarge):
		return newError(http.StatusRequestEntityTooLarge, CodeTooLarge, "%s", err.Error())
	case errors.Is(err, cluster.ErrInvalidCmd), errors.Is(err, cluster.ErrUnreachable):
		return newError(http.StatusBadRequest, CodeBadRequest, "%s", err.Error())
	case errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrRaftShutdown):
		s.log.Warn("request not served", "method", r.Method, "path", r.URL.Path, "error", err)
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "the cluster could not take the request now; retry shortly")
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		return newError(http.StatusServiceUnavailable, CodeUnavailable, "request cancelled")
	}
	return s.internal(r, "request failed", "error", err)
}

// internal logs a failure the client cannot fix under a fresh error ID and
// answers with the ID only: the detail (wrapped errors, stacks, file paths)
// stays in the log.
func (s *Server) internal(r *http.Request, what string, detail ...any) *apiError {
	id := host.NewErrorID()
	s.log.Error(what, append([]any{"error_id", id, "method", r.Method, "path", r.URL.Path}, detail...)...)
	e := newError(http.StatusInternalServerError, CodeInternal, "internal error (id %s); the server log has the details", id)
	e.body.ErrorID = id
	return e
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	ae := s.toAPIError(r, err)
	s.reply(w, ae.status, ae.body)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
