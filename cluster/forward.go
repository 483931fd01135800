package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// A follower's workers propose through the leader: they send the encoded
// command, the leader applies it and answers with the result in a Reply.
// This file owns that wire form; host carries it over HTTP.

// DecodeCommand parses an encoded command (Encode's output) for forwarding.
// Unlike the FSM it refuses types it does not know, flag or not: a leader
// should not commit an entry it cannot apply. It refuses what Encode would
// have: an entry over MaxCommandBytes, or a command Validate refuses.
func DecodeCommand(b []byte) (Command, error) {
	if len(b) > MaxCommandBytes {
		return nil, fmt.Errorf("%s: %w: command is %d bytes, limit %d", MessageType(b[0]), ErrTooLarge, len(b), MaxCommandBytes)
	}
	c, ok, err := decode(b)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: unknown type %d", ErrInvalidCmd, b[0])
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.messageType(), err)
	}
	return c, nil
}

// Reply is a forwarded command's outcome: the FSM's result, tagged with its
// Go type so the proposer gets back the value a local Apply would return,
// or the error, coded so sentinels survive the trip.
type Reply struct {
	Index  uint64          `json:"index"` // the entry's Raft index; 0 if not committed
	Kind   string          `json:"kind,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
	Code   string          `json:"code,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// sentinels are the errors a proposer branches on, by wire code.
var sentinels = []struct {
	code string
	err  error
}{
	{"not_found", ErrNotFound}, {"stale_token", ErrStaleToken}, {"invalid_state", ErrInvalidState},
	{"not_leader", ErrNotLeader}, {"unknown_agent", ErrUnknownAgent},
	// too_large before invalid_command: an error may wrap both, and the
	// size is the more useful one to branch on.
	{"too_large", ErrTooLarge}, {"invalid_command", ErrInvalidCmd},
	{"already_exists", ErrAlreadyExists}, {"unknown_tool", ErrUnknownTool},
	{"unknown_schedule", ErrUnknownSchedule}, {"unknown_approval", ErrUnknownApproval},
}

// NewReply encodes what Node.Apply returned: a result or an error.
func NewReply(index uint64, result any, err error) (Reply, error) {
	r := Reply{Index: index}
	if err != nil {
		r.Code, r.Error = "error", err.Error()
		for _, s := range sentinels {
			if errors.Is(err, s.err) {
				r.Code = s.code
				break
			}
		}
		return r, nil
	}
	if result == nil {
		return r, nil
	}
	for _, k := range resultKinds {
		if k.is(result) {
			b, err := json.Marshal(result)
			if err != nil {
				return Reply{}, fmt.Errorf("forward: encode %T: %w", result, err)
			}
			r.Kind, r.Result = k.name, b
			return r, nil
		}
	}
	return Reply{}, fmt.Errorf("forward: no wire form for result type %T", result)
}

// Decode turns a Reply back into what Node.Apply would have returned.
func (r Reply) Decode() (any, error) {
	if r.Code != "" {
		for _, s := range sentinels {
			if s.code == r.Code {
				return nil, &RemoteError{Msg: r.Error, err: s.err}
			}
		}
		return nil, &RemoteError{Msg: r.Error}
	}
	if r.Kind == "" {
		return nil, nil
	}
	for _, k := range resultKinds {
		if k.name == r.Kind {
			v, err := k.decode(r.Result)
			if err != nil {
				return nil, fmt.Errorf("forward: decode %s result: %w", r.Kind, err)
			}
			return v, nil
		}
	}
	return nil, fmt.Errorf("forward: unknown result kind %q", r.Kind)
}

// resultKind is one Go type an Apply returns, under its wire name.
type resultKind struct {
	name   string
	is     func(any) bool
	decode func([]byte) (any, error)
}

func kindOf[T any](name string) resultKind {
	return resultKind{
		name: name,
		is:   func(v any) bool { _, ok := v.(T); return ok },
		decode: func(b []byte) (any, error) {
			var v T
			err := json.Unmarshal(b, &v)
			return v, err
		},
	}
}

// resultKinds lists every type the FSM's Apply returns (apply.go); the
// round-trip test covers each.
var resultKinds = []resultKind{
	kindOf[*Claim]("claim"), kindOf[Lease]("lease"), kindOf[Task]("task"), kindOf[SubmitResult]("submit"),
	kindOf[LedgerRecord]("ledger"), kindOf[Member]("member"), kindOf[Agent]("agent"), kindOf[int]("int"),
	kindOf[ToolDef]("tool"), kindOf[Schedule]("schedule"), kindOf[FireResult]("fire"),
	kindOf[Approval]("approval"), kindOf[SuspendResult]("suspend"), kindOf[SignalResult]("signal"),
}

// RemoteError is an error the leader returned for a forwarded command. It
// unwraps to the sentinel it was coded as.
type RemoteError struct {
	Msg string
	err error
}

func (e *RemoteError) Error() string { return "leader: " + e.Msg }
func (e *RemoteError) Unwrap() error { return e.err }

// ApplyIndexed is Apply that also returns the entry's Raft index, so a
// follower that forwarded the command can wait to have applied it too.
func (n *Node) ApplyIndexed(ctx context.Context, cmd Command) (any, uint64, error) {
	data, err := Encode(cmd) // refuses, unproposed, what the FSM would refuse unread
	if err != nil {
		return nil, 0, fmt.Errorf("apply %w", err)
	}
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, 0, fmt.Errorf("apply %s: %w", cmd.messageType(), context.DeadlineExceeded)
		}
	}
	f := n.raft.Apply(data, timeout)
	// raft's timeout bounds only the enqueue; the caller's context bounds
	// the wait for the commit too (the entry may still commit later), and so
	// does Close: an entry queued as raft shuts down is never answered.
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		return nil, 0, fmt.Errorf("apply %s: %w (%w)", cmd.messageType(), ctx.Err(), ErrOutcomeUnknown)
	case <-n.stop:
		return nil, 0, fmt.Errorf("apply %s: %w (%w)", cmd.messageType(), raft.ErrRaftShutdown, ErrOutcomeUnknown)
	}
	if err != nil {
		// ErrNotLeader means the entry was never enqueued; ErrLeadershipLost
		// means it may still commit. Callers that retry must tell them apart.
		if errors.Is(err, raft.ErrNotLeader) {
			return nil, 0, fmt.Errorf("apply %s: %w", cmd.messageType(), ErrNotLeader)
		}
		if errors.Is(err, raft.ErrLeadershipLost) {
			return nil, 0, fmt.Errorf("apply %s: %w (%w)", cmd.messageType(), ErrNotLeader, ErrOutcomeUnknown)
		}
		return nil, 0, fmt.Errorf("apply %s: %w", cmd.messageType(), err)
	}
	if err, ok := f.Response().(error); ok {
		return nil, f.Index(), err
	}
	return f.Response(), f.Index(), nil
}

// ErrOutcomeUnknown marks a proposal that may or may not have committed.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// WaitApplied blocks until the local FSM has applied index, or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		ch := f.Changed()
		if f.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for index %d (applied %d): %w", index, f.AppliedIndex(), ctx.Err())
		}
	}
}

// ReadIndex returns an index that covers every entry committed before the
// call: a replica that has applied it reads everything a client was told
// had been written, on any node. Only the leader answers (ErrNotLeader
// elsewhere). It takes the last index of the leader's log, which holds
// every committed entry, then confirms with a quorum that it still leads
// (raft's VerifyLeader, one heartbeat round, no log entry), so a deposed
// leader cannot hand out an index that misses a newer leader's writes.
// The index may include entries not yet committed; waiting for them costs
// a follower one more replication round, never a stale read.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, fmt.Errorf("read index: %w", ErrNotLeader)
	}
	idx := n.raft.LastIndex()
	f := n.raft.VerifyLeader()
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, fmt.Errorf("read index: %w", ErrNotLeader)
		}
		if err != nil {
			return 0, fmt.Errorf("read index: %w", err)
		}
		return idx, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("read index: %w", ctx.Err())
	case <-n.stop:
		return 0, fmt.Errorf("read index: %w", raft.ErrRaftShutdown)
	}
}
