package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

// batchRun sends batch, as it is, through testdata/goguests/batch with a
// response buffer of bufSize bytes and returns what the guest saw. With
// concurrent, the sandbox sees d's CallBatch; without, only its Call.
func batchRun(t *testing.T, d Dispatcher, concurrent bool, batch string, bufSize int) (st abi.Status, firstLen int, body string) {
	return batchRunSummary(t, d, concurrent, batch, bufSize, false)
}

func batchRunSummary(t *testing.T, d Dispatcher, concurrent bool, batch string, bufSize int, summary bool) (st abi.Status, firstLen int, body string) {
	t.Helper()
	m := mustCompile(t, shared, goGuest(t, "batch"))
	in, _ := json.Marshal(map[string]any{"batch": batch, "buf": bufSize, "summary": summary})
	oc := &outputCatcher{Dispatcher: d, input: in}
	var rd Dispatcher = oc
	if concurrent {
		rd = batchCatcher{oc}
	}
	res := runGuest(t, m, RunConfig{Dispatcher: rd, TaskID: "task-1", Timeout: time.Minute})
	wantOutcome(t, res, OutcomeSuccess)
	var rep struct {
		Status   abi.Status `json:"status"`
		FirstLen int        `json:"first_len"`
		Body     string     `json:"body"`
	}
	if err := json.Unmarshal(oc.output, &rep); err != nil {
		t.Fatalf("guest output %q: %v", oc.output, err)
	}
	return rep.Status, rep.FirstLen, rep.Body
}

// outputCatcher serves the guest's input and keeps its output, and passes
// calls to the Dispatcher it wraps; it is a BatchDispatcher only when that
// one is.
type outputCatcher struct {
	Dispatcher
	input, output []byte
}

func (o *outputCatcher) Input(context.Context) ([]byte, error) { return o.input, nil }
func (o *outputCatcher) Output(_ context.Context, b []byte) error {
	o.output = b
	return nil
}

type batchCatcher struct{ *outputCatcher }

func (b batchCatcher) CallBatch(ctx context.Context, reqs []abi.CallRequest) []CallResult {
	return b.Dispatcher.(BatchDispatcher).CallBatch(ctx, reqs)
}

func batchItems(t *testing.T, body string) []abi.BatchItem {
	t.Helper()
	var items []abi.BatchItem
	if err := json.Unmarshal([]byte(body), &items); err != nil {
		t.Fatalf("batch body %.200q: %v", body, err)
	}
	return items
}

// overlap is a tool that holds each call until n are in flight at once, so
// a batch that ran them one by one times out instead of passing.
func overlap(n int) (ToolFunc, *atomic.Int32) {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	var peak atomic.Int32
	var inFlight atomic.Int32
	return func(ctx context.Context, p json.RawMessage) (json.RawMessage, error) {
		if v := inFlight.Add(1); v > peak.Load() {
			peak.Store(v)
		}
		defer inFlight.Add(-1)
		mu.Lock()
		arrived++
		if arrived == n {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
		case <-time.After(10 * time.Second):
			return nil, abi.Errorf(abi.StatusToolError, "only %d of %d calls arrived together", arrived, n)
		}
		return json.RawMessage(`{"got":` + string(p) + `}`), nil
	}, &peak
}

// The calls of a batch run at once and answer in request order, each with
// its own status; the dispatcher records them in request order.
func TestCallBatchRunsCallsAtOnce(t *testing.T) {
	slow, _ := overlap(3)
	d := NewMemDispatcher(nil, map[string]ToolFunc{"slow": slow,
		"bad": func(context.Context, json.RawMessage) (json.RawMessage, error) {
			return nil, abi.Errorf(abi.StatusToolError, "no such order")
		}})
	st, _, body := batchRun(t, d, true,
		`[{"tool":"slow","params":{"i":1}},{"tool":"bad"},{"tool":"slow","params":{"i":2}},{"tool":"missing"},{"tool":"slow","params":{"i":3}}]`, 1<<16)
	if st != abi.StatusOK {
		t.Fatalf("status %v, body %s", st, body)
	}
	items := batchItems(t, body)
	want := []abi.BatchItem{
		{Status: "ok", Result: json.RawMessage(`{"got":{"i":1}}`)},
		{Status: "tool_error", Message: "no such order"},
		{Status: "ok", Result: json.RawMessage(`{"got":{"i":2}}`)},
		{Status: "not_found", Message: `no tool named "missing"`},
		{Status: "ok", Result: json.RawMessage(`{"got":{"i":3}}`)},
	}
	if len(items) != len(want) {
		t.Fatalf("%d items, want %d: %s", len(items), len(want), body)
	}
	for i := range want {
		if items[i].Status != want[i].Status || string(items[i].Result) != string(want[i].Result) || items[i].Message != want[i].Message {
			t.Errorf("item %d = %+v (result %s), want %+v (result %s)", i, items[i], items[i].Result, want[i], want[i].Result)
		}
	}
	var tools []string
	for _, c := range d.Calls() {
		tools = append(tools, c.Tool+string(c.Params))
	}
	if got := strings.Join(tools, " "); got != `slow{"i":1} badnull slow{"i":2} missingnull slow{"i":3}` {
		t.Errorf("recorded calls %s", got)
	}
}

// A Dispatcher without CallBatch gets the calls one by one, in order.
func TestCallBatchWithoutBatchDispatcherIsSequential(t *testing.T) {
	var inFlight, peak atomic.Int32
	seq := func(_ context.Context, p json.RawMessage) (json.RawMessage, error) {
		if v := inFlight.Add(1); v > peak.Load() {
			peak.Store(v)
		}
		defer inFlight.Add(-1)
		time.Sleep(time.Millisecond) // widen any overlap; not synchronisation
		return p, nil
	}
	d := NewMemDispatcher(nil, map[string]ToolFunc{"t": seq})
	st, _, body := batchRun(t, d, false, `[{"tool":"t","params":1},{"tool":"t","params":2},{"tool":"t","params":3}]`, 4096)
	if st != abi.StatusOK || body != `[{"status":"ok","result":1},{"status":"ok","result":2},{"status":"ok","result":3}]` {
		t.Fatalf("status %v body %s", st, body)
	}
	if p := peak.Load(); p != 1 {
		t.Errorf("%d calls in flight at once through Call, want 1", p)
	}
}

// A malformed batch is refused whole: invalid_argument with a message that
// names the problem, and no tool runs.
func TestCallBatchRefusesMalformed(t *testing.T) {
	many := "[" + strings.TrimSuffix(strings.Repeat(`{"tool":"t"},`, abi.MaxBatchCalls+1), ",") + "]"
	for _, tc := range []struct{ name, batch, want string }{
		{"not JSON", `[{`, "want a JSON array"},
		{"object", `{"tool":"t"}`, "want a JSON array"},
		{"empty", `[]`, "0 calls; want 1 to 64"},
		{"too many", many, "65 calls; want 1 to 64"},
		{"unknown field", `[{"tool":"t"},{"tool":"t","extra":1}]`, `batch call 1: decode request: unknown field "extra"`},
		{"bad tool name", `[{"tool":"t"},{"tool":"t t"}]`, "batch call 1: tool name"},
		{"duplicate member", `[{"tool":"t","tool":"u"}]`, "batch call 0: decode request"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var invoked atomic.Int32
			d := NewMemDispatcher(nil, map[string]ToolFunc{"t": func(context.Context, json.RawMessage) (json.RawMessage, error) {
				invoked.Add(1)
				return json.RawMessage(`1`), nil
			}})
			st, _, body := batchRun(t, d, true, tc.batch, 4096)
			var eb abi.ErrorBody
			_ = json.Unmarshal([]byte(body), &eb)
			if st != abi.StatusInvalidArgument || eb.Status != "invalid_argument" || !strings.Contains(eb.Message, tc.want) {
				t.Errorf("status %v body %s; want invalid_argument mentioning %q", st, body, tc.want)
			}
			if n := invoked.Load(); n != 0 {
				t.Errorf("%d tool calls for a refused batch", n)
			}
		})
	}
}

// A response that does not fit the buffer is kept for response, whole.
func TestCallBatchBufferTooSmall(t *testing.T) {
	d := NewMemDispatcher(nil, map[string]ToolFunc{"t": func(_ context.Context, p json.RawMessage) (json.RawMessage, error) { return p, nil }})
	st, first, body := batchRun(t, d, true, `[{"tool":"t","params":"aaaaaaaaaaaaaaaaaaaa"},{"tool":"t","params":"b"}]`, 16)
	want := `[{"status":"ok","result":"aaaaaaaaaaaaaaaaaaaa"},{"status":"ok","result":"b"}]`
	if st != abi.StatusOK || body != want || first != len(want) {
		t.Errorf("status %v, first len %d, body %s; want ok, %d, %s", st, first, body, len(want), want)
	}
}

// Results over a call's limit, or past the batch's, are tool errors in their
// items; the rest of the batch still answers.
func TestCallBatchResponseLimits(t *testing.T) {
	big := func(n int) ToolFunc {
		return func(context.Context, json.RawMessage) (json.RawMessage, error) {
			return json.RawMessage(`"` + strings.Repeat("x", n-2) + `"`), nil
		}
	}
	d := NewMemDispatcher(nil, map[string]ToolFunc{"huge": big(abi.MaxResponseBytes + 1), "big": big(abi.MaxResponseBytes - 64), "small": big(10)})
	batch := `[{"tool":"small"},{"tool":"huge"},{"tool":"big"},{"tool":"big","params":1},{"tool":"big","params":2},{"tool":"big","params":3},{"tool":"small","params":1}]`
	st, first, body := batchRunSummary(t, d, true, batch, 1<<16, true)
	if st != abi.StatusOK {
		t.Fatalf("status %v", st)
	}
	if first > abi.MaxBatchResponseBytes {
		t.Errorf("response is %d bytes, limit %d", first, abi.MaxBatchResponseBytes)
	}
	var items []struct {
		Status  string `json:"status"`
		Result  int    `json:"result"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &items); err != nil {
		t.Fatalf("summary %s: %v", body, err)
	}
	var got []string
	for _, it := range items {
		s := it.Status
		if strings.Contains(it.Message, "does not fit in the batch") {
			s += "(batch)"
		} else if strings.Contains(it.Message, "limit") {
			s += "(call)"
		}
		got = append(got, s)
	}
	// Four big results and the small ones pass the batch's limit by a few
	// bytes: the last big one makes way, the small one after it stays.
	if g := strings.Join(got, " "); g != "ok tool_error(call) ok ok ok tool_error(batch) ok" {
		t.Errorf("items: %s", g)
	}
}

type faultyBatch struct{ *outputCatcher }

func (faultyBatch) CallBatch(_ context.Context, reqs []abi.CallRequest) []CallResult {
	out := make([]CallResult, len(reqs))
	for i := range out {
		out[i].Body = []byte("1")
	}
	out[len(reqs)-1].Err = errors.New("ledger unreachable") // no status: the host failed
	return out
}

// A call of a batch that fails without a status is a host fault: the
// attempt ends, as for Call.
func TestCallBatchHostFault(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "batch"))
	in, _ := json.Marshal(map[string]any{"batch": `[{"tool":"t"},{"tool":"t"}]`, "buf": 4096})
	res := runGuest(t, m, RunConfig{Dispatcher: faultyBatch{&outputCatcher{Dispatcher: NewMemDispatcher(nil, nil), input: in}}, TaskID: "t"})
	wantOutcome(t, res, OutcomeHostFault)
	if !strings.Contains(fmt.Sprint(res.Err), "ledger unreachable") {
		t.Errorf("err %v", res.Err)
	}
}
