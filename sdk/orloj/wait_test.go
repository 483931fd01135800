//go:build !wasip1

package orloj_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// TestFakeSleepAdvancesClock: a sleep returns at once and moves the fake's
// clock to its wake time, which Now then reads.
func TestFakeSleepAdvancesClock(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	f := install(t, orloj.NewFake().SetNow(start))
	if err := orloj.Sleep(2 * time.Hour); err != nil {
		t.Fatal(err)
	}
	now, err := orloj.Now()
	if err != nil || !now.Equal(start.Add(2*time.Hour)) {
		t.Fatalf("now after sleep = %v, %v", now, err)
	}
	if err := orloj.SleepUntil(start.Add(time.Hour)); err != nil { // past: no change
		t.Fatal(err)
	}
	if err := orloj.SleepUntil(start.Add(26 * time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := f.Clock(); !got.Equal(start.Add(26 * time.Hour)) {
		t.Fatalf("clock = %v", got)
	}
	if err := orloj.Sleep(0); err != nil || len(f.Waits()) != 3 {
		t.Fatalf("sleep(0): %v; waits %+v", err, f.Waits())
	}
	if w := f.Waits()[0]; w.Request.Kind != abi.WaitSleep || w.Request.Duration != int64(2*time.Hour) || w.Status != abi.StatusOK {
		t.Fatalf("first wait %+v", w)
	}
}

// TestFakeAwait: a signal sent before the await is taken, in order; with
// none, a timeout moves the clock and is ErrTimeout; with no timeout the
// fake refuses to wait forever.
func TestFakeAwait(t *testing.T) {
	start := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	f := install(t, orloj.NewFake().SetNow(start).
		Signal("approved", map[string]string{"by": "ana"}).
		Signal("approved", map[string]string{"by": "bo"}))
	var got struct{ By string }
	if err := orloj.AwaitInto("approved", time.Hour, &got); err != nil || got.By != "ana" {
		t.Fatalf("first await: %+v, %v", got, err)
	}
	if err := orloj.AwaitInto("approved", 0, &got); err != nil || got.By != "bo" {
		t.Fatalf("second await: %+v, %v", got, err)
	}
	_, err := orloj.Await("approved", 30*time.Minute)
	if !errors.Is(err, orloj.ErrTimeout) {
		t.Fatalf("await with nothing sent: %v", err)
	}
	if c := f.Clock(); !c.Equal(start.Add(30 * time.Minute)) {
		t.Fatalf("clock after a timeout: %v", c)
	}
	if _, err := orloj.Await("approved", 0); !errors.Is(err, orloj.ErrInvalidArgument) {
		t.Fatalf("await forever: %v", err)
	}
	if _, err := orloj.Await("bad name", time.Second); !errors.Is(err, orloj.ErrInvalidArgument) {
		t.Fatalf("await with a bad name: %v", err)
	}
}

// TestFakeApprovals: a tool that needs approval reaches its handler once
// approved; denied, the agent gets ErrPermissionDenied with the reason and
// the handler is not called; undecided, the fake says how to decide.
func TestFakeApprovals(t *testing.T) {
	charged := 0
	f := install(t, orloj.NewFake().Handle("payments", func(json.RawMessage) (any, error) { charged++; return "ch_1", nil }).
		RequireApproval("payments"))
	if _, err := orloj.Call("payments", map[string]int{"amount": 5}); err == nil || !errors.Is(err, orloj.ErrInvalidArgument) {
		t.Fatalf("an undecided call: %v", err)
	}
	f.Deny("payments", "over the limit")
	_, err := orloj.Call("payments", map[string]int{"amount": 5})
	if !errors.Is(err, orloj.ErrPermissionDenied) || !strings.Contains(err.Error(), "over the limit") || charged != 0 {
		t.Fatalf("a denied call: %v, %d charges", err, charged)
	}
	f.Approve("payments")
	if _, err := orloj.Call("payments", map[string]int{"amount": 5}); err != nil || charged != 1 {
		t.Fatalf("an approved call: %v, %d charges", err, charged)
	}
}
