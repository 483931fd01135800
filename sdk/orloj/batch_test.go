//go:build !wasip1

package orloj_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// CallAll's handlers run at once; the responses come back in request order,
// each with its own error, and the fake records the calls in that order.
func TestCallAll(t *testing.T) {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	lookup := func(p json.RawMessage) (any, error) {
		mu.Lock()
		arrived++
		if arrived == 2 {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			return nil, errors.New("the two lookups did not run at once")
		}
		return map[string]json.RawMessage{"order": p}, nil
	}
	f := install(t, orloj.NewFake().
		Handle("lookup", lookup).
		Handle("flaky", func(json.RawMessage) (any, error) { return nil, abi.Errorf(abi.StatusTransient, "503 from upstream") }))
	big := strings.Repeat("y", 100<<10) // past the SDK's first response buffer
	res, err := orloj.CallAll(
		orloj.Request{Tool: "lookup", Params: map[string]string{"id": "A1"}},
		orloj.Request{Tool: "flaky"},
		orloj.Request{Tool: "lookup", Params: map[string]string{"id": big}, Opts: []orloj.CallOption{orloj.WithKey("k")}},
		orloj.Request{Tool: "nope"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 4 {
		t.Fatalf("%d responses, want 4", len(res))
	}
	var got struct {
		Order struct{ ID string } `json:"order"`
	}
	if err := res[0].Into(&got); err != nil || got.Order.ID != "A1" {
		t.Errorf("response 0: %+v, %v", got, err)
	}
	if !errors.Is(res[1].Err, orloj.ErrTransient) || !strings.Contains(res[1].Err.Error(), "503 from upstream") {
		t.Errorf("response 1: %v, want transient with the handler's message", res[1].Err)
	}
	if err := res[2].Into(&got); err != nil || got.Order.ID != big {
		t.Errorf("response 2: %d bytes, %v", len(got.Order.ID), err)
	}
	if !errors.Is(res[3].Err, orloj.ErrNotFound) || res[3].Into(&got) == nil {
		t.Errorf("response 3: %v, want not_found (and Into to return it)", res[3].Err)
	}
	calls := f.Calls()
	var names []string
	for _, c := range calls {
		names = append(names, c.Tool+"/"+c.Key)
	}
	if strings.Join(names, " ") != "lookup/ flaky/ lookup/k nope/" {
		t.Errorf("recorded calls %v", names)
	}
}

// A batch the host refuses as a whole returns an error and makes no call.
func TestCallAllRefused(t *testing.T) {
	f := install(t, orloj.NewFake().Handle("t", echo))
	if res, err := orloj.CallAll(); err != nil || res != nil {
		t.Errorf("empty batch: %v, %v; want nothing", res, err)
	}
	many := make([]orloj.Request, abi.MaxBatchCalls+1)
	for i := range many {
		many[i] = orloj.Request{Tool: "t"}
	}
	if _, err := orloj.CallAll(many...); !errors.Is(err, orloj.ErrInvalidArgument) {
		t.Errorf("65 calls: %v, want invalid_argument", err)
	}
	if _, err := orloj.CallAll(orloj.Request{Tool: "t"}, orloj.Request{Tool: "bad name"}); !errors.Is(err, orloj.ErrInvalidArgument) || !strings.Contains(err.Error(), "batch call 1") {
		t.Errorf("bad tool name: %v, want invalid_argument naming call 1", err)
	}
	if _, err := orloj.CallAll(orloj.Request{Tool: "t", Params: json.RawMessage(`{`)}); !errors.Is(err, orloj.ErrInvalidArgument) {
		t.Errorf("params not JSON: %v, want invalid_argument", err)
	}
	if n := len(f.Calls()); n != 0 {
		t.Errorf("%d calls made by refused batches", n)
	}
}
