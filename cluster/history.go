package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// History appends the lease operations a process proposes — claims,
// renewals, fenced writes, completions, failures and expiries — as JSON
// lines: one when the call starts, one when it returns. Fault tests check
// the merged histories of every node for linearizability. Each line is one
// write(2), so a SIGKILL loses at most the line being written.
type History struct {
	node string
	boot string // tells this process's IDs from a restarted one's
	seq  atomic.Uint64

	mu sync.Mutex
	f  *os.File
}

// HistoryEvent is one line of a history file.
type HistoryEvent struct {
	Phase string `json:"p"`  // "call" or "ret"
	ID    string `json:"id"` // unique across processes
	Node  string `json:"node,omitempty"`
	Op    string `json:"op,omitempty"` // claim, renew, write, complete, fail, expire
	Task  string `json:"task"`
	Token uint64 `json:"token"`
	At    int64  `json:"t"`             // unix nanos
	Res   string `json:"res,omitempty"` // ok, none, rejected, unknown
}

// OpenHistory appends to path.
func OpenHistory(path, node string) (*History, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open history: %w", err)
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return &History{node: node, boot: hex.EncodeToString(b[:]), f: f}, nil
}

// Close closes the file. A nil History is a no-op.
func (h *History) Close() error {
	if h == nil {
		return nil
	}
	return h.f.Close()
}

// Begin records the call of cmd, if it is a lease operation, and returns
// the function that records its return. A nil History records nothing.
func (h *History) Begin(cmd Command) func(result any, err error) {
	if h == nil {
		return func(any, error) {}
	}
	op, task, token := "", "", uint64(0)
	switch c := cmd.(type) {
	case *ClaimTask:
		op = "claim"
	case *RenewLease:
		op, task, token = "renew", c.TaskID, c.Token
	case *RecordIntent:
		op, task, token = "write", c.TaskID, c.Token
	case *RecordResult:
		op, task, token = "write", c.TaskID, c.Token
	case *StageWrite:
		op, task, token = "write", c.TaskID, c.Token
	case *CompleteTask:
		op, task, token = "complete", c.TaskID, c.Token
	case *FailAttempt:
		op, task, token = "fail", c.TaskID, c.Token
	case *ExpireLease:
		op, task, token = "expire", c.TaskID, c.Token
	default:
		return func(any, error) {}
	}
	id := fmt.Sprintf("%s/%s/%d", h.node, h.boot, h.seq.Add(1))
	h.write(HistoryEvent{Phase: "call", ID: id, Node: h.node, Op: op, Task: task, Token: token, At: time.Now().UnixNano()})
	return func(result any, err error) {
		ev := HistoryEvent{Phase: "ret", ID: id, Task: task, Token: token, Res: "ok"}
		switch {
		case err != nil && op == "claim" && errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrOutcomeUnknown):
			ev.Res = "rejected" // never proposed
		case err != nil:
			ev.Res = historyOutcome(err)
		case result == nil:
			ev.Res = "none"
		default:
			if c, ok := result.(*Claim); ok {
				ev.Task, ev.Token = c.Lease.TaskID, c.Lease.Token
			}
		}
		ev.At = time.Now().UnixNano()
		h.write(ev)
	}
}

// historyOutcome is "rejected" only for a fencing rejection, which proves
// the lease was not held under the token. Anything else — not applied for
// another reason, or maybe applied — says nothing about the lease: unknown.
func historyOutcome(err error) string {
	if errors.Is(err, ErrStaleToken) && !errors.Is(err, ErrOutcomeUnknown) {
		return "rejected"
	}
	return "unknown"
}

func (h *History) write(ev HistoryEvent) {
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	b = append(b, '\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, _ = h.f.Write(b) // best effort: the history is a test aid
}
