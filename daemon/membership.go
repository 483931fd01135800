package daemon

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"path/filepath"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
)

// Membership upkeep: the node's credentials, joining a cluster, and keeping
// its own member record (API address) in the replicated state.

// enrollFor bounds how long a joining node looks for a member to enroll
// with before Start gives up.
const enrollFor = 2 * time.Minute

// credentials returns this node's cluster credentials: those in the data
// dir, else a new cluster CA for a node that bootstraps, else a
// certificate obtained from the cluster at cfg.Join with the join token.
func (d *Daemon) credentials(apiAddr string) (*cluster.PKI, error) {
	cfg := d.cfg
	p, err := cluster.LoadPKI(cfg.DataDir)
	switch {
	case err == nil:
		return p, nil
	case !errors.Is(err, cluster.ErrNoPKI):
		return nil, err
	case cfg.Join == "":
		if p, err = cluster.BootstrapPKI(cfg.DataDir, cfg.NodeID, []string{cfg.RaftAddr, apiAddr}); err != nil {
			return nil, fmt.Errorf("create cluster CA: %w", err)
		}
		d.log.Info("created the cluster CA and this node's certificate", "data_dir", cfg.DataDir)
		return p, nil
	}
	if cfg.JoinToken == "" {
		return nil, fmt.Errorf("%w: joining needs the cluster's join token: set --join-token-file or ORLOJ_JOIN_TOKEN to the content of DATA_DIR/%s on a member (`orlojd cluster join-token` prints it)", host.ErrJoinRefused, cluster.JoinTokenFile)
	}
	tok, err := cluster.ParseJoinToken(cfg.JoinToken)
	if err != nil {
		return nil, fmt.Errorf("%w: --join-token: %w", host.ErrJoinRefused, err)
	}
	ctx, cancel := context.WithTimeout(d.startCtx, enrollFor)
	defer cancel()
	return d.enroll(ctx, tok, apiAddr)
}

// enroll asks the member at cfg.Join (following it to the leader) to sign
// a certificate for a new key, and installs it with the CA in the data dir.
// A refusal for the token ends it at once; other failures are retried.
func (d *Daemon) enroll(ctx context.Context, tok cluster.JoinToken, apiAddr string) (*cluster.PKI, error) {
	cfg := d.cfg
	csr, key, err := cluster.NewCSR(cfg.NodeID)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(host.EnrollRequest{Secret: tok.Secret, ID: cfg.NodeID, RaftAddr: cfg.RaftAddr, APIAddr: apiAddr, CSR: csr})
	client := host.NewClusterClient(cluster.JoinClientTLS(tok), cfg.dialer())
	defer client.CloseIdleConnections()
	policy := cluster.RetryPolicy{Base: 250 * time.Millisecond, Factor: 2, Cap: 5 * time.Second}
	addr := cfg.Join
	for attempt := 1; ; attempt++ {
		var rep host.EnrollReply
		leader, err := host.PostInternal(ctx, client, addr, host.EnrollPath, body, &rep)
		switch {
		case err == nil:
			p, err := cluster.InstallPKI(cfg.DataDir, rep.Certificate, key, rep.CA, rep.CAKey, rep.JoinToken)
			if err != nil {
				return nil, fmt.Errorf("install the certificate from %s: %w", addr, err)
			}
			d.log.Info("received this node's certificate", "via", addr)
			return p, nil
		case errors.Is(err, cluster.ErrCAMismatch):
			return nil, fmt.Errorf("%w: the member at %s is not of the cluster the join token names (its CA differs); copy DATA_DIR/%s from a member of the cluster you mean", host.ErrJoinRefused, addr, cluster.JoinTokenFile)
		case errors.Is(err, host.ErrJoinRefused):
			return nil, fmt.Errorf("%w: the join token does not match this cluster; copy DATA_DIR/%s from a member", host.ErrJoinRefused, cluster.JoinTokenFile)
		case leader != "":
			addr = leader
			continue
		}
		delay := cluster.Backoff(policy, attempt, mrand.Uint64())
		d.log.Warn("enroll with the cluster", "via", addr, "attempt", attempt, "retry_in", delay, "error", err)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("join %s: no member signed this node's certificate in %s: %w", cfg.Join, enrollFor, err)
		case <-time.After(delay):
		}
	}
}

// join asks the member at cfg.Join (or the leader it points to), over
// mTLS, to add this node as a non-voter, waits until this node has applied
// what the leader had committed, then asks to be promoted to voter. It
// retries until that is done or the daemon stops; a refusal of this
// node's certificate stops the daemon. Joining again after a restart is
// harmless.
func (d *Daemon) join(ctx context.Context) {
	fresh := !d.node.HadState()
	body, _ := json.Marshal(map[string]any{"id": d.cfg.NodeID, "raft_addr": d.cfg.RaftAddr, "api_addr": d.ln.Addr().String(), "fresh": fresh})
	promote, _ := json.Marshal(map[string]string{"id": d.cfg.NodeID})
	policy := cluster.RetryPolicy{Base: 500 * time.Millisecond, Factor: 2, Cap: 10 * time.Second}
	addr := d.cfg.Join
	joined := false
	for attempt := 1; ; attempt++ {
		var err error
		var leader string
		if !joined {
			if leader, err = host.PostInternal(ctx, d.peers, addr, host.JoinPath, body, nil); err == nil {
				joined = true
				d.log.Info("joined cluster as non-voter; catching up", "via", addr)
				attempt = 0
				continue
			}
		} else if err = d.awaitCaughtUp(ctx); err == nil {
			if leader, err = host.PostInternal(ctx, d.peers, addr, host.PromotePath, promote, nil); err == nil {
				d.log.Info("promoted to voter", "via", addr, "applied_index", d.node.FSM().AppliedIndex())
				return
			}
		}
		switch {
		case leader != "":
			addr = leader
			continue
		case errors.Is(err, host.ErrJoinRefused):
			d.fatal(fmt.Errorf("join %s: %w (this node's certificate in %s is not accepted by the cluster)", addr, err, filepath.Join(d.cfg.DataDir, cluster.CertFile)))
			return
		case errors.As(err, new(x509.UnknownAuthorityError)):
			d.fatal(fmt.Errorf("%w: the member at %s is not of this node's cluster: its certificate is not from the CA in %s", host.ErrJoinRefused, addr, filepath.Join(d.cfg.DataDir, cluster.CAFile)))
			return
		}
		if ctx.Err() != nil {
			return
		}
		delay := cluster.Backoff(policy, attempt, mrand.Uint64())
		d.log.Warn("join cluster", "via", addr, "attempt", attempt, "retry_in", delay, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// awaitCaughtUp waits until this node has heard from a leader and applied
// every entry the leader had committed by then.
func (d *Daemon) awaitCaughtUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if st := d.node.SelfStatus(); st.Leader.Known() {
			if c := st.CommitIndex; c > 0 {
				return d.node.FSM().WaitApplied(ctx, c)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catch up with the leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// registerSelf records this node's API address (through the leader), so
// followers can send clients and forwarded commands to whichever node
// leads. It checks again now and then: a restore or a rejoin may have
// replaced the record.
func (d *Daemon) registerSelf(ctx context.Context) {
	want := cluster.Member{ID: d.cfg.NodeID, APIAddr: d.ln.Addr().String(), RaftAddr: d.cfg.RaftAddr}
	for {
		// Wake on applied entries only while the record is missing (start,
		// join); once it is there, a check a second is enough.
		var wake <-chan struct{}
		removed := false
		_ = host.CatchPanic(d.log, "register this node", func() error {
			m, ok := d.node.FSM().Member(want.ID)
			switch {
			case ok && m.Removed:
				removed = true
			case ok && m == want:
			default:
				wake = d.node.FSM().Changed()
				if d.node.LeaderInfo().Known() {
					if _, err := d.fwd.Apply(ctx, &cluster.SetMember{Member: want, Now: d.cfg.Clock().UnixNano()}); err != nil {
						d.log.Debug("record this node's API address", "error", err)
					}
				}
			}
			return nil
		})
		if removed {
			d.pool.Stop(0)
			d.fatal(d.removedErr())
			return
		}
		t := time.NewTimer(time.Second) // also how soon a removal is noticed
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}
