package daemon_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/daemon"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
)

func joinAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type tlog struct{ t *testing.T }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func joinConfig(t *testing.T, id, dir string) daemon.Config {
	cfg := daemon.DefaultConfig()
	cfg.NodeID, cfg.DataDir, cfg.APIAddr, cfg.RaftAddr = id, dir, "127.0.0.1:0", joinAddr(t)
	cfg.Token, cfg.Workers, cfg.LeaseTTL = "admin-"+id, 1, 2*time.Second
	// The default Raft timeouts: two voters under the race detector, beside
	// the rest of the suite, flap with shorter ones.
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: tlog{t}, Level: hclog.Warn, Name: id})
	return cfg
}

// startLeader starts n1, bootstrapping a cluster, and waits until it leads.
func startLeader(t *testing.T) *daemon.Daemon {
	t.Helper()
	d := start(t, joinConfig(t, "n1", t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := d.Node().WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	return d
}

func start(t *testing.T, cfg daemon.Config) *daemon.Daemon {
	t.Helper()
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(0) })
	return d
}

func until(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // a failure bound only
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestJoinWithTokenFormsMTLSCluster: a node joins with the join token
// (no admin token of the cluster's), gets a certificate from the leader's
// CA, becomes a voter, forwards through the leader (its member record is
// a forwarded command) and, restarted, rejoins without the token.
func TestJoinWithTokenFormsMTLSCluster(t *testing.T) {
	t.Parallel()
	d1 := startLeader(t)
	cfg2 := joinConfig(t, "n2", t.TempDir())
	cfg2.Join, cfg2.JoinToken = d1.Node().RaftAddr(), d1.Node().PKI().JoinToken().String()
	d2 := start(t, cfg2)
	for _, f := range []string{cluster.CAFile, cluster.CAKeyFile, cluster.CertFile, cluster.KeyFile, cluster.JoinTokenFile} {
		if st, err := os.Stat(filepath.Join(cfg2.DataDir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s on the joined node: %v %v", f, st, err)
		}
	}
	if d2.Node().PKI().JoinToken() != d1.Node().PKI().JoinToken() {
		t.Fatal("the joined node holds another join token")
	}
	voter := func() bool {
		f := d1.Node().Raft().GetConfiguration()
		if f.Error() != nil {
			return false
		}
		for _, s := range f.Configuration().Servers {
			if s.ID == "n2" && s.Suffrage == raft.Voter {
				return true
			}
		}
		return false
	}
	until(t, "n2 to be a voter", voter)
	// n2's record is proposed through its Forwarder: forwarding over mTLS.
	until(t, "n2's member record", func() bool {
		m, ok := d1.Node().FSM().Member("n2")
		return ok && m.APIAddr == d2.APIAddr()
	})

	// cluster members asks n2 on its cluster port, with n1's certificate.
	req, _ := http.NewRequest(http.MethodGet, "http://"+d1.APIAddr()+"/v1/cluster/members", nil)
	req.Header.Set("Authorization", "Bearer "+d1.Token())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var ms []api.MemberView
	if err := decodeJSON(resp, &ms); err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Role == "unreachable" || m.AppliedIndex == nil {
			t.Errorf("member %s: role %s, applied %v", m.ID, m.Role, m.AppliedIndex)
		}
	}

	// Restart n2 without a join token: its certificate is enough.
	if err := d2.Stop(0); err != nil {
		t.Fatal(err)
	}
	cfg2.JoinToken = ""
	d2b := start(t, cfg2)
	// Stopping n2 cost n1 its quorum (two voters), so either node may lead
	// once n2 is back: what matters is that both see the same leader and n2
	// has caught up.
	until(t, "the restarted node to rejoin the cluster", func() bool {
		id := d2b.Node().LeaderInfo().ID
		return id != "" && id == d1.Node().LeaderInfo().ID && d2b.Node().FSM().AppliedIndex() >= d1.Node().FSM().AppliedIndex()
	})
}

// A join refused for its token fails Start at once, with the fix.
func TestJoinRefusedAtOnce(t *testing.T) {
	t.Parallel()
	d1 := startLeader(t)
	good := d1.Node().PKI().JoinToken()
	wrong := good
	wrong.Secret = strings.Repeat("0", 48)
	other, err := cluster.BootstrapPKI(t.TempDir(), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, token, want string }{
		{"wrong secret", wrong.String(), "join refused: the join token does not match this cluster; copy DATA_DIR/join-token from a member"},
		{"another cluster's CA", other.JoinToken().String(), "join refused: the member at " + d1.Node().RaftAddr() + " is not of the cluster the join token names"},
		{"missing", "", "join refused: joining needs the cluster's join token"},
		{"malformed", "orloj1.nothex.x", "join refused: --join-token: malformed join token"},
	} {
		cfg := joinConfig(t, "n2", t.TempDir())
		cfg.Join, cfg.JoinToken = d1.Node().RaftAddr(), c.token
		d, err := daemon.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		began := time.Now()
		err = d.Start()
		if err == nil {
			d.Stop(0)
			t.Fatalf("%s: Start succeeded", c.name)
		}
		if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), good.Secret) {
			t.Errorf("%s: %v\nwant it to contain %q (and no secret)", c.name, err, c.want)
		}
		if el := time.Since(began); el > 3*time.Second {
			t.Errorf("%s: refused after %s; want at once", c.name, el)
		}
		if _, err := os.Stat(filepath.Join(cfg.DataDir, cluster.CertFile)); err == nil {
			t.Errorf("%s: a refused node holds a certificate", c.name)
		}
	}
}

func decodeJSON(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// A node whose certificate comes from another cluster's CA cannot join:
// the member's certificate does not verify against its CA, and the daemon
// stops with the reason instead of retrying.
func TestForeignCertificateCannotJoin(t *testing.T) {
	t.Parallel()
	d1 := startLeader(t)
	cfg := joinConfig(t, "n2", t.TempDir())
	if _, err := cluster.BootstrapPKI(cfg.DataDir, "n2", []string{cfg.RaftAddr}); err != nil {
		t.Fatal(err)
	}
	cfg.Join = d1.Node().RaftAddr()
	d2 := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case err := <-d2.Err():
		if !errors.Is(err, host.ErrJoinRefused) || !strings.Contains(err.Error(), "not of this node's cluster") {
			t.Fatalf("stopped with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the node with a foreign certificate kept trying to join")
	}
	conf := d1.Node().Raft().GetConfiguration()
	if err := conf.Error(); err != nil {
		t.Fatal(err)
	}
	if n := len(conf.Configuration().Servers); n != 1 {
		t.Fatalf("the cluster has %d members, want 1", n)
	}
}

// Stop ends a join that is still looking for the cluster, at once.
func TestStopAbortsEnrollment(t *testing.T) {
	t.Parallel()
	cfg := joinConfig(t, "n2", t.TempDir())
	tok, err := cluster.BootstrapPKI(t.TempDir(), "x", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Join, cfg.JoinToken = joinAddr(t), tok.JoinToken().String() // nobody listens there
	retrying := make(chan struct{})
	var once sync.Once
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: writerFunc(func(p []byte) {
		if strings.Contains(string(p), "enroll with the cluster") {
			once.Do(func() { close(retrying) })
		}
	})})
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan error, 1)
	go func() { started <- d.Start() }()
	<-retrying // Start is inside its retry loop
	began := time.Now()
	if err := d.Stop(0); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-started:
		if err == nil {
			t.Fatal("Start succeeded with no cluster to join")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start still running after Stop")
	}
	if el := time.Since(began); el > 5*time.Second {
		t.Fatalf("Stop took %s", el)
	}
}

type writerFunc func([]byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
