package host

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
)

// Node-to-node routes, served on the cluster port's internal HTTP side
// (cluster.ConnHTTP, TLS). All but EnrollPath require a certificate from the
// cluster CA; EnrollPath is how a node without one gets one.
const (
	ForwardPath   = "/internal/v1/apply"      // a follower's commands (workers', and its API's), applied by the leader
	ReadIndexPath = "/internal/v1/read-index" // the leader's read index, for a follower to catch up to
	EnrollPath    = "/internal/v1/enroll"     // join secret + certificate request → signed certificate
	JoinPath      = "/internal/v1/join"       // add the calling node as a non-voter
	PromotePath   = "/internal/v1/promote"    // make the calling node a voter
	SelfPath      = "/internal/v1/self"       // the node as a member, for `cluster members`
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

// errNotLeader is a 421 answer that named no leader.
var errNotLeader = errors.New("not the leader, and it knows no leader yet")

// PostInternal posts body to path on the node at addr's cluster port and
// decodes a 2xx answer into out. A 421 returns the leader's cluster
// address it names; a refusal of the join secret is ErrJoinRefused; a
// refusal of our certificate, a handshake error.
func PostInternal(ctx context.Context, client *http.Client, addr, path string, body []byte, out any) (leader string, err error) {
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

// InternalHandler serves the cluster port's internal HTTP side: forwarded
// commands and enrollment from here; join, promote and self from api (the
// API's Internal handler), which only nodes with a certificate from the
// cluster CA may reach. api may be nil.
func InternalHandler(node *cluster.Node, metrics *Metrics, api http.Handler, log hclog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(ForwardPath, ForwardHandler(node, metrics, log))
	mux.Handle(ReadIndexPath, ReadIndexHandler(node, log))
	mux.Handle(EnrollPath, EnrollHandler(node, log))
	if api != nil {
		mux.Handle("/internal/", requireNode(node, api, log.Named("internal")))
	}
	return mux
}
