package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
)

// memberViews describes the configuration: this node from its own Raft
// state, the others by asking each on its cluster port (host.SelfPath,
// mTLS) concurrently.
func (s *Server) memberViews(ctx context.Context) ([]MemberView, error) {
	conf, err := s.node.Members()
	if err != nil {
		return nil, err
	}
	leaderID := s.node.LeaderInfo().ID
	out := make([]MemberView, len(conf))
	var wg sync.WaitGroup
	for i, srv := range conf {
		m := MemberView{ID: srv.ID, Address: srv.RaftAddr, Role: string(cluster.RoleUnknown), Suffrage: string(srv.Suffrage)}
		switch {
		case srv.ID == s.node.ID():
			out[i] = s.selfView(m)
			continue
		case srv.ID == leaderID:
			m.Role = string(cluster.RoleLeader)
		case leaderID != "":
			m.Role = string(cluster.RoleFollower)
		}
		out[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := s.askSelf(ctx, m.Address); err == nil && v.ID == m.ID {
				v.Address, v.Suffrage = m.Address, m.Suffrage
				out[i] = v
			} else if m.Role != string(cluster.RoleLeader) {
				out[i].Role = "unreachable"
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// selfView fills m with this node's own state.
func (s *Server) selfView(m MemberView) MemberView {
	st := s.node.SelfStatus()
	m.Role = string(st.Role)
	m.AppliedIndex = &st.AppliedIndex
	m.Term = st.Term
	if st.Role == cluster.RoleLeader {
		lc := "0s"
		m.LastContact = &lc
	} else if !st.LastContact.IsZero() {
		lc := time.Since(st.LastContact).Round(time.Millisecond).String()
		m.LastContact = &lc
	}
	return m
}

// memberAskTimeout bounds each member's answer to a members listing.
const memberAskTimeout = 700 * time.Millisecond

func (s *Server) askSelf(ctx context.Context, raftAddr string) (MemberView, error) {
	if s.cfg.Peers == nil {
		return MemberView{}, errors.New("no client for other members configured")
	}
	ctx, cancel := context.WithTimeout(ctx, memberAskTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+raftAddr+host.SelfPath, nil)
	if err != nil {
		return MemberView{}, err
	}
	resp, err := s.cfg.Peers.Do(req)
	if err != nil {
		return MemberView{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return MemberView{}, fmt.Errorf("member %s: status %d", raftAddr, resp.StatusCode)
	}
	var v MemberView
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&v)
	return v, err
}

// self: GET /v1/cluster/self, this node as a member.
func (s *Server) self(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	m := MemberView{ID: s.node.ID(), Suffrage: string(cluster.Voter)}
	if conf, err := s.node.Members(); err == nil {
		for _, srv := range conf {
			if srv.ID == m.ID {
				m.Address, m.Suffrage = srv.RaftAddr, string(srv.Suffrage)
			}
		}
	}
	s.reply(w, http.StatusOK, s.selfView(m))
	return nil
}

func (s *Server) replyMembers(w http.ResponseWriter, r *http.Request) error {
	ms, err := s.memberViews(r.Context())
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, ms)
	return nil
}

// members: GET /v1/cluster/members.
func (s *Server) members(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	return s.replyMembers(w, r)
}

// join: POST /v1/cluster/join {"id","raft_addr","api_addr"} adds a node as
// a non-voter (a voter with "voter": true); the node asks for promotion
// once it has caught up. Joining again with the same address changes
// nothing. A removed member may rejoin only with fresh data.
func (s *Server) join(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req JoinRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := checkName("id", req.ID); err != nil {
		return err
	}
	if err := peerMayAct(r, req.ID); err != nil {
		return err
	}
	if req.RaftAddr == "" {
		return badRequest("raft_addr is required (host:port of the new node's Raft transport)")
	}
	if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
		return badRequest("raft_addr %q is not host:port", req.RaftAddr)
	}
	if err := s.node.AddMember(r.Context(), cluster.JoinRequest{ID: req.ID, RaftAddr: req.RaftAddr, APIAddr: req.APIAddr, Voter: req.Voter, Fresh: req.Fresh}); err != nil {
		return err
	}
	return s.replyMembers(w, r)
}

// promote: POST /v1/cluster/promote {"id"} makes a non-voter a voter. A
// joining node asks once it has applied what the leader had committed.
func (s *Server) promote(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req MemberRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if err := peerMayAct(r, req.ID); err != nil {
		return err
	}
	if err := s.node.Promote(r.Context(), req.ID); err != nil {
		return err
	}
	return s.replyMembers(w, r)
}

// remove: POST /v1/cluster/remove {"id"}.
func (s *Server) remove(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req MemberRequest
	if err := s.decodeJSON(w, r, &req, false); err != nil {
		return err
	}
	if req.ID == "" {
		return badRequest("id is required: the member to remove")
	}
	if err := s.node.RemoveMember(r.Context(), req.ID); err != nil {
		return err
	}
	return s.replyMembers(w, r)
}

// transfer: POST /v1/cluster/transfer {"id"}: hands leadership to id, or
// to the most up-to-date voter when id is "". Answers with the new leader.
func (s *Server) transfer(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	var req MemberRequest
	if err := s.decodeJSON(w, r, &req, true); err != nil {
		return err
	}
	l, err := s.node.TransferLeadership(r.Context(), req.ID)
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, TransferResult{Leader: l.ID})
	return nil
}

// state: GET /v1/cluster/state. The index and the hash are read in one
// view only when nothing is applied between them, so it retries until the
// index did not move.
func (s *Server) state(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	for {
		before := s.fsm.AppliedIndex()
		h, err := s.fsm.Hash()
		if err != nil {
			return fmt.Errorf("hash state: %w", err)
		}
		if s.fsm.AppliedIndex() == before {
			term := s.node.SelfStatus().Term
			s.reply(w, http.StatusOK, StateView{Node: s.node.ID(), AppliedIndex: before, Hash: h, FenceRejections: s.fsm.FenceRejections(), Term: term})
			return nil
		}
		if err := r.Context().Err(); err != nil {
			return err
		}
	}
}
