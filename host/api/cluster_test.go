package api_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
)

// TestClusterSingleNode: the membership routes tell the truth about a
// one-member cluster and refuse what it cannot do.
func TestClusterSingleNode(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var ms []api.MemberView
	r := f.do("GET", "/v1/cluster/members", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &ms)
	if len(ms) != 1 || ms[0].ID != "n1" || ms[0].Role != "leader" || ms[0].Suffrage != "voter" || ms[0].AppliedIndex == nil || ms[0].Address == "" {
		t.Fatalf("members = %s", r.body)
	}

	tests := []struct {
		name, path string
		body       any
		status     int
		code, msg  string
	}{
		{"transfer with nobody to take it", "/v1/cluster/transfer", nil, http.StatusConflict, api.CodeConflict, "one voter"},
		{"transfer to self", "/v1/cluster/transfer", api.MemberRequest{ID: "n1"}, http.StatusConflict, api.CodeConflict, "one voter"},
		{"remove the only voter", "/v1/cluster/remove", api.MemberRequest{ID: "n1"}, http.StatusConflict, api.CodeConflict, "only voter"},
		{"remove a stranger", "/v1/cluster/remove", api.MemberRequest{ID: "n9"}, http.StatusNotFound, api.CodeNotFound, "n9"},
		{"remove without id", "/v1/cluster/remove", `{}`, http.StatusBadRequest, api.CodeBadRequest, "id"},
		{"join without address", "/v1/cluster/join", api.JoinRequest{ID: "n2"}, http.StatusBadRequest, api.CodeBadRequest, "raft_addr"},
		{"join with a bad address", "/v1/cluster/join", api.JoinRequest{ID: "n2", RaftAddr: "nowhere"}, http.StatusBadRequest, api.CodeBadRequest, "host:port"},
		{"join an unreachable node", "/v1/cluster/join", api.JoinRequest{ID: "n2", RaftAddr: "127.0.0.1:1"}, http.StatusBadRequest, api.CodeBadRequest, "cannot reach"},
		{"join with an unknown field", "/v1/cluster/join", `{"id":"n2","addr":"x:1"}`, http.StatusBadRequest, api.CodeBadRequest, `"addr"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("POST", tc.path, tc.body)
			want(t, r, tc.status, tc.code)
			if !strings.Contains(r.errBody(t).Error, tc.msg) {
				t.Fatalf("message %q does not mention %q", r.errBody(t).Error, tc.msg)
			}
		})
	}
}

// TestClusterJoinTransferRemove grows the cluster to two nodes through the
// API, hands leadership over, checks that the old leader, served without a
// write chain to the leader, now answers writes with 421 naming the new
// one, and shrinks the cluster back.
func TestClusterJoinTransferRemove(t *testing.T) {
	t.Parallel()
	// Timeouts roomier than the other tests': two nodes electing on a
	// loaded 2-core machine must not flap mid-transfer.
	f := &fixture{t: t}
	f.node, _ = openNodeTimeout(t, "n1", true, 500*time.Millisecond)
	f.api, f.url = f.serve(nil)
	f.pushHello("hello", "v1")
	n2, n2Addr := openNodeTimeout(t, "n2", false, 500*time.Millisecond)
	var ms []api.MemberView
	r := f.do("POST", "/v1/cluster/join", api.JoinRequest{ID: "n2", RaftAddr: n2Addr, APIAddr: "127.0.0.1:17070"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &ms)
	if len(ms) != 2 || ms[1].ID != "n2" || ms[1].Role != "unreachable" || ms[1].Suffrage != "nonvoter" || ms[1].AppliedIndex != nil {
		t.Fatalf("members after join = %s", r.body)
	}
	// A non-voter cannot lead.
	want(t, f.do("POST", "/v1/cluster/transfer", api.MemberRequest{ID: "n2"}), http.StatusConflict, api.CodeConflict)
	waitCaughtUp(t, f.node, n2)
	r = f.do("POST", "/v1/cluster/promote", api.MemberRequest{ID: "n2"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &ms)
	if len(ms) != 2 || ms[1].Suffrage != "voter" {
		t.Fatalf("members after promote = %s", r.body)
	}
	// Joining again with the same address changes nothing.
	want(t, f.do("POST", "/v1/cluster/join", api.JoinRequest{ID: "n2", RaftAddr: n2Addr}), http.StatusOK, "")
	r = f.do("GET", "/v1/cluster/members", nil)
	r.decode(t, &ms)
	if len(ms) != 2 || ms[1].Suffrage != "voter" {
		t.Fatalf("a second join changed the member: %s", r.body)
	}
	want(t, f.do("POST", "/v1/cluster/promote", api.MemberRequest{ID: "n9"}), http.StatusNotFound, api.CodeNotFound)

	r = f.do("POST", "/v1/cluster/transfer", api.MemberRequest{ID: "n2"})
	want(t, r, http.StatusOK, "")
	var tr api.TransferResult
	r.decode(t, &tr)
	if tr.Leader != "n2" {
		t.Fatalf("transfer = %s", r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n2.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}

	// Served without CatchUp (no write chain to the leader), the old
	// leader answers writes with the leader it knows, and the API address
	// the join recorded.
	f.api.Close()
	_, url := f.serve(nil)
	r = doURL(t, url, "POST", "/v1/tasks", api.SubmitRequest{Agent: "hello"}, "Bearer "+testToken)
	want(t, r, http.StatusMisdirectedRequest, api.CodeNotLeader)
	e := r.errBody(t)
	if e.Leader == nil || *e.Leader != "127.0.0.1:17070" || e.LeaderID != "n2" || !strings.Contains(e.Error, "n2") {
		t.Fatalf("not_leader body = %s", r.body)
	}
	want(t, doURL(t, url, "POST", "/v1/agents?name=x", helloWasm(t), "Bearer "+testToken), http.StatusMisdirectedRequest, api.CodeNotLeader)
	r = doURL(t, url, "GET", "/readyz", nil, "")
	want(t, r, http.StatusOK, "")

	// The new leader removes the old one.
	g := &fixture{t: t, node: n2}
	_, g.url = g.serve(nil)
	r = g.do("POST", "/v1/cluster/remove", api.MemberRequest{ID: "n1"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &ms)
	if len(ms) != 1 || ms[0].ID != "n2" || ms[0].Role != "leader" {
		t.Fatalf("members after remove = %s", r.body)
	}
	// The removed member is marked, and may come back only with fresh data.
	if m, ok := n2.FSM().Member("n1"); !ok || !m.Removed {
		t.Fatalf("member record of n1 = %+v, %v; want removed", m, ok)
	}
	r = g.do("POST", "/v1/cluster/join", api.JoinRequest{ID: "n1", RaftAddr: "127.0.0.1:1"})
	want(t, r, http.StatusConflict, api.CodeConflict)
	if !strings.Contains(string(r.body), "wipe") {
		t.Fatalf("rejoin refusal does not say what to do: %s", r.body)
	}
}

// TestFollowerTakesWrites: served as a daemon serves it (Writes through
// the forwarder, CatchUp), a follower takes client writes and reads them
// back at once, and sees writes made on the leader a moment before; only
// membership changes are refused with 421.
func TestFollowerTakesWrites(t *testing.T) {
	t.Parallel()
	f := &fixture{t: t}
	// Two voters lose their leader whenever one stalls past the leader
	// lease; this test is about forwarding, so it tolerates long stalls.
	f.node, _ = openNodeTimeout(t, "n1", true, 2*time.Second)
	f.api, f.url = f.serve(nil)
	n2, n2Addr := openNodeTimeout(t, "n2", false, 2*time.Second)
	if err := f.node.Raft().AddVoter("n2", raft.ServerAddress(n2Addr), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*cluster.Node{f.node, n2} {
		srv := &http.Server{Handler: host.InternalHandler(n, nil, nil, testLogger(t))}
		go srv.Serve(n.InternalListener())
		t.Cleanup(func() { srv.Close() })
	}
	waitCaughtUp(t, f.node, n2)
	fwd := host.NewForwarder(n2, nil, testLogger(t))
	t.Cleanup(fwd.Close)
	g := &fixture{t: t, node: n2}
	g.api, g.url = g.serve(func(c *api.Config) { c.Writes, c.CatchUp = fwd, fwd.CatchUp })

	// Pushed on the leader, submitted on the follower at once.
	f.pushHello("hello", "v1")
	tk := g.submit(api.SubmitRequest{Agent: "hello"})
	if tk.Version != "v1" || tk.State != cluster.StateQueued {
		t.Fatalf("submitted on the follower: %+v", tk)
	}
	want(t, g.do("GET", "/v1/tasks/"+tk.ID, nil), http.StatusOK, "")
	r := g.do("POST", "/v1/tasks/"+tk.ID+"/cancel", api.ReasonRequest{Reason: "not needed"})
	want(t, r, http.StatusOK, "")
	var v api.TaskView
	r.decode(t, &v)
	if v.State != cluster.StateCancelled {
		t.Fatalf("cancelled on the follower: %s", r.body)
	}
	dl := f.deadLetter("hello", "bad input")
	want(t, g.do("POST", "/v1/dlq/"+dl.ID+"/discard", api.ReasonRequest{Reason: "r"}), http.StatusOK, "")
	// Pushed on the follower, the newest version on the leader at once.
	if av := g.pushHello("hello", "v2"); av.Version != "v2" {
		t.Fatalf("pushed on the follower: %+v", av)
	}
	if v := f.submit(api.SubmitRequest{Agent: "hello"}); v.Version != "v2" {
		t.Fatalf("submitted on the leader after a push on the follower: version %s, want v2", v.Version)
	}
	want(t, g.do("POST", "/v1/cluster/transfer", nil), http.StatusMisdirectedRequest, api.CodeNotLeader)

	// A follower that cannot catch up proposes nothing and says why.
	for _, tc := range []struct {
		err    error
		status int
		code   string
	}{
		{fmt.Errorf("no leader known: %w", cluster.ErrNotLeader), http.StatusMisdirectedRequest, api.CodeNotLeader},
		{fmt.Errorf("catch up: %w", context.DeadlineExceeded), http.StatusServiceUnavailable, api.CodeUnavailable},
	} {
		h := &fixture{t: t, node: n2}
		_, h.url = h.serve(func(c *api.Config) {
			c.Writes, c.CatchUp = fwd, func(context.Context) error { return tc.err }
		})
		want(t, h.do("POST", "/v1/tasks", api.SubmitRequest{Agent: "hello", IdempotencyKey: "never"}), tc.status, tc.code)
	}
	if ts, err := f.node.FSM().Tasks(cluster.TaskFilter{}); err != nil || len(ts) != 3 {
		t.Fatalf("the leader holds %d tasks (%v), want 3", len(ts), err)
	}
}

// waitCaughtUp blocks until follower knows leader's leadership and has
// applied everything the leader has, waking on each batch it applies.
func waitCaughtUp(t *testing.T, leader, follower *cluster.Node) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := follower.FSM().Changed()
		if follower.LeaderInfo().ID == leader.ID() && follower.FSM().AppliedIndex() >= leader.FSM().AppliedIndex() {
			return
		}
		select {
		case <-changed:
		case <-time.After(20 * time.Millisecond): // leadership news comes without an apply
		case <-deadline:
			t.Fatalf("%s did not catch up with %s", follower.ID(), leader.ID())
		}
	}
}
