package cluster

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// membershipNodes opens n nodes over loopback with certificates from the
// first one's CA; only the first bootstraps, and it leads.
func membershipNodes(t *testing.T, n int) []*Node {
	t.Helper()
	clock := newFakeClock(time.Unix(1000, 0))
	cfgs := make([]Config, n)
	for i := range cfgs {
		cfgs[i] = testConfig(t, t.TempDir(), clock)
		cfgs[i].NodeID, cfgs[i].Bootstrap = fmt.Sprint("n", i+1), i == 0
		// The defaults' timeouts: several voters under the race detector on
		// a loaded machine flap with the single-node tests' 100 ms.
		d := DefaultConfig()
		cfgs[i].HeartbeatTimeout, cfgs[i].ElectionTimeout, cfgs[i].LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
	}
	nodes := openNodes(t, cfgs)
	if err := nodes[0].WaitLeader(ctxTimeout(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return nodes
}

// awaitTrue polls cond (membership changes reach other nodes through Raft,
// with nothing local to wait on) until it holds or d passes.
func awaitTrue(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func suffrageOf(t *testing.T, n *Node, id string) (Suffrage, bool) {
	t.Helper()
	ms, err := n.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.ID == id {
			return m.Suffrage, true
		}
	}
	return "", false
}

// TestMembershipRefusals: every change is refused on a follower, for an
// unknown member, and where it would leave no voter, before anything changes.
func TestMembershipRefusals(t *testing.T) {
	t.Parallel()
	nodes := membershipNodes(t, 2)
	n1, n2 := nodes[0], nodes[1]
	ctx := ctxTimeout(t, 30*time.Second)

	// n2 is in no configuration: a follower that knows no leader.
	if r := n2.Role(); r == RoleLeader {
		t.Fatalf("n2 role %s before it joined", r)
	}
	for name, err := range map[string]error{
		"add":      n2.AddMember(ctx, JoinRequest{ID: "n3", RaftAddr: n1.RaftAddr()}),
		"promote":  n2.Promote(ctx, "n1"),
		"remove":   n2.RemoveMember(ctx, "n1"),
		"transfer": func() error { _, err := n2.TransferLeadership(ctx, ""); return err }(),
	} {
		if !errors.Is(err, ErrNotLeader) {
			t.Errorf("%s on a follower: %v, want ErrNotLeader", name, err)
		}
	}
	if l := n2.LeaderInfo(); l.Known() || l != (LeaderInfo{}) {
		t.Fatalf("n2 knows a leader before it joined: %+v", l)
	}

	// One voter: nobody to remove it in favour of, nobody to lead instead.
	if err := n1.RemoveMember(ctx, "n1"); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("remove the only voter: %v, want ErrLastVoter", err)
	}
	if _, err := n1.TransferLeadership(ctx, ""); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("transfer with one voter: %v, want ErrLastVoter", err)
	}
	for name, err := range map[string]error{
		"promote": n1.Promote(ctx, "n9"),
		"remove":  n1.RemoveMember(ctx, "n9"),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s an unknown member: %v, want ErrNotFound", name, err)
		}
	}
	// Port 1 on loopback accepts nothing: adding it would cost the quorum.
	if err := n1.AddMember(ctx, JoinRequest{ID: "n9", RaftAddr: "127.0.0.1:1", Voter: true}); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("add an unreachable voter: %v, want ErrUnreachable", err)
	}
	if _, ok := suffrageOf(t, n1, "n9"); ok {
		t.Fatal("a refused member is in the configuration")
	}
	if _, ok := n1.FSM().Member("n9"); ok {
		t.Fatal("a refused member has a member record")
	}

	// Transfer refusals need a second member: a nonvoter cannot lead.
	if err := n1.AddMember(ctx, JoinRequest{ID: "n2", RaftAddr: n2.RaftAddr()}); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.TransferLeadership(ctx, "n2"); !errors.Is(err, ErrLastVoter) {
		t.Fatalf("transfer with a nonvoter as the only other member: %v, want ErrLastVoter", err)
	}
	if err := n1.Promote(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.TransferLeadership(ctx, "n1"); !errors.Is(err, ErrAlreadyLeader) {
		t.Fatalf("transfer to self: %v, want ErrAlreadyLeader", err)
	}
	if _, err := n1.TransferLeadership(ctx, "n9"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("transfer to an unknown member: %v, want ErrNotFound", err)
	}
	if n1.Role() != RoleLeader {
		t.Fatal("a refused transfer moved leadership")
	}
}

// TestMembershipLifecycle: join as a nonvoter, rejoin as a no-op, promote,
// hand leadership over, remove, and refuse a removed node's rejoin with its
// old data; the views (Members, LeaderInfo, SelfStatus) follow each step.
func TestMembershipLifecycle(t *testing.T) {
	t.Parallel()
	nodes := membershipNodes(t, 3)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	ctx := ctxTimeout(t, 60*time.Second)

	if l := n1.LeaderInfo(); l.ID != "n1" || l.RaftAddr != n1.RaftAddr() || l.APIAddr != "" {
		t.Fatalf("leader before any member record: %+v", l)
	}
	// The leader records itself as the daemon does (registerSelf).
	if err := n1.AddMember(ctx, JoinRequest{ID: "n1", RaftAddr: n1.RaftAddr(), APIAddr: "127.0.0.1:8081", Voter: true}); err != nil {
		t.Fatal(err)
	}
	if l := n1.LeaderInfo(); l.APIAddr != "127.0.0.1:8081" {
		t.Fatalf("leader's API address not taken from its record: %+v", l)
	}

	for _, n := range []*Node{n2, n3} {
		if err := n1.AddMember(ctx, JoinRequest{ID: n.ID(), RaftAddr: n.RaftAddr(), APIAddr: "api-" + n.ID()}); err != nil {
			t.Fatalf("add %s: %v", n.ID(), err)
		}
		if s, ok := suffrageOf(t, n1, n.ID()); !ok || s != Nonvoter {
			t.Fatalf("%s after joining: %q %v, want a nonvoter", n.ID(), s, ok)
		}
		if m, ok := n1.FSM().Member(n.ID()); !ok || m.APIAddr != "api-"+n.ID() || m.RaftAddr != n.RaftAddr() {
			t.Fatalf("%s's member record: %+v %v", n.ID(), m, ok)
		}
	}
	// A restart rejoining with what is already so appends nothing; one that
	// names no API address keeps the recorded one.
	last := n1.Raft().LastIndex()
	if err := n1.AddMember(ctx, JoinRequest{ID: "n2", RaftAddr: n2.RaftAddr()}); err != nil {
		t.Fatal(err)
	}
	if got := n1.Raft().LastIndex(); got != last {
		t.Fatalf("rejoin appended %d entries", got-last)
	}

	if err := n1.Promote(ctx, "n2"); err != nil {
		t.Fatal(err)
	}
	if s, _ := suffrageOf(t, n1, "n2"); s != Voter {
		t.Fatalf("n2 after promotion: %s", s)
	}
	last = n1.Raft().LastIndex()
	if err := n1.Promote(ctx, "n2"); err != nil || n1.Raft().LastIndex() != last {
		t.Fatalf("promoting a voter again: %v, %d entries", err, n1.Raft().LastIndex()-last)
	}
	if _, err := n1.TransferLeadership(ctx, "n3"); !errors.Is(err, ErrNotVoter) {
		t.Fatalf("transfer to a nonvoter: %v, want ErrNotVoter", err)
	}

	// A follower's view of itself and of the leader.
	awaitTrue(t, "n2 to follow n1", 10*time.Second, func() bool {
		st := n2.SelfStatus()
		return st.Leader.ID == "n1" && st.AppliedIndex >= n1.FSM().AppliedIndex()
	})
	st := n2.SelfStatus()
	if st.ID != "n2" || st.Role != RoleFollower || st.Term == 0 || st.LastContact.IsZero() || st.CommitIndex == 0 ||
		st.Leader != (LeaderInfo{ID: "n1", RaftAddr: n1.RaftAddr(), APIAddr: "127.0.0.1:8081"}) {
		t.Fatalf("n2's status: %+v", st)
	}
	if ls := n1.SelfStatus(); ls.Role != RoleLeader || ls.Term != st.Term || ls.AppliedIndex == 0 {
		t.Fatalf("n1's status: %+v (n2's term %d)", ls, st.Term)
	}

	// Remove marks the record first, then changes the configuration. Raft
	// sends a removed server one last round of entries, so a member that
	// lags by more than that never applies the mark: wait until n3 has
	// caught up, as a member of a healthy cluster has.
	awaitTrue(t, "n3 to catch up", 10*time.Second, func() bool { return n3.FSM().AppliedIndex() >= n1.FSM().AppliedIndex() })
	if err := n1.RemoveMember(ctx, "n3"); err != nil {
		t.Fatal(err)
	}
	if _, ok := suffrageOf(t, n1, "n3"); ok {
		t.Fatal("n3 still in the configuration after its removal")
	}
	if m, ok := n1.FSM().Member("n3"); !ok || !m.Removed || m.APIAddr != "api-n3" {
		t.Fatalf("n3's record after removal: %+v %v", m, ok)
	}
	awaitTrue(t, "n3 to learn it was removed", 10*time.Second, func() bool {
		m, ok := n3.FSM().Member("n3")
		return ok && m.Removed
	})
	if err := n1.AddMember(ctx, JoinRequest{ID: "n3", RaftAddr: n3.RaftAddr()}); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed node rejoining with its data: %v, want ErrRemoved", err)
	}
	if _, ok := suffrageOf(t, n1, "n3"); ok {
		t.Fatal("a refused rejoin changed the configuration")
	}
	// Fresh (a wiped data dir) may come back: the record is no longer removed.
	if err := n1.AddMember(ctx, JoinRequest{ID: "n3", RaftAddr: n3.RaftAddr(), Fresh: true}); err != nil {
		t.Fatalf("a fresh rejoin: %v", err)
	}
	if m, _ := n1.FSM().Member("n3"); m.Removed || m.APIAddr != "api-n3" {
		t.Fatalf("n3's record after a fresh rejoin: %+v", m)
	}

	// Any voter: the only other one, n2, takes over and everyone agrees.
	l, err := n1.TransferLeadership(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.ID != "n2" || l.RaftAddr != n2.RaftAddr() || l.APIAddr != "api-n2" {
		t.Fatalf("transfer answered %+v, want n2", l)
	}
	awaitTrue(t, "n2 to lead", 10*time.Second, func() bool { return n2.Role() == RoleLeader })
	if err := n1.Promote(ctx, "n2"); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("the old leader after the transfer: %v, want ErrNotLeader", err)
	}
}
