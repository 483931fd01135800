package cluster

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// seedCommands is one command of every type, as a worker, the API or the
// leader would send them, against fuzzSetup's state (task "t" leased with
// token 3).
func seedCommands() []Command {
	const tok = 3
	return []Command{
		&PutAgent{Agent: Agent{Name: "doc", Version: "v2", Manifest: AgentManifest{Tools: []string{"http"}, Budget: Budget{MaxCalls: 5}}}, Module: []byte("\x00asm"), Now: 1},
		&PutModuleChunk{Digest: strings.Repeat("ab", 32), N: 0, Data: []byte("chunk"), Now: 1},
		&SetMember{Member: Member{ID: "n2", APIAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2"}, Now: 1},
		&SubmitTask{Task: Task{ID: "u", Agent: "doc", Version: "v1", Input: json.RawMessage(`{"a":1}`), IdempotencyKey: "k", Budget: Budget{MaxTokens: 10}}, Now: 2},
		&ClaimTask{Node: "n1", TTL: time.Second, Now: 3},
		&RenewLease{TaskID: "t", Token: tok, TTL: time.Second, Now: 4},
		&ExpireLease{TaskID: "t", Token: tok, Jitter: 7, Now: int64(time.Hour)},
		&ExtendLeases{Now: 5},
		&RecordIntent{TaskID: "t", Token: tok, CallID: "c1", Tool: "http", Now: 6},
		&RecordResult{TaskID: "t", Token: tok, CallID: "c1", Tool: "clock", Status: "ok", Result: json.RawMessage(`1`), Event: &Event{Type: "call"}, Now: 7},
		&CompleteTask{TaskID: "t", Token: tok, Output: json.RawMessage(`"done"`), Outbox: []Effect{{Tool: "notify", Params: json.RawMessage(`{}`), Key: "e"}}, Journal: []Event{{Type: "replayed"}}, Now: 8},
		&FailAttempt{TaskID: "t", Token: tok, Error: TaskError{Class: ClassTransient, Message: "503", StderrTail: "x"}, Jitter: 1 << 63, Now: 9},
		&RetryDLQ{TaskID: "t", Budget: Budget{MaxCalls: 9}, Now: 10},
		&DiscardDLQ{TaskID: "t", Reason: "no", Now: 11},
		&CancelTask{TaskID: "t", Reason: "stop", Now: 12},
		&StageWrite{TaskID: "t", Token: tok, Write: KVWrite{Key: "a", Value: json.RawMessage(`1`)}, Now: 13},
		&AppendJournal{TaskID: "t", Token: tok, Events: []Event{{Type: "call_denied", Tool: "shell"}}, Now: 14},
		&MarkEffectDone{TaskID: "t", N: 0, Now: 15},
		&CompactTasks{IDs: []string{"t", "u"}, Before: 100, Now: 16},
		&PutTool{Tool: ToolDef{Name: "slack", Kind: "http", Spec: json.RawMessage(`{"kind":"http","name":"slack"}`)}, Now: 17},
		&RemoveTool{Name: "slack", Now: 18},
		&PutSchedule{Schedule: Schedule{Name: "nightly", Agent: "doc", Cron: "0 2 * * *", Overlap: OverlapSkip, CatchUp: CatchUpOne, Input: json.RawMessage(`{}`), Next: 100}, Now: 19},
		&FireSchedule{Name: "nightly", Expect: 100, At: 100, Next: 200, TaskID: "s1", Version: "v2", Now: 101},
		&PauseSchedule{Name: "nightly", Paused: true, Now: 102},
		&PauseSchedule{Name: "nightly", Next: 300, Now: 103},
		&DeleteSchedule{Name: "nightly", Now: 104},
		&DecideApproval{CallID: "c1", Approve: false, By: "ana", Note: "too much", Now: 19},
		&Suspend{TaskID: "t", Token: tok, Wait: Wait{Kind: WaitSleep, CallID: "w1", Tool: "orloj.sleep", Until: int64(time.Hour)}, Journal: []Event{{Type: "log"}}, Now: 19},
		&WakeTask{TaskID: "t", Token: tok, More: []WaitRef{{TaskID: "u", Token: 9}}, Now: int64(2 * time.Hour)},
		&SendSignal{TaskID: "t", Name: "approved", Key: "k1", Payload: json.RawMessage(`{"ok":true}`), Now: 20},
	}
}

// FuzzDecodeCommand: any bytes a peer or a forwarded request carries decode
// to a command or an error, never a panic; what decodes re-encodes to a
// command of the same type.
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range seedCommands() {
		b, err := marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := DecodeCommand(b)
		if err != nil {
			if !errors.Is(err, ErrInvalidCmd) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("DecodeCommand error %v is neither ErrInvalidCmd nor ErrTooLarge", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded a command Validate refuses: %v", err)
		}
		again, err := marshal(c)
		if err != nil {
			t.Fatalf("re-encode %T: %v", c, err)
		}
		if again[0] != b[0]&^byte(IgnoreUnknownFlag) || MessageType(again[0]) != c.messageType() {
			t.Fatalf("type %d decoded as %s", b[0], c.messageType())
		}
	})
}

// fuzzSetup is an FSM holding agent doc@v1 and task "t" leased with token 3,
// with write limits lowered so that modest entries reach the rollback.
func fuzzSetup(t *testing.T) *harness {
	h := newHarness(t)
	h.fsm.lim.entryBytes, h.fsm.lim.entryOps = 8<<10, 64
	h.fsm.lim.commitBytes, h.fsm.lim.commitOps = 4<<10, 32
	h.agent("doc", "v1", "m")
	h.submit("t", RetryPolicy{MaxAttempts: 2}, 0)
	if c := h.claim(1); c == nil || c.Lease.Token != 3 {
		t.Fatalf("setup claim = %+v", c)
	}
	return h
}

// FuzzApply: any entry, applied in a batch between valid ones, leaves the
// FSM applying: no panic, the applied index reaches the batch's end, the
// entries around it apply, and the in-memory indexes agree with Badger.
func FuzzApply(f *testing.F) {
	for _, c := range seedCommands() {
		b, err := marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		h := fuzzSetup(t)
		before, _ := marshal(&SubmitTask{Task: Task{ID: "fuzz-before", Agent: "doc", Version: "v1"}, Now: 20})
		after, _ := marshal(&ClaimTask{Node: "n9", TTL: time.Minute, Now: 30})
		first := h.idx + 1
		logs := []*raft.Log{
			{Index: first, Term: 1, Type: raft.LogCommand, Data: before},
			{Index: first + 1, Term: 1, Type: raft.LogCommand, Data: b},
			{Index: first + 2, Term: 1, Type: raft.LogCommand, Data: after},
		}
		resps := h.applyLogs(logs)
		if got := h.fsm.AppliedIndex(); got != first+2 {
			t.Fatalf("applied index %d, want %d", got, first+2)
		}
		if err, ok := resps[0].(error); ok {
			t.Fatalf("entry before the fuzzed one: %v", err)
		}
		if err, ok := resps[2].(error); ok {
			t.Fatalf("entry after the fuzzed one: %v", err)
		}
		indexesAgree(t, h.fsm)
		// The same log gives the same state entry by entry.
		other := newFSM(t)
		other.lim = h.fsm.lim
		for _, l := range h.log {
			other.Apply(l)
		}
		want, _ := h.fsm.Hash()
		if got, _ := other.Hash(); got != want {
			t.Fatal("batch and entry-by-entry application diverged")
		}
	})
}
