package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
)

// membershipTimeout bounds a configuration change when the request has no
// deadline of its own.
const membershipTimeout = 10 * time.Second

// transferWait bounds how long a transfer waits to learn the new leader.
const transferWait = 5 * time.Second

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return membershipTimeout
}

// configuration returns the latest Raft configuration.
func (s *Server) configuration() (raft.Configuration, error) {
	f := s.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, fmt.Errorf("read raft configuration: %w", err)
	}
	return f.Configuration(), nil
}

// memberViews describes the configuration: this node from its own Raft
// state, the others by asking each on its cluster port (host.SelfPath,
// mTLS) concurrently.
func (s *Server) memberViews(ctx context.Context) ([]MemberView, error) {
	conf, err := s.configuration()
	if err != nil {
		return nil, err
	}
	_, leaderID := s.node.Leader()
	out := make([]MemberView, len(conf.Servers))
	var wg sync.WaitGroup
	for i, srv := range conf.Servers {
		m := MemberView{ID: string(srv.ID), Address: string(srv.Address), Role: "unknown", Suffrage: "voter"}
		if srv.Suffrage != raft.Voter {
			m.Suffrage = "nonvoter"
		}
		switch {
		case string(srv.ID) == s.node.ID():
			out[i] = s.selfView(m)
			continue
		case string(srv.ID) == leaderID:
			m.Role = "leader"
		case leaderID != "":
			m.Role = "follower"
		}
		out[i] = m
		wg.Add(1)
		go func() {
			defer wg.Done()
			if v, err := s.askSelf(ctx, m.Address); err == nil && v.ID == m.ID {
				v.Address, v.Suffrage = m.Address, m.Suffrage
				out[i] = v
			} else if m.Role != "leader" {
				out[i].Role = "unreachable"
			}
		}()
	}
	wg.Wait()
	return out, nil
}

// selfView fills m with this node's own state.
func (s *Server) selfView(m MemberView) MemberView {
	r := s.node.Raft()
	m.Role = roleOf(r.State())
	applied := s.fsm.AppliedIndex()
	m.AppliedIndex = &applied
	m.Term, _ = strconv.ParseUint(r.Stats()["term"], 10, 64)
	if m.Role == "leader" {
		lc := "0s"
		m.LastContact = &lc
	} else if t := r.LastContact(); !t.IsZero() {
		lc := time.Since(t).Round(time.Millisecond).String()
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
	m := MemberView{ID: s.node.ID(), Suffrage: "voter"}
	if conf, err := s.configuration(); err == nil {
		for _, srv := range conf.Servers {
			if string(srv.ID) == m.ID {
				m.Address = string(srv.Address)
				if srv.Suffrage != raft.Voter {
					m.Suffrage = "nonvoter"
				}
			}
		}
	}
	s.reply(w, http.StatusOK, s.selfView(m))
	return nil
}

func roleOf(st raft.RaftState) string {
	switch st {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	}
	return "unknown"
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
	if s.node.Raft().State() != raft.Leader {
		return s.notLeader()
	}
	if m, ok := s.fsm.Member(req.ID); ok && m.Removed && !req.Fresh {
		return conflict("node %s was removed from the cluster and still has its old data; wipe its data dir and start it again with --join", req.ID)
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	var existing *raft.Server
	for i, srv := range conf.Servers {
		if string(srv.ID) == req.ID {
			existing = &conf.Servers[i]
		}
	}
	switch {
	case existing != nil && string(existing.Address) == req.RaftAddr && (existing.Suffrage == raft.Voter || !req.Voter):
		// Already there: a restart rejoining.
	default:
		// A voter that cannot be reached costs the cluster its quorum (one
		// node plus an unreachable voter is two of which one answers).
		conn, err := net.DialTimeout("tcp", req.RaftAddr, 2*time.Second)
		if err != nil {
			return badRequest("cannot reach raft_addr %s: %v; start the node first", req.RaftAddr, err)
		}
		conn.Close()
		var f raft.IndexFuture
		if req.Voter {
			f = s.node.Raft().AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, timeoutOf(r.Context()))
		} else {
			f = s.node.Raft().AddNonvoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, timeoutOf(r.Context()))
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("add %s at %s: %w", req.ID, req.RaftAddr, err)
		}
		s.log.Info("member joined", "member", req.ID, "raft_addr", req.RaftAddr, "voter", req.Voter)
	}
	m := cluster.Member{ID: req.ID, APIAddr: req.APIAddr, RaftAddr: req.RaftAddr}
	old, ok := s.fsm.Member(req.ID)
	if m.APIAddr == "" {
		m.APIAddr = old.APIAddr // a join that names none keeps the known one
	}
	if !ok || old != m {
		if _, err := s.c.Apply(r.Context(), &cluster.SetMember{Member: m, Now: s.cfg.Clock().UnixNano()}); err != nil {
			return fmt.Errorf("record member %s: %w", req.ID, err)
		}
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
	if s.node.Raft().State() != raft.Leader {
		return s.notLeader()
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	for _, srv := range conf.Servers {
		if string(srv.ID) != req.ID {
			continue
		}
		if srv.Suffrage != raft.Voter {
			f := s.node.Raft().AddVoter(srv.ID, srv.Address, 0, timeoutOf(r.Context()))
			if err := f.Error(); err != nil {
				return fmt.Errorf("promote %s: %w", req.ID, err)
			}
			s.log.Info("member promoted to voter", "member", req.ID)
		}
		return s.replyMembers(w, r)
	}
	return notFound("no member %q in the cluster configuration", req.ID)
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
	if s.node.Raft().State() != raft.Leader {
		return s.notLeader()
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	found, voters := false, 0
	for _, srv := range conf.Servers {
		found = found || string(srv.ID) == req.ID
		if srv.Suffrage == raft.Voter && string(srv.ID) != req.ID {
			voters++
		}
	}
	if !found {
		return notFound("no member %q in the cluster configuration", req.ID)
	}
	if voters == 0 {
		return conflict("%s is the only voter; removing it would leave the cluster without members", req.ID)
	}
	// Mark it first, while the member still receives entries: it learns it
	// was removed and stops, rather than waiting to be let back in.
	m, _ := s.fsm.Member(req.ID)
	m.ID, m.Removed = req.ID, true
	if _, err := s.c.Apply(r.Context(), &cluster.SetMember{Member: m, Now: s.cfg.Clock().UnixNano()}); err != nil {
		return fmt.Errorf("mark member %s removed: %w", req.ID, err)
	}
	f := s.node.Raft().RemoveServer(raft.ServerID(req.ID), 0, timeoutOf(r.Context()))
	if err := f.Error(); err != nil {
		return fmt.Errorf("remove member %s: %w", req.ID, err)
	}
	s.log.Info("member removed", "member", req.ID)
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
	rf := s.node.Raft()
	if rf.State() != raft.Leader {
		return s.notLeader()
	}
	conf, err := s.configuration()
	if err != nil {
		return err
	}
	self := s.node.ID()
	var target *raft.Server
	others := 0
	for i, srv := range conf.Servers {
		if srv.Suffrage == raft.Voter && string(srv.ID) != self {
			others++
		}
		if string(srv.ID) == req.ID {
			target = &conf.Servers[i]
		}
	}
	switch {
	case others == 0:
		return conflict("this cluster has one voter (%s); there is no other member to transfer leadership to", self)
	case req.ID == self:
		return conflict("%s already leads", self)
	case req.ID != "" && target == nil:
		return notFound("no member %q in the cluster configuration", req.ID)
	case target != nil && target.Suffrage != raft.Voter:
		return conflict("member %s is not a voter and cannot lead", req.ID)
	}

	// Observe before transferring, so the new leader's election is not missed.
	ch := make(chan raft.Observation, 8)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	rf.RegisterObserver(obs)
	defer rf.DeregisterObserver(obs)

	var f raft.Future
	if target != nil {
		f = rf.LeadershipTransferToServer(target.ID, target.Address)
	} else {
		f = rf.LeadershipTransfer()
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("transfer leadership from %s: %w", self, err)
	}
	timer := time.NewTimer(transferWait)
	defer timer.Stop()
	for {
		if _, id := s.node.Leader(); id != "" && id != self {
			s.log.Info("leadership transferred", "from", self, "to", id)
			s.reply(w, http.StatusOK, TransferResult{Leader: id})
			return nil
		}
		select {
		case <-ch:
		case <-timer.C:
			_, id := s.node.Leader()
			s.reply(w, http.StatusOK, TransferResult{Leader: id})
			return nil
		case <-r.Context().Done():
			return r.Context().Err()
		}
	}
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
			term, _ := strconv.ParseUint(s.node.Raft().Stats()["term"], 10, 64)
			s.reply(w, http.StatusOK, StateView{Node: s.node.ID(), AppliedIndex: before, Hash: h, FenceRejections: s.fsm.FenceRejections(), Term: term})
			return nil
		}
		if err := r.Context().Err(); err != nil {
			return err
		}
	}
}
