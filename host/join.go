package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
)

// Node-to-node routes, served on the cluster port's internal HTTP side
// (cluster.ConnHTTP, TLS). All but EnrollPath require a certificate from the
// cluster CA; EnrollPath is how a node without one gets one.
const (
	ForwardPath = "/internal/v1/apply"   // a follower's worker commands, applied by the leader
	EnrollPath  = "/internal/v1/enroll"  // join secret + certificate request → signed certificate
	JoinPath    = "/internal/v1/join"    // add the calling node as a non-voter
	PromotePath = "/internal/v1/promote" // make the calling node a voter
	SelfPath    = "/internal/v1/self"    // the node as a member, for `cluster members`
)

// ErrJoinRefused is a join the cluster refused for authentication: retrying
// cannot help, the operator must fix the join token.
var ErrJoinRefused = errors.New("join refused")

// codeJoinRefused is the error code of an enrollment refused for its secret.
const codeJoinRefused = "join_refused"

// maxEnrollBody caps an enrollment request (a CSR and a few addresses).
const maxEnrollBody = 64 << 10

// NewClusterClient is the HTTP client for node-to-node routes: each
// connection goes to the cluster port (through dial, if set) as
// cluster.ConnHTTP and is TLS with cfg. URLs are https://RAFT_ADDR/...
func NewClusterClient(cfg *tls.Config, dial cluster.DialFunc) *http.Client {
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return cluster.DialCluster(ctx, dial, addr, cluster.ConnHTTP, cfg)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: tr}
}

// NewNodeClient is the HTTP client of node for other nodes' internal
// routes: mTLS with the node's certificate.
func NewNodeClient(node *cluster.Node, dial cluster.DialFunc) *http.Client {
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return node.DialInternal(ctx, dial, addr)
		},
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: tr}
}

// clusterDialer adapts DialMap to cluster.DialFunc.
func clusterDialer(m map[string]string) cluster.DialFunc {
	dial := dialVia(m)
	return func(ctx context.Context, addr string) (net.Conn, error) { return dial(ctx, "tcp", addr) }
}

// requireNode lets through only requests whose TLS peer presented a
// certificate verified against the cluster CA.
func requireNode(node *cluster.Node, h http.Handler, log hclog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := node.VerifiedPeer(r.TLS); !ok {
			log.Warn("refused an internal request without a node certificate", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusUnauthorized, internalError{Error: "a node certificate from the cluster CA is required", Code: "unauthorized"})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// internalError is the error body of the internal routes (the API's shape).
type internalError struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Leader string `json:"leader,omitempty"` // the leader's cluster address, with not_leader
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// EnrollRequest is POST EnrollPath: a node without a certificate asks for
// one with the join token's secret.
type EnrollRequest struct {
	Secret   string `json:"secret"`
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr,omitempty"`
	CSR      []byte `json:"csr"` // PKCS#10, DER (base64 in JSON)
}

// EnrollReply carries what a node needs to be a member: its certificate,
// the CA (certificate and key, so any later leader can sign joins) and the
// join token.
type EnrollReply struct {
	Certificate []byte `json:"certificate"` // PEM
	CA          []byte `json:"ca"`          // PEM
	CAKey       []byte `json:"ca_key"`      // PEM
	JoinToken   string `json:"join_token"`
}

// EnrollHandler serves EnrollPath: the leader checks the join secret and
// signs the node's certificate; a follower names the leader.
func EnrollHandler(node *cluster.Node, log hclog.Logger) http.Handler {
	log = log.Named("enroll")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeJSON(w, http.StatusMethodNotAllowed, internalError{Error: "POST only", Code: "method_not_allowed"})
			return
		}
		var req EnrollRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxEnrollBody))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, internalError{Error: "decode enrollment: " + err.Error(), Code: "bad_request"})
			return
		}
		if node.Role() != cluster.RoleLeader {
			writeJSON(w, http.StatusMisdirectedRequest, internalError{Error: "not the leader", Code: "not_leader", Leader: node.LeaderInfo().RaftAddr})
			return
		}
		p := node.PKI()
		if !p.JoinToken().SecretMatches(req.Secret) {
			log.Warn("refused an enrollment with a wrong join secret", "node", req.ID, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusForbidden, internalError{Error: "the join token does not match this cluster", Code: codeJoinRefused})
			return
		}
		if req.ID == "" {
			writeJSON(w, http.StatusBadRequest, internalError{Error: "id is required", Code: "bad_request"})
			return
		}
		if _, _, err := net.SplitHostPort(req.RaftAddr); err != nil {
			writeJSON(w, http.StatusBadRequest, internalError{Error: fmt.Sprintf("raft_addr %q is not host:port", req.RaftAddr), Code: "bad_request"})
			return
		}
		cert, err := p.Sign(req.CSR, req.ID, []string{req.RaftAddr, req.APIAddr})
		if err != nil {
			writeJSON(w, http.StatusBadRequest, internalError{Error: err.Error(), Code: "bad_request"})
			return
		}
		log.Info("signed a node certificate", "node", req.ID, "raft_addr", req.RaftAddr)
		writeJSON(w, http.StatusOK, EnrollReply{Certificate: cert, CA: p.CAPEM(), CAKey: p.CAKeyPEM(), JoinToken: p.JoinToken().String()})
	})
}

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
		return nil, fmt.Errorf("%w: joining needs the cluster's join token: set --join-token-file or ORLOJ_JOIN_TOKEN to the content of DATA_DIR/%s on a member (`orlojd cluster join-token` prints it)", ErrJoinRefused, cluster.JoinTokenFile)
	}
	tok, err := cluster.ParseJoinToken(cfg.JoinToken)
	if err != nil {
		return nil, fmt.Errorf("%w: --join-token: %w", ErrJoinRefused, err)
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
	body, _ := json.Marshal(EnrollRequest{Secret: tok.Secret, ID: cfg.NodeID, RaftAddr: cfg.RaftAddr, APIAddr: apiAddr, CSR: csr})
	client := NewClusterClient(cluster.JoinClientTLS(tok), clusterDialer(cfg.DialMap))
	defer client.CloseIdleConnections()
	policy := cluster.RetryPolicy{Base: 250 * time.Millisecond, Factor: 2, Cap: 5 * time.Second}
	addr := cfg.Join
	for attempt := 1; ; attempt++ {
		var rep EnrollReply
		leader, err := postInternal(ctx, client, addr, EnrollPath, body, &rep)
		switch {
		case err == nil:
			p, err := cluster.InstallPKI(cfg.DataDir, rep.Certificate, key, rep.CA, rep.CAKey, rep.JoinToken)
			if err != nil {
				return nil, fmt.Errorf("install the certificate from %s: %w", addr, err)
			}
			d.log.Info("received this node's certificate", "via", addr)
			return p, nil
		case errors.Is(err, cluster.ErrCAMismatch):
			return nil, fmt.Errorf("%w: the member at %s is not of the cluster the join token names (its CA differs); copy DATA_DIR/%s from a member of the cluster you mean", ErrJoinRefused, addr, cluster.JoinTokenFile)
		case errors.Is(err, ErrJoinRefused):
			return nil, fmt.Errorf("%w: the join token does not match this cluster; copy DATA_DIR/%s from a member", ErrJoinRefused, cluster.JoinTokenFile)
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

// errNotLeader is a 421 answer that named no leader.
var errNotLeader = errors.New("not the leader, and it knows no leader yet")

// postInternal posts body to path on the node at addr's cluster port and
// decodes a 2xx answer into out. A 421 returns the leader's cluster
// address it names; a refusal of the join secret is ErrJoinRefused; a
// refusal of our certificate, a handshake error.
func postInternal(ctx context.Context, client *http.Client, addr, path string, body []byte, out any) (leader string, err error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e internalError
	if resp.StatusCode/100 != 2 {
		_ = json.Unmarshal(raw, &e)
	}
	switch {
	case resp.StatusCode == http.StatusMisdirectedRequest:
		if e.Leader == "" {
			return "", fmt.Errorf("%s: %w", addr, errNotLeader)
		}
		return e.Leader, fmt.Errorf("%s is not the leader; the leader is %s", addr, e.Leader)
	case resp.StatusCode == http.StatusForbidden && e.Code == codeJoinRefused:
		return "", fmt.Errorf("%w: %s", ErrJoinRefused, e.Error)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return "", fmt.Errorf("%w: %s: %s", ErrJoinRefused, resp.Status, orText(e.Error, raw))
	case resp.StatusCode/100 != 2:
		return "", fmt.Errorf("%s: %s", resp.Status, orText(e.Error, raw))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return "", fmt.Errorf("decode the answer of %s: %w", addr, err)
		}
	}
	return "", nil
}

func orText(s string, raw []byte) string {
	if s != "" {
		return s
	}
	return string(bytes.TrimSpace(raw))
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
			if leader, err = postInternal(ctx, d.peers, addr, JoinPath, body, nil); err == nil {
				joined = true
				d.log.Info("joined cluster as non-voter; catching up", "via", addr)
				attempt = 0
				continue
			}
		} else if err = d.awaitCaughtUp(ctx); err == nil {
			if leader, err = postInternal(ctx, d.peers, addr, PromotePath, promote, nil); err == nil {
				d.log.Info("promoted to voter", "via", addr, "applied_index", d.node.FSM().AppliedIndex())
				return
			}
		}
		switch {
		case leader != "":
			addr = leader
			continue
		case errors.Is(err, ErrJoinRefused):
			d.fatal(fmt.Errorf("join %s: %w (this node's certificate in %s is not accepted by the cluster)", addr, err, filepath.Join(d.cfg.DataDir, cluster.CertFile)))
			return
		case errors.As(err, new(x509.UnknownAuthorityError)):
			d.fatal(fmt.Errorf("%w: the member at %s is not of this node's cluster: its certificate is not from the CA in %s", ErrJoinRefused, addr, filepath.Join(d.cfg.DataDir, cluster.CAFile)))
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

// serveInternal serves the cluster port's internal HTTP side: forwarded
// commands and enrollment from here, join, promote and self from the API
// when it offers them (an Internal method).
func (d *Daemon) serveInternal(api http.Handler) {
	log := d.cfg.Logger.Named("internal")
	mux := http.NewServeMux()
	mux.Handle(ForwardPath, ForwardHandler(d.node, d.metrics, d.cfg.Logger))
	mux.Handle(EnrollPath, EnrollHandler(d.node, d.cfg.Logger))
	if in, ok := api.(interface{ Internal() http.Handler }); ok {
		mux.Handle("/internal/", requireNode(d.node, in.Internal(), log))
	}
	d.isrv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	ln := d.node.InternalListener()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.isrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			d.fatal(fmt.Errorf("cluster port server: %w", err))
		}
	}()
}
