package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

// TestRoundTrip runs a Go guest that uses every orloj_v1 function through
// MemDispatcher (testdata/goguests/roundtrip).
func TestRoundTrip(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "roundtrip"))
	var echoes atomic.Int32
	tools := map[string]ToolFunc{
		"echo": func(_ context.Context, params json.RawMessage) (json.RawMessage, error) {
			echoes.Add(1)
			return json.RawMessage(`{"echoed":` + string(params) + `}`), nil
		},
	}
	clock := time.Date(2026, 11, 27, 8, 30, 0, 123456789, time.UTC)
	d := NewMemDispatcher([]byte(`{"doc":"invoice.pdf"}`), tools).SetClock(func() time.Time { return clock })
	res := runGuest(t, m, RunConfig{Dispatcher: d, TaskID: "task-1"})
	wantOutcome(t, res, OutcomeSuccess)

	var rep struct {
		Input          json.RawMessage `json:"input"`
		SmallStatus    abi.Status      `json:"small_status"`
		SmallLen       int             `json:"small_len"`
		ResponseStatus abi.Status      `json:"response_status"`
		Result         json.RawMessage `json:"result"`
		AgainStatus    abi.Status      `json:"again_status"`
		UnknownStatus  abi.Status      `json:"unknown_status"`
		UnknownBody    abi.ErrorBody   `json:"unknown_body"`
		LogStatus      abi.Status      `json:"log_status"`
		NowStatus      abi.Status      `json:"now_status"`
		Now            uint64          `json:"now"`
		EmitStatus     abi.Status      `json:"emit_status"`
	}
	if err := json.Unmarshal(d.TaskOutput(), &rep); err != nil {
		t.Fatalf("output %q: %v", d.TaskOutput(), err)
	}
	wantResult := `{"echoed":{"input":{"doc":"invoice.pdf"}}}`
	switch {
	case string(rep.Input) != `{"doc":"invoice.pdf"}`:
		t.Errorf("input %s", rep.Input)
	case rep.SmallStatus != abi.StatusBufferTooSmall || rep.SmallLen != len(wantResult):
		t.Errorf("small buffer: status %v len %d, want buffer_too_small %d", rep.SmallStatus, rep.SmallLen, len(wantResult))
	case rep.ResponseStatus != abi.StatusOK || string(rep.Result) != wantResult:
		t.Errorf("response: status %v body %s", rep.ResponseStatus, rep.Result)
	case rep.AgainStatus != abi.StatusNotFound:
		t.Errorf("second response: %v, want not_found", rep.AgainStatus)
	case rep.UnknownStatus != abi.StatusNotFound || rep.UnknownBody.Status != "not_found" || !strings.Contains(rep.UnknownBody.Message, "no_such_tool"):
		t.Errorf("unknown tool: %v %+v", rep.UnknownStatus, rep.UnknownBody)
	case rep.LogStatus != abi.StatusOK || rep.NowStatus != abi.StatusOK || rep.EmitStatus != abi.StatusOK:
		t.Errorf("log %v now %v emit %v", rep.LogStatus, rep.NowStatus, rep.EmitStatus)
	case rep.Now != uint64(clock.UnixNano()):
		t.Errorf("now %d, want the injected %d", rep.Now, clock.UnixNano())
	}
	if n := echoes.Load(); n != 1 {
		t.Errorf("echo ran %d times; response must not re-invoke it", n)
	}
	calls := d.Calls()
	if len(calls) != 2 || calls[0].Tool != "echo" || string(calls[0].Params) != `{"input":{"doc":"invoice.pdf"}}` ||
		calls[1].Tool != "no_such_tool" || calls[1].Status != abi.StatusNotFound {
		t.Errorf("calls %+v", calls)
	}
	if logs := d.Logs(); len(logs) != 1 || logs[0] != (LogLine{Level: abi.LogWarn, Line: "hello from roundtrip"}) {
		t.Errorf("logs %+v", logs)
	}
	effects := d.Effects()
	if len(effects) != 1 || effects[0].Tool != "notify" || string(effects[0].Params) != `{"a":1,"b":2}` || effects[0].Key != "k1" {
		t.Errorf("effects %+v (params must be canonical)", effects)
	}
}

// TestEchoGuest feeds an input larger than the guest's first buffer, so the
// guest goes through BufferTooSmall and response for its input.
func TestEchoGuest(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "echo"))
	input := []byte(`{"text":"` + strings.Repeat("é", 1000) + `"}`)
	d := NewMemDispatcher(input, nil)
	res := runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	if !bytes.Equal(d.TaskOutput(), input) {
		t.Errorf("output %d bytes, want the %d-byte input", len(d.TaskOutput()), len(input))
	}
	// Many attempts of one module in turn and at once.
	done := make(chan Result)
	for range 8 {
		go func() {
			done <- shared.Run(context.Background(), m, RunConfig{Dispatcher: NewMemDispatcher(input, nil)})
		}()
	}
	for range 8 {
		wantOutcome(t, <-done, OutcomeSuccess)
	}
}

func TestMemDispatcher(t *testing.T) {
	ctx := context.Background()
	d := NewMemDispatcher([]byte(`"in"`), map[string]ToolFunc{
		"fails": func(context.Context, json.RawMessage) (json.RawMessage, error) {
			return nil, errors.New("upstream said no")
		},
		"busy": func(context.Context, json.RawMessage) (json.RawMessage, error) {
			return nil, abi.Errorf(abi.StatusTransient, "503")
		},
		"nothing": func(context.Context, json.RawMessage) (json.RawMessage, error) { return nil, nil },
	})
	if _, err := d.Call(ctx, abi.CallRequest{Tool: "missing"}); !errors.Is(err, abi.StatusNotFound) {
		t.Errorf("unknown tool: %v", err)
	}
	if _, err := d.Call(ctx, abi.CallRequest{Tool: "fails"}); !errors.Is(err, abi.StatusToolError) || !strings.Contains(err.Error(), "upstream said no") {
		t.Errorf("plain error: %v", err)
	}
	if _, err := d.Call(ctx, abi.CallRequest{Tool: "busy"}); !errors.Is(err, abi.StatusTransient) {
		t.Errorf("status error: %v", err)
	}
	if res, err := d.Call(ctx, abi.CallRequest{Tool: "nothing"}); err != nil || string(res) != "null" {
		t.Errorf("nil result: %s %v", res, err)
	}
	if got := d.Calls(); len(got) != 4 || got[1].Status != abi.StatusToolError || got[3].Result == nil {
		t.Errorf("calls %+v", got)
	}
	if d.TaskOutput() != nil {
		t.Error("output before any was set")
	}
	_ = d.Output(ctx, []byte{})
	if out := d.TaskOutput(); out == nil || len(out) != 0 {
		t.Errorf("empty output set: %q", out)
	}
	before := time.Now()
	if now, _ := d.Now(ctx); now.Before(before) {
		t.Error("default clock is not time.Now")
	}
}
