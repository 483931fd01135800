package host

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orloj/orloj/cluster"
)

// twoNodes is a leader (n1) and a caught-up follower (n2), each serving
// ForwardPath, with n1's API address recorded.
func twoNodes(t *testing.T, m *Metrics) (n1, n2 *cluster.Node, url1, url2 string) {
	t.Helper()
	log := testLogger(t)
	cfg1 := nodeConfig(t.TempDir(), freeAddr(t), log)
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
	cfg2 := nodeConfig(t.TempDir(), freeAddr(t), log)
	cfg2.NodeID, cfg2.Bootstrap = "n2", false
	if n2, err = cluster.Open(cfg2); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n2.Close() })
	if err := n1.Raft().AddVoter("n2", raft.ServerAddress(cfg2.RaftAddr), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	s1 := httptest.NewServer(ForwardHandler(n1, "tok", m, log))
	t.Cleanup(s1.Close)
	s2 := httptest.NewServer(ForwardHandler(n2, "tok", m, log))
	t.Cleanup(s2.Close)
	self := cluster.Member{ID: "n1", APIAddr: strings.TrimPrefix(s1.URL, "http://"), RaftAddr: cfg1.RaftAddr}
	r, idx, err := n1.ApplyIndexed(ctx, &cluster.SetMember{Member: self, Now: time.Now().UnixNano()})
	if err != nil || r == nil {
		t.Fatal(err)
	}
	if err := n2.FSM().WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
	return n1, n2, s1.URL, s2.URL
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
	f := NewForwarder(n2, "tok", nil, testLogger(t))
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

// The forward route takes only workers' commands, with the token, on the
// leader.
func TestForwardHandlerRefuses(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	_, _, url1, url2 := twoNodes(t, m)
	claim, _ := cluster.Encode(&cluster.ClaimTask{Node: "x", TTL: time.Second, Now: 1})
	put, _ := cluster.Encode(&cluster.PutAgent{Agent: cluster.Agent{Name: "a", Version: "v"}, Module: []byte("x"), Now: 1})
	for _, c := range []struct {
		name, url, token string
		body             []byte
		want             int
	}{
		{"wrong token", url1, "nope", claim, http.StatusUnauthorized},
		{"not a worker's command", url1, "tok", put, http.StatusForbidden},
		{"garbage", url1, "tok", []byte{0x7f, '{'}, http.StatusBadRequest},
		{"follower", url2, "tok", claim, http.StatusMisdirectedRequest},
		{"leader", url1, "tok", claim, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodPost, c.url+ForwardPath, bytes.NewReader(c.body))
		req.Header.Set("Authorization", "Bearer "+c.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.want)
		}
	}
	for _, c := range []struct {
		command, result string
		want            float64
	}{{"unknown", "refused", 2}, {"put_agent", "refused", 1}, {"claim_task", "refused", 1}, {"claim_task", "applied", 1}} {
		if got := testutil.ToFloat64(m.forwarded.WithLabelValues(c.command, c.result)); got != c.want {
			t.Errorf("orloj_forwarded_commands_total{%s,%s} = %v, want %v", c.command, c.result, got, c.want)
		}
	}
}
