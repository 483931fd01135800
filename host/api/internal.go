package api

import (
	"net/http"
	"strings"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
)

// Internal is the node-to-node side of the API, served on the cluster
// port (host mounts it): join, promote and self, for nodes only. A caller
// proves it is one with a certificate from the cluster CA; the admin token
// plays no part. Writes sent to a follower answer 421 naming the leader's
// cluster address (not its API address: nodes talk on the cluster port).
func (s *Server) Internal() http.Handler {
	mux := http.NewServeMux()
	s.nodeRoute(mux, "POST "+host.JoinPath, s.join)
	s.nodeRoute(mux, "POST "+host.PromotePath, s.promote)
	s.nodeRoute(mux, "GET "+host.SelfPath, s.self)
	return mux
}

func (s *Server) nodeRoute(mux *http.ServeMux, pattern string, h func(http.ResponseWriter, *http.Request) error) {
	write := strings.HasPrefix(pattern, "POST ")
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if _, ok := s.node.VerifiedPeer(r.TLS); !ok {
			s.reply(w, http.StatusUnauthorized, ErrorBody{Error: "a node certificate from the cluster CA is required", Code: CodeUnauthorized})
			return
		}
		if write && s.node.Role() != cluster.RoleLeader {
			l := s.node.LeaderInfo()
			s.reply(w, http.StatusMisdirectedRequest, ErrorBody{Error: "node " + s.node.ID() + " is not the leader", Code: CodeNotLeader, Leader: &l.RaftAddr, LeaderID: l.ID})
			return
		}
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// peerMayAct refuses a node acting for another node ID than its
// certificate names (a node joins and promotes itself only). Requests
// with no verified node certificate (the admin API) pass.
func peerMayAct(r *http.Request, id string) error {
	if peer, ok := cluster.PeerNodeID(r.TLS); ok && peer != id {
		return newError(http.StatusForbidden, "forbidden", "the node certificate names %s, not %s", peer, id)
	}
	return nil
}
