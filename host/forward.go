package host

import (
	"bytes"
	"context"
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

// maxForwardBody caps a forwarded command: no command may be larger than
// cluster.MaxCommandBytes.
const maxForwardBody = cluster.MaxCommandBytes + 64<<10

// maxForwardReply caps a forwarded command's reply. A reply carries one
// record, but a task record holds the input and the output two commands
// carried (each at most MaxCommandBytes as JSON escapes it) beside a
// history line per attempt, so the completion of a task, or the
// resubmission of its key, may answer about twice the command limit.
const maxForwardReply = 3 * cluster.MaxCommandBytes

// Forwarder is the Cluster every node's workers and API use: on the leader
// it applies locally; on a follower it sends the command to ForwardPath on
// the leader's cluster port, authenticated by this node's certificate
// (mTLS). Reads stay local. After a forwarded claim it waits until the
// local replica has applied the claim's entry, so the executor's reads of
// the task's ledger include every record an earlier attempt committed: they
// were all committed before the lease that the claim replaced was ended.
// After a forwarded client command (a submission, an agent, a DLQ action,
// a cancel) it waits the same way, so a client that reads this node next
// sees its own write.
type Forwarder struct {
	node   *cluster.Node
	client *http.Client
	log    hclog.Logger
	// retryFor bounds the hunt for a leader when ctx has no deadline.
	retryFor time.Duration
}

// NewForwarder returns a Forwarder presenting the node's certificate to the
// leader. dial, if not nil, opens the connections (fault tests route them
// through proxies).
func NewForwarder(node *cluster.Node, dial cluster.DialFunc, log hclog.Logger) *Forwarder {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Forwarder{node: node, client: NewNodeClient(node, dial), log: log.Named("forward"), retryFor: 10 * time.Second}
}

// FSM is the local replica.
func (f *Forwarder) FSM() *cluster.FSM { return f.node.FSM() }

// Close releases idle connections.
func (f *Forwarder) Close() { f.client.CloseIdleConnections() }

// Apply proposes cmd through whichever node leads. It retries only where
// the command was certainly not applied (no leader known, refused by a
// non-leader, connection not made); an ambiguous failure is returned wrapped
// in cluster.ErrOutcomeUnknown.
func (f *Forwarder) Apply(ctx context.Context, cmd cluster.Command) (any, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.retryFor)
		defer cancel()
	}
	done := f.node.History().Begin(cmd)
	res, err := f.apply(ctx, cmd)
	done(res, err)
	return res, err
}

func (f *Forwarder) apply(ctx context.Context, cmd cluster.Command) (any, error) {
	delay := 10 * time.Millisecond
	for {
		res, retry, err := f.applyOnce(ctx, cmd)
		if !retry {
			return res, err
		}
		select {
		case <-ctx.Done():
			// Every try so far certainly failed to apply: say so.
			return nil, fmt.Errorf("%w (last: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

func (f *Forwarder) applyOnce(ctx context.Context, cmd cluster.Command) (any, bool, error) {
	if f.node.Role() == cluster.RoleLeader {
		res, _, err := f.node.ApplyIndexed(ctx, cmd)
		if errors.Is(err, cluster.ErrNotLeader) && !errors.Is(err, cluster.ErrOutcomeUnknown) {
			return nil, true, err
		}
		return res, false, err
	}
	// The leader's address comes from Raft itself, not from a record in
	// the replicated state, and the leader must prove it is a node.
	leader := f.node.LeaderRaft()
	leaderAddr, leaderID := leader.RaftAddr, leader.ID
	if !leader.Known() || leaderID == f.node.ID() {
		return nil, true, fmt.Errorf("no leader known: %w", cluster.ErrNotLeader)
	}
	body, err := cluster.Encode(cmd)
	if err != nil {
		return nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+leaderAddr+ForwardPath, bytes.NewReader(body))
	if err != nil {
		return nil, false, fmt.Errorf("forward to %s: %w", leaderID, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := f.client.Do(req)
	if err != nil {
		// Not connected, or the handshake failed: nothing was sent.
		var op *net.OpError
		var hs *cluster.HandshakeError
		if (errors.As(err, &op) && op.Op == "dial") || errors.As(err, &hs) {
			return nil, true, fmt.Errorf("forward to %s: %w", leaderID, err)
		}
		return nil, false, fmt.Errorf("forward to %s: %w: %w", leaderID, cluster.ErrOutcomeUnknown, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardReply))
	if err != nil {
		return nil, false, fmt.Errorf("forward to %s: read reply: %w: %w", leaderID, cluster.ErrOutcomeUnknown, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusMisdirectedRequest:
		return nil, true, fmt.Errorf("forward to %s: %w", leaderID, cluster.ErrNotLeader)
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		// Refused before it reached Raft; the reply carries the sentinel.
		var rep cluster.Reply
		if json.Unmarshal(raw, &rep) == nil && rep.Code != "" {
			_, err := rep.Decode()
			return nil, false, fmt.Errorf("forward to %s: %w", leaderID, err)
		}
		return nil, false, fmt.Errorf("forward to %s: HTTP %d: %s", leaderID, resp.StatusCode, bytes.TrimSpace(raw))
	default:
		return nil, false, fmt.Errorf("forward to %s: HTTP %d: %s", leaderID, resp.StatusCode, bytes.TrimSpace(raw))
	}
	var rep cluster.Reply
	if err := json.Unmarshal(raw, &rep); err != nil {
		return nil, false, fmt.Errorf("forward to %s: decode reply: %w: %w", leaderID, cluster.ErrOutcomeUnknown, err)
	}
	if rep.Code == "not_leader" && rep.Index == 0 {
		return nil, true, fmt.Errorf("forward to %s: %s: %w", leaderID, rep.Error, cluster.ErrNotLeader)
	}
	res, err := rep.Decode()
	if err == nil && rep.Index > 0 {
		if _, ok := cmd.(*cluster.ClaimTask); ok && res != nil {
			if werr := f.node.FSM().WaitApplied(ctx, rep.Index); werr != nil {
				// The lease is ours but unusable here: it lapses and the task
				// is retried, which is what a lost reply would cost anyway.
				return nil, false, fmt.Errorf("claim granted at index %d: %w", rep.Index, werr)
			}
		}
		if clientCommand(cmd) {
			if werr := f.node.FSM().WaitApplied(ctx, rep.Index); werr != nil {
				// Applied on the leader: the write stands, only this
				// replica is behind (and the caller has gone).
				f.log.Debug("forwarded write not yet applied here", "index", rep.Index, "error", werr)
			}
		}
	}
	return res, false, err
}

// CatchUp brings the local replica up to the leader: it asks the leader
// for its read index (cluster.Node.ReadIndex) and waits until this node
// has applied it, so what it reads next includes every write acknowledged
// to any client before the call. On the leader it returns at once: its
// replica is what it acknowledges from. A follower's API calls it before
// it validates a write against the local state (does the agent exist,
// which version is newest). Safe to retry, so it retries any failure
// until ctx ends (retryFor if ctx has no deadline).
func (f *Forwarder) CatchUp(ctx context.Context) error {
	if f.node.Role() == cluster.RoleLeader {
		return nil
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.retryFor)
		defer cancel()
	}
	delay := 10 * time.Millisecond
	for {
		idx, err := f.readIndex(ctx)
		if err == nil {
			return f.node.FSM().WaitApplied(ctx, idx)
		}
		if errors.Is(err, errLeaderHere) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catch up with the leader: %w (last: %w)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// errLeaderHere: this node became the leader while catching up.
var errLeaderHere = errors.New("this node leads")

// readIndex asks the leader for its read index over the cluster port.
func (f *Forwarder) readIndex(ctx context.Context) (uint64, error) {
	if f.node.Role() == cluster.RoleLeader {
		return 0, errLeaderHere
	}
	leader := f.node.LeaderRaft()
	if !leader.Known() || leader.ID == f.node.ID() {
		return 0, fmt.Errorf("no leader known: %w", cluster.ErrNotLeader)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+leader.RaftAddr+ReadIndexPath, nil)
	if err != nil {
		return 0, fmt.Errorf("read index of %s: %w", leader.ID, err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("read index of %s: %w", leader.ID, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if err != nil {
		return 0, fmt.Errorf("read index of %s: %w", leader.ID, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusMisdirectedRequest:
		return 0, fmt.Errorf("read index of %s: %w", leader.ID, cluster.ErrNotLeader)
	default:
		return 0, fmt.Errorf("read index of %s: HTTP %d: %s", leader.ID, resp.StatusCode, bytes.TrimSpace(raw))
	}
	var ri ReadIndex
	if err := json.Unmarshal(raw, &ri); err != nil {
		return 0, fmt.Errorf("read index of %s: decode: %w", leader.ID, err)
	}
	return ri.Index, nil
}

// ReadIndex is the answer of ReadIndexPath.
type ReadIndex struct {
	Index uint64 `json:"index"`
}

// ReadIndexHandler serves ReadIndexPath on every node's cluster port: the
// leader answers its read index, a follower 421. Only a caller with a
// node certificate gets past it.
func ReadIndexHandler(node *cluster.Node, log hclog.Logger) http.Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("forward")
	return requireNode(node, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			http.Error(w, "GET only", http.StatusMethodNotAllowed)
			return
		}
		idx, err := node.ReadIndex(r.Context())
		switch {
		case errors.Is(err, cluster.ErrNotLeader):
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		case err != nil:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		writeJSON(w, http.StatusOK, ReadIndex{Index: idx})
	}), log)
}

// forwardable reports whether cmd is one a node's workers, outbox,
// membership upkeep or API propose.
func forwardable(cmd cluster.Command) bool {
	switch cmd.(type) {
	case *cluster.ClaimTask, *cluster.RenewLease, *cluster.RecordIntent, *cluster.RecordResult,
		*cluster.StageWrite, *cluster.CompleteTask, *cluster.FailAttempt, *cluster.AppendJournal,
		*cluster.MarkEffectDone, *cluster.SetMember, *cluster.PutModuleChunk:
		return true
	}
	return clientCommand(cmd)
}

// clientCommand reports whether cmd is one the API proposes for a client
// and the client may read back at once. A follower's API validates it
// (against a replica it first caught up, see CatchUp) and forwards it; the
// FSM validates it again as it applies. A module chunk is forwarded too,
// but nobody reads it before its PutAgent.
func clientCommand(cmd cluster.Command) bool {
	switch cmd.(type) {
	case *cluster.SubmitTask, *cluster.CancelTask, *cluster.RetryDLQ, *cluster.DiscardDLQ, *cluster.PutAgent,
		*cluster.PutTool, *cluster.RemoveTool:
		return true
	}
	return false
}

// ForwardHandler serves ForwardPath on every node's cluster port: the
// leader applies, a follower answers 421 so the sender looks for the
// leader again. Only a caller with a node certificate gets past it.
// m, if not nil, counts what it serves.
func ForwardHandler(node *cluster.Node, m *Metrics, log hclog.Logger) http.Handler {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	log = log.Named("forward")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if _, ok := node.VerifiedPeer(r.TLS); !ok {
			m.ObserveForwarded(nil, "refused")
			log.Warn("refused a forwarded command without a node certificate", "remote", r.RemoteAddr)
			http.Error(w, "a node certificate from the cluster CA is required", http.StatusUnauthorized)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxForwardBody))
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			err = fmt.Errorf("forwarded command over %d bytes: %w", mbe.Limit, cluster.ErrTooLarge)
		}
		var cmd cluster.Command
		if err == nil {
			cmd, err = cluster.DecodeCommand(body)
		}
		if err != nil {
			// Refused before Raft saw it: a reply with index 0 keeps the
			// sentinel (too_large, invalid_command) for the sender.
			m.ObserveForwarded(nil, "refused")
			rep, _ := cluster.NewReply(0, nil, err)
			status := http.StatusBadRequest
			if errors.Is(err, cluster.ErrTooLarge) {
				status = http.StatusRequestEntityTooLarge
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(rep)
			return
		}
		if !forwardable(cmd) {
			// Only what a node's workers, upkeep and API propose: the
			// leader's own duties (expiry, lease extension) never come
			// from another node.
			m.ObserveForwarded(cmd, "refused")
			log.Warn("refused a command that is not a worker's", "command", fmt.Sprintf("%T", cmd), "remote", r.RemoteAddr)
			http.Error(w, fmt.Sprintf("%T cannot be forwarded", cmd), http.StatusForbidden)
			return
		}
		if node.Role() != cluster.RoleLeader {
			m.ObserveForwarded(cmd, "refused")
			w.WriteHeader(http.StatusMisdirectedRequest)
			return
		}
		res, idx, err := node.ApplyIndexed(r.Context(), cmd)
		rep, encErr := cluster.NewReply(idx, res, err)
		if encErr != nil {
			m.ObserveForwarded(cmd, "error")
			log.Error("forwarded command", "error", encErr)
			http.Error(w, encErr.Error(), http.StatusInternalServerError)
			return
		}
		switch {
		case err == nil:
			m.ObserveForwarded(cmd, "applied")
		case idx > 0:
			m.ObserveForwarded(cmd, "rejected")
		default:
			m.ObserveForwarded(cmd, "error")
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(rep)
	})
}
