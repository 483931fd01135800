package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orloj/orloj/cluster"
)

// twoNodes is a leader (n1) and a caught-up follower (n2), n2 holding a
// certificate n1's CA signed, each serving ForwardPath and ReadIndexPath on
// its cluster port.
// The addresses returned are the cluster ports.
func twoNodes(t *testing.T, m *Metrics) (n1, n2 *cluster.Node, addr1, addr2 string) {
	t.Helper()
	log := testLogger(t)
	// The defaults' Raft timeouts: two voters beside the rest of the suite
	// under the race detector lose their leader with the 100 ms of nodeConfig.
	slow := func(c cluster.Config) cluster.Config {
		d := cluster.DefaultConfig()
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
		return c
	}
	cfg1 := slow(nodeConfig(t.TempDir(), freeAddr(t), log))
	var err error
	if n1, err = cluster.Open(cfg1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n1.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n1.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	cfg2 := slow(nodeConfig(t.TempDir(), freeAddr(t), log))
	cfg2.NodeID, cfg2.Bootstrap = "n2", false
	cfg2.PKI = issuePKI(t, n1.PKI(), cfg2.DataDir, "n2")
	if n2, err = cluster.Open(cfg2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	if err := n1.Raft().AddVoter("n2", raft.ServerAddress(cfg2.RaftAddr), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*cluster.Node{n1, n2} {
		mux := http.NewServeMux()
		mux.Handle(ForwardPath, ForwardHandler(n, m, log))
		mux.Handle(ReadIndexPath, ReadIndexHandler(n, log))
		srv := &http.Server{Handler: mux}
		go srv.Serve(n.InternalListener())
		t.Cleanup(func() { srv.Close() })
	}
	self := cluster.Member{ID: "n1", RaftAddr: cfg1.RaftAddr}
	r, idx, err := n1.ApplyIndexed(ctx, &cluster.SetMember{Member: self, Now: time.Now().UnixNano()})
	if err != nil || r == nil {
		t.Fatal(err)
	}
	if err := n2.FSM().WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	return n1, n2, n1.RaftAddr(), n2.RaftAddr()
}

// issuePKI signs a certificate for nodeID with ca and installs it in dir,
// as enrollment does.
func issuePKI(t *testing.T, ca *cluster.PKI, dir, nodeID string) *cluster.PKI {
	t.Helper()
	csr, key, err := cluster.NewCSR(nodeID)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(csr, nodeID, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	p, err := cluster.InstallPKI(dir, cert, key, ca.CAPEM(), ca.CAKeyPEM(), ca.JoinToken().String())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// A follower's worker claims, renews and is fenced through the leader, and
// finds its claim in its own replica the moment the claim returns.
func TestForwarderThroughLeader(t *testing.T) {
	n1, n2, _, _ := twoNodes(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ag := cluster.Agent{Name: "a", Version: "v1"}
	if _, err := cluster.ProposeAgent(ctx, n1, ag, []byte("\x00asm\x01\x00\x00\x00"), time.Now().UnixNano()); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.Apply(ctx, &cluster.SubmitTask{Task: cluster.Task{ID: "t1", Agent: "a", Version: "v1", Input: []byte(`{}`)}, Now: time.Now().UnixNano()}); err != nil {
		t.Fatal(err)
	}
	f := NewForwarder(n2, nil, testLogger(t))
	defer f.Close()
	r, err := f.Apply(ctx, &cluster.ClaimTask{Node: "n2", TTL: time.Minute, Now: time.Now().UnixNano()})
	if err != nil {
		t.Fatal(err)
	}
	c, ok := r.(*cluster.Claim)
	if !ok || c.Task.ID != "t1" || c.Lease.Node != "n2" {
		t.Fatalf("claim through the leader = %#v", r)
	}
	// Read-your-claim on the follower's own replica, without waiting.
	if tk, err := n2.FSM().Task("t1"); err != nil || tk.State != cluster.StateRunning || tk.Lease == nil || tk.Lease.Token != c.Lease.Token {
		t.Fatalf("follower replica after the claim returned: %+v, %v", tk, err)
	}
	r, err = f.Apply(ctx, &cluster.RenewLease{TaskID: "t1", Token: c.Lease.Token, TTL: time.Minute, Now: time.Now().UnixNano()})
	if l, ok := r.(cluster.Lease); err != nil || !ok || l.Token != c.Lease.Token {
		t.Fatalf("renew through the leader = %#v, %v", r, err)
	}
	_, err = f.Apply(ctx, &cluster.RenewLease{TaskID: "t1", Token: c.Lease.Token - 1, TTL: time.Minute, Now: time.Now().UnixNano()})
	if !errors.Is(err, cluster.ErrStaleToken) {
		t.Fatalf("renew with a stale token = %v; want ErrStaleToken", err)
	}
	if n := n1.FSM().FenceRejections(); n != 1 {
		t.Fatalf("leader counted %d fenced writes, want 1", n)
	}
}

// awaitRoles waits until n1 leads and n2 follows it.
func awaitRoles(t *testing.T, n1, n2 *cluster.Node) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !n1.IsLeader() || n2.LeaderInfo().ID != n1.ID() {
		select {
		case <-ctx.Done():
			t.Fatal("n1 did not lead with n2 following")
		case <-time.After(20 * time.Millisecond): // a poll interval: roles have no event to wait on here
		}
	}
}

// The forward route takes only nodes' commands, from a node, on the
// leader: a client without a node certificate is refused, and one with a
// certificate from another cluster's CA does not get a connection.
func TestForwardHandlerRefuses(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	n1, n2, addr1, addr2 := twoNodes(t, m)
	claim, _ := cluster.Encode(&cluster.ClaimTask{Node: "x", TTL: time.Second, Now: 1})
	expire, _ := cluster.Encode(&cluster.ExpireLease{TaskID: "t", Token: 1, Now: 1})
	node := NewClusterClient(n1.PKI().ClientTLS(), nil)
	anon := n1.PKI().ClientTLS()
	anon.Certificates = nil // trusts the cluster, proves nothing
	stranger := NewClusterClient(anon, nil)
	for _, c := range []struct {
		name, addr string
		client     *http.Client
		body       []byte
		want       int
	}{
		{"no node certificate", addr1, stranger, claim, http.StatusUnauthorized},
		{"a leader's own duty", addr1, node, expire, http.StatusForbidden},
		{"garbage", addr1, node, []byte{0x7f, '{'}, http.StatusBadRequest},
		{"over the command limit", addr1, node, append([]byte{byte(cluster.MsgClaimTask)}, bytes.Repeat([]byte(" "), cluster.MaxCommandBytes+1)...), http.StatusRequestEntityTooLarge},
	} {
		resp, err := c.client.Post("https://"+c.addr+ForwardPath, "application/octet-stream", bytes.NewReader(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
		if c.want == http.StatusRequestEntityTooLarge {
			var rep cluster.Reply
			if err := json.Unmarshal(raw, &rep); err != nil || rep.Code != "too_large" || rep.Index != 0 {
				t.Errorf("%s: reply %s; want code too_large at index 0", c.name, raw)
			}
		}
	}
	// The follower refuses (421) and the leader applies. Two voters on a
	// loaded machine can lose their leader for a moment, so a pair whose
	// answers show the roles had moved is asked again once they are back;
	// the metrics must count every answer given.
	refused, applied := 0.0, 0.0
	for try := 0; ; try++ {
		awaitRoles(t, n1, n2)
		got := map[string]int{}
		for name, addr := range map[string]string{"follower": addr2, "leader": addr1} {
			resp, err := node.Post("https://"+addr+ForwardPath, "application/octet-stream", bytes.NewReader(claim))
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			resp.Body.Close()
			got[name] = resp.StatusCode
			switch resp.StatusCode {
			case http.StatusOK:
				applied++
			case http.StatusMisdirectedRequest:
				refused++
			}
		}
		if got["follower"] == http.StatusMisdirectedRequest && got["leader"] == http.StatusOK {
			break
		}
		if try == 4 {
			t.Fatalf("follower and leader answered %v five times; want 421 and 200", got)
		}
	}
	other, err := cluster.BootstrapPKI(t.TempDir(), "n9", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := NewClusterClient(other.ClientTLS(), nil).Post("https://"+addr1+ForwardPath, "application/octet-stream", bytes.NewReader(claim)); err == nil {
		resp.Body.Close()
		t.Fatalf("a node of another cluster got an answer: %s", resp.Status)
	}
	for _, c := range []struct {
		command, result string
		want            float64
	}{{"unknown", "refused", 3}, {"expire_lease", "refused", 1}, {"claim_task", "refused", refused}, {"claim_task", "applied", applied}} {
		if got := testutil.ToFloat64(m.forwarded.WithLabelValues(c.command, c.result)); got != c.want {
			t.Errorf("orloj_forwarded_commands_total{%s,%s} = %v, want %v", c.command, c.result, got, c.want)
		}
	}
}

// A follower's API writes go through the leader: CatchUp brings the
// replica up to every acknowledged write first, and a forwarded write is
// readable on the follower the moment it returns. Modules too large for
// one entry travel as forwarded chunks.
func TestForwarderClientWrites(t *testing.T) {
	n1, n2, _, _ := twoNodes(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	f1, f2 := NewForwarder(n1, nil, testLogger(t)), NewForwarder(n2, nil, testLogger(t))
	defer f1.Close()
	defer f2.Close()
	if _, err := n2.ReadIndex(ctx); !errors.Is(err, cluster.ErrNotLeader) {
		t.Fatalf("read index on a follower: %v, want ErrNotLeader", err)
	}
	if err := f1.CatchUp(ctx); err != nil {
		t.Fatalf("catch up on the leader: %v", err)
	}

	// Written on the leader, read on the follower after CatchUp.
	var last uint64
	for i := range 20 {
		_, idx, err := n1.ApplyIndexed(ctx, &cluster.PutAgent{Agent: cluster.Agent{Name: "a", Version: fmt.Sprintf("v%d", i)}, Module: []byte{byte(i)}, Now: time.Now().UnixNano()})
		if err != nil {
			t.Fatal(err)
		}
		last = idx
	}
	if err := f2.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n2.FSM().AppliedIndex(); got < last {
		t.Fatalf("after CatchUp the follower applied %d, the leader had acknowledged %d", got, last)
	}
	if _, err := n2.FSM().Agent("a", "v19"); err != nil {
		t.Fatalf("agent pushed on the leader, after CatchUp on the follower: %v", err)
	}

	// Written through the follower, read there at once.
	r, err := f2.Apply(ctx, &cluster.SubmitTask{Task: cluster.Task{ID: "t1", Agent: "a", Version: "v19"}, Now: time.Now().UnixNano()})
	if res, ok := r.(cluster.SubmitResult); err != nil || !ok || res.Task.ID != "t1" {
		t.Fatalf("submit through the follower = %#v, %v", r, err)
	}
	if tk, err := n2.FSM().Task("t1"); err != nil || tk.State != cluster.StateQueued {
		t.Fatalf("follower replica after a forwarded submit: %+v, %v", tk, err)
	}
	if _, err := f2.Apply(ctx, &cluster.SubmitTask{Task: cluster.Task{ID: "t2", Agent: "nope", Version: "v1"}, Now: 1}); !errors.Is(err, cluster.ErrUnknownAgent) {
		t.Fatalf("forwarded submit of an unknown agent: %v, want ErrUnknownAgent", err)
	}
	r, err = f2.Apply(ctx, &cluster.CancelTask{TaskID: "t1", Reason: "r", Now: time.Now().UnixNano()})
	if tk, ok := r.(cluster.Task); err != nil || !ok || tk.State != cluster.StateCancelled {
		t.Fatalf("cancel through the follower = %#v, %v", r, err)
	}

	// A module of several chunks, pushed through the follower.
	module := bytes.Repeat([]byte("orloj"), (3*cluster.MaxInlineModule)/5)
	ag, err := cluster.ProposeAgent(ctx, f2, cluster.Agent{Name: "big", Version: "v1"}, module, time.Now().UnixNano())
	if err != nil {
		t.Fatalf("chunked push through the follower: %v", err)
	}
	for _, n := range []*cluster.Node{n1, n2} {
		got, err := n.FSM().Agent("big", "v1")
		if err != nil || got.Digest != ag.Digest || got.Size != len(module) {
			t.Fatalf("node %s: big@v1 = %+v, %v", n.ID(), got, err)
		}
	}
}

// A follower's completion of a task, and a resubmission of its key,
// answer the whole task record through the forward route: input and
// output at their limits.
func TestForwardedReplyHoldsAWholeTask(t *testing.T) {
	n1, n2, _, _ := twoNodes(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f2 := NewForwarder(n2, nil, testLogger(t))
	defer f2.Close()
	now := time.Now().UnixNano()
	if _, err := n1.Apply(ctx, &cluster.PutAgent{Agent: cluster.Agent{Name: "a", Version: "v1"}, Module: []byte("m"), Now: now}); err != nil {
		t.Fatal(err)
	}
	big := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }
	sub := &cluster.SubmitTask{Task: cluster.Task{ID: "t1", Agent: "a", Version: "v1", IdempotencyKey: "k", Input: big(cluster.MaxInputBytes)}, Now: now}
	if _, err := f2.Apply(ctx, sub); err != nil {
		t.Fatalf("submit: %v", err)
	}
	r, err := f2.Apply(ctx, &cluster.ClaimTask{Node: "n2", TTL: time.Minute, Now: time.Now().UnixNano()})
	c, ok := r.(*cluster.Claim)
	if err != nil || !ok || c == nil {
		t.Fatalf("claim: %v, %v", r, err)
	}
	r, err = f2.Apply(ctx, &cluster.CompleteTask{TaskID: "t1", Token: c.Lease.Token, Output: big(cluster.MaxOutputBytes), Now: time.Now().UnixNano()})
	if tk, ok := r.(cluster.Task); err != nil || !ok || tk.State != cluster.StateSucceeded {
		t.Fatalf("completion through the follower: %v", err)
	}
	sub.Task.ID = "t2"
	r, err = f2.Apply(ctx, sub)
	res, ok := r.(cluster.SubmitResult)
	if err != nil || !ok || !res.Existing || res.Task.ID != "t1" || len(res.Task.Output) != cluster.MaxOutputBytes {
		t.Fatalf("resubmission through the follower: existing %v, task %q, %d output bytes, %v", res.Existing, res.Task.ID, len(res.Task.Output), err)
	}
}

// The reply limit holds the largest task record the FSM can keep, as the
// leader writes it: input and output at their limits, a history line per
// attempt, the last error and stderr tail, every character one JSON
// escapes to six bytes where the record holds text.
func TestForwardReplyLimitHoldsTheLargestTask(t *testing.T) {
	t.Parallel()
	text := func(n int) string { return strings.Repeat("<", n) }
	raw := func(n int) json.RawMessage { return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`) }
	tk := cluster.Task{ID: text(cluster.MaxNameBytes), Agent: text(cluster.MaxNameBytes), Version: text(cluster.MaxNameBytes),
		IdempotencyKey: text(cluster.MaxNameBytes), Input: raw(cluster.MaxInputBytes), Output: raw(cluster.MaxOutputBytes),
		State: cluster.StateRetryPending, Attempts: cluster.MaxAttemptsPerTask,
		Error: &cluster.TaskError{Class: cluster.ClassTransient, Message: text(cluster.MaxErrorMessageBytes), StderrTail: text(cluster.MaxStderrTailBytes)},
		Lease: &cluster.Lease{TaskID: text(cluster.MaxNameBytes), Node: text(cluster.MaxNameBytes)}}
	for i := range cluster.MaxAttemptsPerTask {
		tk.History = append(tk.History, cluster.AttemptRecord{N: i + 1, Node: text(64), Token: 1 << 60, StartedAt: 1 << 62, EndedAt: 1 << 62,
			Outcome: string(cluster.ClassTransient), Error: text(256), Delay: 1 << 40})
	}
	rep, err := cluster.NewReply(1<<60, tk, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxForwardReply {
		t.Fatalf("the largest task's reply is %d bytes, the forward route reads at most %d", len(b), maxForwardReply)
	}
}
