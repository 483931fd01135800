package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/orloj/orloj/abi"
)

// ToolFunc is a tool for MemDispatcher. An error that carries an abi.Status
// reaches the guest with that status; any other error as StatusToolError.
type ToolFunc func(ctx context.Context, params json.RawMessage) (json.RawMessage, error)

// LogLine is one recorded orloj_v1 log call.
type LogLine struct {
	Level abi.LogLevel
	Line  string
}

// CallRecord is one recorded orloj_v1 call.
type CallRecord struct {
	Tool   string
	Params json.RawMessage // canonical
	Key    string
	Result json.RawMessage // the tool's result; nil unless Status is StatusOK
	Status abi.Status
	Err    string // the error's text unless Status is StatusOK
}

// MemDispatcher is an in-memory Dispatcher: a fixed input, a map of tools,
// and records of everything the guest did. It has no ledger: every call
// invokes its tool. It is safe for concurrent use, and can serve several
// attempts in turn (the records accumulate).
type MemDispatcher struct {
	input []byte
	tools map[string]ToolFunc

	mu      sync.Mutex
	clock   func() time.Time
	output  []byte
	hasOut  bool
	logs    []LogLine
	calls   []CallRecord
	effects []abi.Effect
	waits   []abi.WaitRequest
	signals map[string][]json.RawMessage
	suspend bool
}

// NewMemDispatcher returns a MemDispatcher serving input and tools. Unknown
// tools answer StatusNotFound. Now reads time.Now until SetClock.
func NewMemDispatcher(input []byte, tools map[string]ToolFunc) *MemDispatcher {
	return &MemDispatcher{input: slices.Clone(input), tools: tools, clock: time.Now}
}

// SetClock injects the clock Now reads, so tests control what the guest sees.
func (d *MemDispatcher) SetClock(clock func() time.Time) *MemDispatcher {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock = clock
	return d
}

// Signal keeps a signal for the guest's next wait on name.
func (d *MemDispatcher) Signal(name string, payload json.RawMessage) *MemDispatcher {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.signals == nil {
		d.signals = map[string][]json.RawMessage{}
	}
	d.signals[name] = append(d.signals[name], slices.Clone(payload))
	return d
}

// SuspendWaits makes every wait that has no answer suspend the attempt
// (ErrSuspend) instead of answering at once.
func (d *MemDispatcher) SuspendWaits(on bool) *MemDispatcher {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.suspend = on
	return d
}

// Wait implements WaitDispatcher, with nothing durable: a sleep answers at
// once with its wake time; a signal wait takes the oldest signal given to
// Signal, else times out. With SuspendWaits, a future sleep or a signal
// wait with nothing kept suspends instead.
func (d *MemDispatcher) Wait(_ context.Context, req abi.WaitRequest, _ []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.waits = append(d.waits, req)
	now := d.clock().UnixNano()
	switch req.Kind {
	case abi.WaitSleep:
		until := req.Until
		if until == 0 {
			until = now + req.Duration
		}
		if d.suspend && until > now {
			return nil, fmt.Errorf("sleep until %d: %w", until, ErrSuspend)
		}
		return json.Marshal(abi.WaitResult{Until: until})
	default:
		if q := d.signals[req.Name]; len(q) > 0 {
			d.signals[req.Name] = q[1:]
			return q[0], nil
		}
		if d.suspend {
			return nil, fmt.Errorf("await signal %q: %w", req.Name, ErrSuspend)
		}
		return nil, abi.Errorf(abi.StatusTimeout, "no signal %q", req.Name)
	}
}

// Waits returns the waits the guest made, in order.
func (d *MemDispatcher) Waits() []abi.WaitRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.waits)
}

// Input implements Dispatcher.
func (d *MemDispatcher) Input(context.Context) ([]byte, error) { return d.input, nil }

// Call implements Dispatcher: it runs the tool (without holding the lock, so
// tools may block or run concurrently) and records the call.
func (d *MemDispatcher) Call(ctx context.Context, req abi.CallRequest) ([]byte, error) {
	rec, res, err := d.invoke(ctx, req)
	d.mu.Lock()
	d.calls = append(d.calls, rec)
	d.mu.Unlock()
	return res, err
}

// memBatchConcurrency bounds the calls of one batch run at once.
const memBatchConcurrency = 8

// CallBatch implements BatchDispatcher: the calls run at once (at most
// eight at a time) and are recorded in request order.
func (d *MemDispatcher) CallBatch(ctx context.Context, reqs []abi.CallRequest) []CallResult {
	out := make([]CallResult, len(reqs))
	recs := make([]CallRecord, len(reqs))
	sem := make(chan struct{}, memBatchConcurrency)
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			defer func() {
				if p := recover(); p != nil { // a tool's panic is a host fault, as in Call
					out[i].Err = fmt.Errorf("tool %s panicked: %v", r.Tool, p)
				}
			}()
			var res json.RawMessage
			recs[i], res, out[i].Err = d.invoke(ctx, r)
			out[i].Body = res
		}()
	}
	wg.Wait()
	d.mu.Lock()
	d.calls = append(d.calls, recs...)
	d.mu.Unlock()
	return out
}

func (d *MemDispatcher) invoke(ctx context.Context, req abi.CallRequest) (CallRecord, json.RawMessage, error) {
	rec := CallRecord{Tool: req.Tool, Params: req.Params, Key: req.Key}
	tool, ok := d.tools[req.Tool]
	var res json.RawMessage
	var err error
	if !ok {
		err = abi.Errorf(abi.StatusNotFound, "no tool named %q", req.Tool)
	} else if res, err = tool(ctx, req.Params); err != nil {
		if _, ok := abi.StatusOf(err); !ok {
			err = &abi.Error{Status: abi.StatusToolError, Message: err.Error()}
		}
	} else if res == nil {
		res = json.RawMessage("null")
	}
	if err != nil {
		rec.Status, _ = abi.StatusOf(err)
		rec.Err = err.Error()
	} else {
		rec.Result = res
	}
	return rec, res, err
}

// Output implements Dispatcher.
func (d *MemDispatcher) Output(_ context.Context, output []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.output, d.hasOut = output, true
	return nil
}

// Log implements Dispatcher.
func (d *MemDispatcher) Log(_ context.Context, level abi.LogLevel, line []byte) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.logs = append(d.logs, LogLine{Level: level, Line: string(line)})
	return nil
}

// Now implements Dispatcher.
func (d *MemDispatcher) Now(context.Context) (time.Time, error) {
	d.mu.Lock()
	clock := d.clock
	d.mu.Unlock()
	return clock(), nil
}

// Emit implements Dispatcher.
func (d *MemDispatcher) Emit(_ context.Context, effect abi.Effect) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.effects = append(d.effects, effect)
	return nil
}

// TaskOutput returns the last output the guest set, nil if none. (It is not
// named Output because that is the Dispatcher method the guest calls.)
func (d *MemDispatcher) TaskOutput() []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.hasOut {
		return nil
	}
	return slices.Clone(d.output)
}

// Logs returns the recorded log lines, oldest first.
func (d *MemDispatcher) Logs() []LogLine {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.logs)
}

// Calls returns the recorded calls, oldest first.
func (d *MemDispatcher) Calls() []CallRecord {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.calls)
}

// Effects returns the recorded effects, oldest first.
func (d *MemDispatcher) Effects() []abi.Effect {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.effects)
}
