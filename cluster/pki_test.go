package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestBootstrapPKIFilesAndToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	p, err := BootstrapPKI(dir, "n1", []string{"127.0.0.1:7071", "node1.example:7070", "0.0.0.0:1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{CAFile, CAKeyFile, CertFile, KeyFile, JoinTokenFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	q, err := LoadPKI(dir)
	if err != nil {
		t.Fatal(err)
	}
	if q.JoinToken() != p.JoinToken() || q.NodeID() != "n1" {
		t.Fatalf("reloaded PKI differs: %v %q", q.JoinToken(), q.NodeID())
	}
	tok, err := ParseJoinToken(p.JoinToken().String())
	if err != nil || tok != p.JoinToken() {
		t.Fatalf("token round trip: %v %v", tok, err)
	}
	if got := q.leaf.DNSNames; len(got) != 2 || got[0] != NodeServerName || got[1] != "node1.example" {
		t.Errorf("DNS SANs %v", got)
	}
	if got := q.leaf.IPAddresses; len(got) != 1 || !got[0].Equal(net.IPv4(127, 0, 0, 1)) {
		t.Errorf("IP SANs %v (the unspecified address must not be one)", got)
	}
	for _, bad := range []string{"", "orloj1", "orloj2.aa.bb", "orloj1.zz.0123456789abcdef0123456789abcdef", "orloj1." + p.JoinToken().String()[7:71] + ".short"} {
		if _, err := ParseJoinToken(bad); !errors.Is(err, ErrBadJoinToken) {
			t.Errorf("ParseJoinToken(%q) = %v, want ErrBadJoinToken", bad, err)
		}
	}
	if _, err := LoadPKI(t.TempDir()); !errors.Is(err, ErrNoPKI) {
		t.Errorf("empty dir: %v, want ErrNoPKI", err)
	}
}

// A node that does not bootstrap and holds no certificate cannot start a
// transport: it must join first.
func TestOpenWithoutCertificateRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t, t.TempDir(), newFakeClock(time.Unix(1000, 0)))
	cfg.Bootstrap = false
	if _, err := Open(cfg); !errors.Is(err, ErrNoPKI) {
		t.Fatalf("Open without certificate: %v, want ErrNoPKI", err)
	}
}

// The attack of finding 3: a program speaking hashicorp/raft's
// NetworkTransport to the Raft port, with a higher term, tries to append
// an entry and to win a vote. Without a certificate it gets no further
// than the TLS handshake, and the node's state does not move.
func TestRawRaftClientCannotAppendOrVote(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Unix(1000, 0))
	n := openLeader(t, testConfig(t, t.TempDir(), clock))
	defer n.Close()
	ctx := context.Background()
	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")}); err != nil {
		t.Fatal(err)
	}
	applied := n.FSM().AppliedIndex()
	hash, _ := n.FSM().Hash()
	term := n.Raft().Stats()["term"]

	raw, err := raft.NewTCPTransport("127.0.0.1:0", nil, 1, 2*time.Second, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// The same client, but sending the Raft protocol byte first, then
	// plaintext Raft: refused by the TLS handshake.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	prefixed := raft.NewNetworkTransport(&prefixStream{Listener: ln}, 1, 2*time.Second, io.Discard)
	defer prefixed.Close()
	target := raft.ServerAddress(n.RaftAddr())
	for _, evil := range []*raft.NetworkTransport{raw, prefixed} {
		cmd, err := Encode(&SubmitTask{Task: Task{ID: "injected", Agent: "doc", Version: "v1", Input: []byte(`{}`)}, Now: 1})
		if err != nil {
			t.Fatal(err)
		}
		ae := &raft.AppendEntriesRequest{
			RPCHeader: raft.RPCHeader{ID: []byte("evil"), Addr: []byte(evil.LocalAddr())},
			Term:      1000, PrevLogEntry: applied, PrevLogTerm: 1, LeaderCommitIndex: applied + 1,
			Entries: []*raft.Log{{Index: applied + 1, Term: 1000, Type: raft.LogCommand, Data: cmd}},
		}
		if err := evil.AppendEntries("n1", target, ae, &raft.AppendEntriesResponse{}); err == nil {
			t.Fatal("AppendEntries without a certificate succeeded")
		}
		rv := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ID: []byte("evil"), Addr: []byte(evil.LocalAddr())},
			Term: 1001, LastLogIndex: applied + 100, LastLogTerm: 1000}
		if err := evil.RequestVote("n1", target, rv, &raft.RequestVoteResponse{}); err == nil {
			t.Fatal("RequestVote without a certificate succeeded")
		}
	}
	// The node still leads, in the same term, with the same state.
	if err := n.Barrier(ctx); err != nil {
		t.Fatal(err)
	}
	if got := n.Raft().Stats()["term"]; got != term {
		t.Errorf("term moved from %s to %s", term, got)
	}
	if _, err := n.FSM().Task("injected"); !errors.Is(err, ErrNotFound) {
		t.Errorf("injected task: %v, want not found", err)
	}
	if got, _ := n.FSM().Hash(); got != hash || n.FSM().AppliedIndex() != applied {
		t.Errorf("state changed: applied %d→%d", applied, n.FSM().AppliedIndex())
	}
	if !n.IsLeader() {
		t.Error("node lost leadership")
	}
}

// Certificates from another cluster's CA are refused on both sides of the
// cluster port, and a plain TLS client without a certificate gets no Raft
// connection.
func TestOtherCARefused(t *testing.T) {
	t.Parallel()
	n := openLeader(t, testConfig(t, t.TempDir(), newFakeClock(time.Unix(1000, 0))))
	defer n.Close()
	other, err := BootstrapPKI(t.TempDir(), "n9", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, kind := range []byte{ConnRaft, ConnHTTP} {
		if c, err := DialCluster(ctx, nil, n.RaftAddr(), kind, other.ClientTLS()); err == nil {
			c.Close()
			t.Errorf("kind 0x%02x: a node of another cluster connected", kind)
		}
	}
	// A client that trusts the node but has no certificate: refused for
	// Raft. TLS 1.3 reports the refusal on the first read.
	noCert := n.PKI().ClientTLS()
	noCert.Certificates = nil
	if c, err := DialCluster(ctx, nil, n.RaftAddr(), ConnRaft, noCert); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("raft connection without a client certificate was accepted")
		}
		c.Close()
	}
	// The internal HTTP side accepts it (a joining node has none yet),
	// with no verified peer.
	c, err := DialCluster(ctx, nil, n.RaftAddr(), ConnHTTP, noCert)
	if err != nil {
		t.Fatalf("internal HTTP without a client certificate: %v", err)
	}
	c.Close()
	// The joining node's check: the CA hash in the token pins the cluster.
	c, err = DialCluster(ctx, nil, n.RaftAddr(), ConnHTTP, JoinClientTLS(n.PKI().JoinToken()))
	if err != nil {
		t.Fatalf("join client with the right token: %v", err)
	}
	c.Close()
	if _, err := DialCluster(ctx, nil, n.RaftAddr(), ConnHTTP, JoinClientTLS(other.JoinToken())); !errors.Is(err, ErrCAMismatch) {
		t.Errorf("join client with another cluster's token: %v, want ErrCAMismatch", err)
	}
}

// A connection that sends nothing, or garbage, does not hold up others.
func TestSlowClientDoesNotBlockAccept(t *testing.T) {
	t.Parallel()
	n := openLeader(t, testConfig(t, t.TempDir(), newFakeClock(time.Unix(1000, 0))))
	defer n.Close()
	for i := range 20 {
		c, err := net.Dial("tcp", n.RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i%2 == 1 {
			c.Write([]byte("GET / HTTP/1.1\r\n" + strconv.Itoa(i)))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := DialCluster(ctx, nil, n.RaftAddr(), ConnHTTP, n.PKI().ClientTLS())
	if err != nil {
		t.Fatalf("a good client behind silent ones: %v", err)
	}
	if _, ok := PeerNodeID(&tls.ConnectionState{}); ok {
		t.Error("PeerNodeID of an unverified state")
	}
	c.Close()
}

// Two nodes with certificates from one CA form a cluster over mTLS.
func TestTwoNodesOverMTLS(t *testing.T) {
	t.Parallel()
	clock := newFakeClock(time.Unix(1000, 0))
	// The defaults' timeouts: two voters under the race detector on a
	// loaded machine lose quorum with the single-node tests' 100 ms.
	slow := func(c Config) Config {
		d := DefaultConfig()
		c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout = d.HeartbeatTimeout, d.ElectionTimeout, d.LeaderLeaseTimeout
		return c
	}
	n1 := openLeader(t, slow(testConfig(t, t.TempDir(), clock)))
	defer n1.Close()
	dir2 := t.TempDir()
	csr, key, err := NewCSR("n2")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := n1.PKI().Sign(csr, "n2", []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	p := n1.PKI()
	if _, err := InstallPKI(dir2, cert, key, p.CAPEM(), p.CAKeyPEM(), p.JoinToken().String()); err != nil {
		t.Fatal(err)
	}
	cfg2 := slow(testConfig(t, dir2, clock))
	cfg2.NodeID, cfg2.Bootstrap = "n2", false
	cfg2.Logger = hclog.NewNullLogger()
	n2, err := Open(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	if err := n1.Raft().AddVoter("n2", raft.ServerAddress(n2.RaftAddr()), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, idx, err := n1.ApplyIndexed(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")})
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.FSM().WaitApplied(ctx, idx); err != nil {
		t.Fatal(err)
	}
}

// prefixStream dials like raft's TCP stream layer but sends ConnRaft first.
type prefixStream struct{ net.Listener }

func (p *prefixStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write([]byte{ConnRaft}); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}
