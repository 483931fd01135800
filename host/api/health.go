package api

import (
	"net/http"
	"time"

	"github.com/orloj/orloj/cluster"
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
	st := s.node.SelfStatus()
	applied := st.AppliedIndex
	switch {
	case !st.Leader.Known():
		return unavailable("not ready: no leader is known")
	case st.Role == cluster.RoleLeader:
		if !s.node.IsLeader() {
			return unavailable("not ready: this node was just elected and is still taking over (catching up, extending leases)")
		}
	default:
		if st.LastContact.IsZero() || time.Since(st.LastContact) > s.cfg.ReadyMaxContact {
			return unavailable("not ready: no contact with the leader (%s) for over %s", st.Leader.ID, s.cfg.ReadyMaxContact)
		}
		if st.CommitIndex > applied+s.cfg.ReadyMaxLag {
			return unavailable("not ready: %d committed entries not yet applied here", st.CommitIndex-applied)
		}
	}
	s.reply(w, http.StatusOK, ReadyView{Status: "ready", Leader: st.Leader.ID, AppliedIndex: applied})
	return nil
}
