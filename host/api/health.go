package api

import (
	"net/http"
	"time"

	"github.com/hashicorp/raft"
)

// HealthView is /healthz.
type HealthView struct {
	Status string `json:"status"`
}

// ReadyView is a ready /readyz.
type ReadyView struct {
	Status       string `json:"status"` // "ready"
	Leader       string `json:"leader"` // leader's node ID
	AppliedIndex uint64 `json:"applied_index"`
}

// healthz: the process is up and serving.
func (s *Server) healthz(w http.ResponseWriter, _ *http.Request) error {
	s.reply(w, http.StatusOK, HealthView{Status: "ok"})
	return nil
}

// readyz: this node knows a leader and its state is caught up. A leader is
// ready once it has taken over (barrier passed, live leases extended); a
// follower when it heard from the leader recently and has applied nearly
// everything it knows to be committed.
func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) error {
	_, leaderID := s.node.Leader()
	rf := s.node.Raft()
	applied := s.fsm.AppliedIndex()
	switch {
	case leaderID == "":
		return unavailable("not ready: no leader is known")
	case rf.State() == raft.Leader:
		if !s.node.IsLeader() {
			return unavailable("not ready: this node was just elected and is still taking over (catching up, extending leases)")
		}
	default:
		last := rf.LastContact()
		if last.IsZero() || time.Since(last) > s.cfg.ReadyMaxContact {
			return unavailable("not ready: no contact with the leader (%s) for over %s", leaderID, s.cfg.ReadyMaxContact)
		}
		if commit := rf.CommitIndex(); commit > applied+s.cfg.ReadyMaxLag {
			return unavailable("not ready: %d committed entries not yet applied here", commit-applied)
		}
	}
	s.reply(w, http.StatusOK, ReadyView{Status: "ready", Leader: leaderID, AppliedIndex: applied})
	return nil
}
