package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// Membership: who belongs to the cluster, in which role, and who leads.
// Every change of the Raft configuration goes through the methods below, on
// the leader; callers (the API, the daemon's join) never touch *raft.Raft.
// Each method refuses on a follower with ErrNotLeader before it changes
// anything, so the caller can send the request to LeaderInfo instead.

// Refusals of a membership change, besides ErrNotLeader and ErrNotFound.
var (
	// ErrRemoved: the node was removed from the cluster and asks to come
	// back with the data it had; only a fresh data dir may rejoin (its old
	// log would otherwise resurrect the state it held when it left).
	ErrRemoved = errors.New("node removed from the cluster")
	// ErrUnreachable: the address to add does not accept connections. A
	// voter nobody can reach costs the cluster its quorum.
	ErrUnreachable = errors.New("member unreachable")
	// ErrLastVoter: the change would leave no voter (remove the only one),
	// or there is no other voter to hand leadership to.
	ErrLastVoter = errors.New("no other voter")
	// ErrNotVoter: leadership can go to voters only.
	ErrNotVoter = errors.New("not a voter")
	// ErrAlreadyLeader: leadership transfer to the node that leads.
	ErrAlreadyLeader = errors.New("already the leader")
)

// Suffrage is whether a member votes. A nonvoter receives the log but
// counts for no quorum: how a joining node catches up before it votes.
type Suffrage string

// Suffrages.
const (
	Voter    Suffrage = "voter"
	Nonvoter Suffrage = "nonvoter"
)

// Role is a node's Raft state as the API shows it.
type Role string

// Roles.
const (
	RoleLeader    Role = "leader"
	RoleFollower  Role = "follower"
	RoleCandidate Role = "candidate"
	RoleUnknown   Role = "unknown" // shut down, or not yet started
)

// ConfigMember is one server of the Raft configuration.
type ConfigMember struct {
	ID       string
	RaftAddr string
	Suffrage Suffrage
}

// LeaderInfo is the leader as this node knows it. Its zero value means no
// leader is known.
type LeaderInfo struct {
	ID       string
	RaftAddr string // from Raft itself: where node-to-node requests go
	// APIAddr is from the leader's member record, "" until it has one: where
	// clients go. It is a hint for clients only; nodes trust RaftAddr.
	APIAddr string
}

// Known reports whether a leader is known.
func (l LeaderInfo) Known() bool { return l.ID != "" }

// Status is this node's own view of itself.
type Status struct {
	ID   string
	Role Role
	Term uint64
	// LastContact is when this node last heard from the leader; zero if
	// never. Meaningless on the leader.
	LastContact  time.Time
	CommitIndex  uint64 // the highest index this node knows committed
	AppliedIndex uint64 // the FSM's, which is what reads see
	Leader       LeaderInfo
}

// membershipTimeout bounds a configuration change when ctx has no deadline.
const membershipTimeout = 10 * time.Second

// transferWait bounds how long TransferLeadership waits to learn the new
// leader once Raft has handed leadership over.
const transferWait = 5 * time.Second

// dialCheckTimeout bounds AddMember's check that the new address answers.
const dialCheckTimeout = 2 * time.Second

func timeoutOf(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return membershipTimeout
}

// Role is this node's Raft state, at once, without asking anyone. A node
// in RoleLeader may still be taking over (see IsLeader).
func (n *Node) Role() Role {
	switch n.raft.State() {
	case raft.Leader:
		return RoleLeader
	case raft.Follower:
		return RoleFollower
	case raft.Candidate:
		return RoleCandidate
	}
	return RoleUnknown
}

// LeaderInfo is the one way to find the leader: its ID and Raft address
// from Raft, its API address from its member record. The zero value when
// no leader is known.
func (n *Node) LeaderInfo() LeaderInfo {
	l := n.LeaderRaft()
	if !l.Known() {
		return l
	}
	if m, ok := n.fsm.Member(l.ID); ok {
		l.APIAddr = m.APIAddr
	}
	return l
}

// LeaderRaft is LeaderInfo without the API address: Raft's own view, no
// read of the replicated state. The forwarder asks on every command it
// sends, and needs no more.
func (n *Node) LeaderRaft() LeaderInfo {
	addr, id := n.raft.LeaderWithID()
	if id == "" {
		return LeaderInfo{}
	}
	return LeaderInfo{ID: string(id), RaftAddr: string(addr)}
}

// SelfStatus is this node's role, term, contact with the leader and
// indexes, read locally. The leader is read first, so CommitIndex is at
// least what this node knew committed when it knew that leader.
func (n *Node) SelfStatus() Status {
	leader := n.LeaderInfo()
	return Status{
		ID:           n.cfg.NodeID,
		Role:         n.Role(),
		Term:         n.raft.CurrentTerm(),
		LastContact:  n.raft.LastContact(),
		CommitIndex:  n.raft.CommitIndex(),
		AppliedIndex: n.fsm.AppliedIndex(),
		Leader:       leader,
	}
}

// Members is the latest Raft configuration as this node knows it
// (committed or not), in the configuration's order. It works on any node.
func (n *Node) Members() ([]ConfigMember, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	servers := f.Configuration().Servers
	out := make([]ConfigMember, len(servers))
	for i, s := range servers {
		out[i] = ConfigMember{ID: string(s.ID), RaftAddr: string(s.Address), Suffrage: Nonvoter}
		if s.Suffrage == raft.Voter {
			out[i].Suffrage = Voter
		}
	}
	return out, nil
}

// member returns id's entry of the configuration.
func (n *Node) member(id string) (ConfigMember, bool, []ConfigMember, error) {
	ms, err := n.Members()
	if err != nil {
		return ConfigMember{}, false, nil, err
	}
	for _, m := range ms {
		if m.ID == id {
			return m, true, ms, nil
		}
	}
	return ConfigMember{}, false, ms, nil
}

func (n *Node) requireLeader() error {
	if n.raft.State() != raft.Leader {
		return fmt.Errorf("node %s: %w", n.cfg.NodeID, ErrNotLeader)
	}
	return nil
}

// JoinRequest is a node asking AddMember to be let in.
type JoinRequest struct {
	ID       string
	RaftAddr string // host:port of its cluster port
	APIAddr  string // "" keeps the one recorded, if any
	Voter    bool   // join as a voter at once rather than as a nonvoter
	// Fresh says the node has no Raft state: it may rejoin after a removal.
	Fresh bool
}

// AddMember lets a node into the cluster and records its addresses, on the
// leader. It returns once the configuration change is committed and the
// member record applied here. Asking again for what is already so (a node
// restarting and rejoining) changes nothing and succeeds; a nonvoter asking
// to join as a voter is made one.
//
// Refusals: ErrNotLeader on a follower; ErrRemoved for a removed node that
// is not Fresh; ErrUnreachable when the configuration must change and
// RaftAddr does not accept a TCP connection. Raft's own errors (a
// leadership change under way, a timeout) come back wrapped.
func (n *Node) AddMember(ctx context.Context, req JoinRequest) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	if m, ok := n.fsm.Member(req.ID); ok && m.Removed && !req.Fresh {
		return fmt.Errorf("%w: %s still has the data it had as a member; wipe its data dir and start it again with --join", ErrRemoved, req.ID)
	}
	existing, ok, _, err := n.member(req.ID)
	if err != nil {
		return err
	}
	if !ok || existing.RaftAddr != req.RaftAddr || (req.Voter && existing.Suffrage != Voter) {
		conn, err := net.DialTimeout("tcp", req.RaftAddr, dialCheckTimeout)
		if err != nil {
			return fmt.Errorf("%w: cannot reach raft_addr %s: %v; start the node first", ErrUnreachable, req.RaftAddr, err)
		}
		conn.Close()
		id, addr, timeout := raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), timeoutOf(ctx)
		var f raft.IndexFuture
		if req.Voter {
			f = n.raft.AddVoter(id, addr, 0, timeout)
		} else {
			f = n.raft.AddNonvoter(id, addr, 0, timeout)
		}
		if err := f.Error(); err != nil {
			return fmt.Errorf("add %s at %s: %w", req.ID, req.RaftAddr, err)
		}
		n.log.Info("member joined", "member", req.ID, "raft_addr", req.RaftAddr, "voter", req.Voter)
	}
	m := Member{ID: req.ID, APIAddr: req.APIAddr, RaftAddr: req.RaftAddr}
	old, ok := n.fsm.Member(req.ID)
	if m.APIAddr == "" {
		m.APIAddr = old.APIAddr // a join that names none keeps the known one
	}
	if !ok || old != m {
		if _, err := n.Apply(ctx, &SetMember{Member: m, Now: n.cfg.Clock().UnixNano()}); err != nil {
			return fmt.Errorf("record member %s: %w", req.ID, err)
		}
	}
	return nil
}

// Promote makes the nonvoter id a voter, on the leader, and returns once
// the change is committed; a voter stays one and Promote succeeds. A
// joining node asks once it has applied what the leader had committed.
//
// Refusals: ErrNotLeader on a follower; ErrNotFound when id is not in the
// configuration.
func (n *Node) Promote(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	m, ok, _, err := n.member(id)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("no member %q in the cluster configuration: %w", id, ErrNotFound)
	case m.Suffrage == Voter:
		return nil
	}
	if err := n.raft.AddVoter(raft.ServerID(m.ID), raft.ServerAddress(m.RaftAddr), 0, timeoutOf(ctx)).Error(); err != nil {
		return fmt.Errorf("promote %s: %w", id, err)
	}
	n.log.Info("member promoted to voter", "member", id)
	return nil
}

// RemoveMember takes id out of the cluster, on the leader: first it marks
// id's member record removed, while id still receives entries, so id learns
// it was removed and stops rather than waiting to be let back in; then it
// removes id from the configuration. It returns once both are committed.
// Removing the leader itself is allowed: Raft then hands leadership on.
//
// Refusals: ErrNotLeader on a follower; ErrNotFound when id is not in the
// configuration; ErrLastVoter when id is the only voter.
func (n *Node) RemoveMember(ctx context.Context, id string) error {
	if err := n.requireLeader(); err != nil {
		return err
	}
	_, ok, ms, err := n.member(id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("no member %q in the cluster configuration: %w", id, ErrNotFound)
	}
	voters := 0
	for _, m := range ms {
		if m.Suffrage == Voter && m.ID != id {
			voters++
		}
	}
	if voters == 0 {
		return fmt.Errorf("%s is the only voter; removing it would leave the cluster without members: %w", id, ErrLastVoter)
	}
	rec, _ := n.fsm.Member(id)
	rec.ID, rec.Removed = id, true
	if _, err := n.Apply(ctx, &SetMember{Member: rec, Now: n.cfg.Clock().UnixNano()}); err != nil {
		return fmt.Errorf("mark member %s removed: %w", id, err)
	}
	if err := n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx)).Error(); err != nil {
		return fmt.Errorf("remove member %s: %w", id, err)
	}
	n.log.Info("member removed", "member", id)
	return nil
}

// TransferLeadership hands leadership to the voter id, or to the most
// up-to-date other voter when id is "", and returns the leader once this
// node knows one other than itself. If none is known within transferWait
// it returns the leader it knows then (possibly itself, or none) with no
// error: Raft did hand over, the election is what is slow.
//
// Refusals: ErrNotLeader on a follower; ErrLastVoter when no other voter
// exists; ErrAlreadyLeader when id is this node; ErrNotFound when id is not
// in the configuration; ErrNotVoter when id is a nonvoter. ctx ending
// while it waits returns ctx's error.
func (n *Node) TransferLeadership(ctx context.Context, id string) (LeaderInfo, error) {
	if err := n.requireLeader(); err != nil {
		return LeaderInfo{}, err
	}
	target, found, ms, err := n.member(id)
	if err != nil {
		return LeaderInfo{}, err
	}
	self := n.cfg.NodeID
	others := 0
	for _, m := range ms {
		if m.Suffrage == Voter && m.ID != self {
			others++
		}
	}
	found = found && id != ""
	switch {
	case others == 0:
		return LeaderInfo{}, fmt.Errorf("this cluster has one voter (%s); there is no other member to transfer leadership to: %w", self, ErrLastVoter)
	case id == self:
		return LeaderInfo{}, fmt.Errorf("%s already leads: %w", self, ErrAlreadyLeader)
	case id != "" && !found:
		return LeaderInfo{}, fmt.Errorf("no member %q in the cluster configuration: %w", id, ErrNotFound)
	case found && target.Suffrage != Voter:
		return LeaderInfo{}, fmt.Errorf("member %s is not a voter and cannot lead: %w", id, ErrNotVoter)
	}

	// Observe before transferring, so the new leader's election is not missed.
	ch := make(chan raft.Observation, 8)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	n.raft.RegisterObserver(obs)
	defer n.raft.DeregisterObserver(obs)

	var f raft.Future
	if found {
		f = n.raft.LeadershipTransferToServer(raft.ServerID(target.ID), raft.ServerAddress(target.RaftAddr))
	} else {
		f = n.raft.LeadershipTransfer()
	}
	if err := f.Error(); err != nil {
		return LeaderInfo{}, fmt.Errorf("transfer leadership from %s: %w", self, err)
	}
	timer := time.NewTimer(transferWait)
	defer timer.Stop()
	for {
		if l := n.LeaderInfo(); l.Known() && l.ID != self {
			n.log.Info("leadership transferred", "from", self, "to", l.ID)
			return l, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return n.LeaderInfo(), nil
		case <-ctx.Done():
			return LeaderInfo{}, ctx.Err()
		}
	}
}
