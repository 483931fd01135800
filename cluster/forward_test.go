package cluster

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// A forwarded command must come back as the same Go value a local Apply
// returns, and errors as the sentinels callers branch on.
func TestReplyRoundTrip(t *testing.T) {
	results := []any{
		nil,
		&Claim{Task: Task{ID: "t1", Attempts: 2, Input: []byte(`{}`)}, Lease: Lease{TaskID: "t1", Token: 42, Node: "n2"}},
		Lease{TaskID: "t1", Token: 42},
		Task{ID: "t1", State: StateSucceeded, Input: []byte(`{}`), Output: []byte(`{"ok":true}`)},
		SubmitResult{Task: Task{ID: "t2", Input: []byte(`[1]`)}, Existing: true},
		LedgerRecord{TaskID: "t1", CallID: "c1", HasResult: true, Result: []byte(`"r"`)},
		Member{ID: "n1", APIAddr: "127.0.0.1:1", Removed: true},
		Agent{Name: "a", Version: "v1", Digest: "d"},
		7,
		ToolDef{Name: "slack", Version: 2, Kind: "http", Spec: []byte(`{}`)},
		Schedule{Name: "s", Agent: "a", Cron: "* * * * *", Overlap: OverlapSkip, CatchUp: CatchUpOne, Input: []byte(`{}`), Next: 5},
		FireResult{Schedule: Schedule{Name: "s", Input: []byte(`1`)}, Task: "t3"},
		Approval{CallID: "c1", TaskID: "t1", Params: []byte(`{}`), State: ApprovalPending},
		SuspendResult{Approved: true, Task: Task{ID: "t1", Input: []byte(`{}`), Wait: &Wait{Kind: WaitApproval, CallID: "c1"}}},
		SignalResult{Task: Task{ID: "t1", Input: []byte(`1`)}, Delivered: true},
	}
	for _, want := range results {
		rep, err := NewReply(9, want, nil)
		if err != nil {
			t.Fatalf("NewReply(%T): %v", want, err)
		}
		got, err := rep.Decode()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("round trip of %T = %#v, %v; want %#v", want, got, err, want)
		}
	}
	for _, sentinel := range []error{ErrStaleToken, ErrNotFound, ErrNotLeader, ErrInvalidState, ErrUnknownAgent, ErrInvalidCmd, ErrAlreadyExists, ErrUnknownTool, ErrUnknownSchedule, ErrUnknownApproval} {
		rep, _ := NewReply(0, nil, fmt.Errorf("task t1: %w", sentinel))
		_, err := rep.Decode()
		if !errors.Is(err, sentinel) || err.Error() != "leader: task t1: "+sentinel.Error() {
			t.Errorf("error %v came back as %v", sentinel, err)
		}
	}
	if _, err := NewReply(1, struct{}{}, nil); err == nil {
		t.Error("NewReply accepted a result type it cannot decode")
	}
}

func TestDecodeCommandRefusesUnknownTypes(t *testing.T) {
	b, _ := Encode(&RenewLease{TaskID: "t", Token: 3, TTL: 1, Now: 1})
	c, err := DecodeCommand(b)
	if err != nil || c.(*RenewLease).Token != 3 {
		t.Fatalf("DecodeCommand = %#v, %v", c, err)
	}
	for _, bad := range [][]byte{nil, {0x7f, '{', '}'}, {0xff, '{', '}'}} {
		if _, err := DecodeCommand(bad); !errors.Is(err, ErrInvalidCmd) {
			t.Errorf("DecodeCommand(%x) = %v, want ErrInvalidCmd", bad, err)
		}
	}
}
