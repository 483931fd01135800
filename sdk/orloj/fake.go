//go:build !wasip1

package orloj

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/orloj/orloj/abi"
)

// Fake is an in-process host for native builds, so agent logic can be tested
// with plain go test. A test builds one, scripts it (SetInput, Handle,
// SetNow), installs it, runs the agent's run function and inspects what the
// agent did (Calls, Output, Logs, Effects):
//
//	f := orloj.NewFake().SetInput(in).Handle("http", httpHandler)
//	t.Cleanup(f.Install())
//	err := run()
//
// The fake answers the way the host does: requests are validated with
// abi.DecodeCallRequest, params reach handlers in canonical form, an
// unregistered tool is ErrNotFound, error bodies and oversized responses
// cross the same buffer protocol as under wasm.
//
// The SDK's functions are package-level, so only one Fake can be installed at
// a time: tests that install one must not call t.Parallel. Install panics
// when another Fake is installed rather than let two tests see each other's
// calls. A Fake's methods are safe to use from several goroutines, including
// while the agent runs.
type Fake struct {
	mu       sync.Mutex
	in       []byte
	handlers map[string]func(json.RawMessage) (any, error)
	clock    time.Time
	calls    []FakeCall
	out      json.RawMessage
	logs     []string
	effects  []abi.Effect
	pending  *fakeResponse // the body kept after StatusBufferTooSmall
	signals  map[string][]json.RawMessage
	waits    []FakeWait
	// approval: tools whose calls need a person's approval, by tool, and
	// the decision ("" until Approve or Deny).
	approval map[string]*fakeDecision
}

type fakeDecision struct {
	decided, approved bool
	reason            string
}

// FakeWait is one Sleep, SleepUntil or Await the agent made, as the fake
// saw it.
type FakeWait struct {
	Request abi.WaitRequest
	// Status is what the agent got: StatusOK, StatusTimeout, or
	// StatusInvalidArgument for a malformed wait or an Await that would
	// wait forever.
	Status abi.Status
	// Result is the answer's body: the abi.WaitResult of a sleep, the
	// payload of a signal; nil unless Status is OK.
	Result json.RawMessage
}

// FakeCall is one call the agent made, as the fake saw it.
type FakeCall struct {
	Tool string
	// Params are canonical (abi.Canonicalize): the bytes the host hashes
	// into the call's identity, so they compare equal whatever the agent's
	// key order or spacing.
	Params json.RawMessage
	Key    string
	// Result is what the agent received; nil when the call failed.
	Result json.RawMessage
	// Err is why the call failed: the handler's error, or the fake's own
	// when the request was invalid or the tool unregistered. Nil on success.
	Err error
}

type fakeResponse struct {
	status abi.Status
	body   []byte
}

// NewFake returns a fake host with input null, no tools, and a clock that
// reads 2026-01-01T00:00:00Z until SetNow.
func NewFake() *Fake {
	return &Fake{
		in:       []byte("null"),
		handlers: make(map[string]func(json.RawMessage) (any, error)),
		clock:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
}

// SetInput sets the task input to v marshalled as JSON; a json.RawMessage or
// []byte is JSON text already (a string is marshalled as a JSON string). It
// panics if v is not JSON, as a broken test set-up should.
func (f *Fake) SetInput(v any) *Fake {
	b, err := marshal(v)
	if err != nil {
		panic(fmt.Sprintf("orloj: Fake.SetInput: %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.in = slices.Clone(b)
	return f
}

// Handle registers h as the tool named tool, replacing any earlier handler; a
// nil h unregisters the tool. h receives the canonical params. Its result is
// marshalled as JSON (json.RawMessage and []byte pass through). Its error
// reaches the agent with the status it carries: return
// abi.Errorf(abi.StatusTransient, "503") for a retryable failure. An error
// carrying no status is reported as ErrToolError with the error's text.
//
// Handlers run without the fake's lock held, so they may call the fake's
// methods (for example Calls, to fail only the second attempt). The calls of
// one CallAll run their handlers at once, as the host runs the tools, so a
// handler serving such calls must be safe for concurrent use.
func (f *Fake) Handle(tool string, h func(params json.RawMessage) (any, error)) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	if h == nil {
		delete(f.handlers, tool)
	} else {
		f.handlers[tool] = h
	}
	return f
}

// SetNow sets the time Now returns. The ABI carries unsigned nanoseconds
// since the Unix epoch, so t must lie between 1970 and 2262; SetNow panics
// otherwise.
func (f *Fake) SetNow(t time.Time) *Fake {
	if t.Before(time.Unix(0, 0)) || t.After(time.Unix(0, 1<<63-1)) {
		panic(fmt.Sprintf("orloj: Fake.SetNow: %v is outside the ABI's range (1970 to 2262)", t))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.clock = t
	return f
}

// Signal keeps a signal for the agent's next Await of name, as `orlojd
// task signal` would: payload is marshalled as by SetInput. Signals of one
// name are taken in the order they were sent. Signal may be called before
// the agent runs or, from another goroutine, while it runs.
func (f *Fake) Signal(name string, payload any) *Fake {
	b, err := marshal(payload)
	if err != nil {
		panic(fmt.Sprintf("orloj: Fake.Signal: %v", err))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.signals == nil {
		f.signals = map[string][]json.RawMessage{}
	}
	f.signals[name] = append(f.signals[name], slices.Clone(b))
	return f
}

// RequireApproval makes every call of tool need a person's approval, as a
// node does for a tool the agent is pushed with under --approve. The fake
// cannot wait: decide with Approve or Deny before the agent calls it; a
// call undecided fails (StatusInvalidArgument) saying so.
func (f *Fake) RequireApproval(tool string) *Fake {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.approval == nil {
		f.approval = map[string]*fakeDecision{}
	}
	if f.approval[tool] == nil {
		f.approval[tool] = &fakeDecision{}
	}
	return f
}

// Approve approves the calls of tool: they reach its handler, as an
// approved call is made on a node.
func (f *Fake) Approve(tool string) *Fake {
	f.RequireApproval(tool)
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.approval[tool] = fakeDecision{decided: true, approved: true}
	return f
}

// Deny denies the calls of tool: they answer StatusPermissionDenied with
// the reason, as a denied call does on a node, and never reach the handler.
func (f *Fake) Deny(tool, reason string) *Fake {
	f.RequireApproval(tool)
	f.mu.Lock()
	defer f.mu.Unlock()
	*f.approval[tool] = fakeDecision{decided: true, reason: reason}
	return f
}

// Clock returns the fake's current time: SetNow's, moved forward by every
// Sleep and by every Await that timed out.
func (f *Fake) Clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.clock
}

// Waits returns every wait the agent made, in order.
func (f *Fake) Waits() []FakeWait {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.waits)
}

// Install makes f the host of this process and returns the function that
// uninstalls it, for t.Cleanup or defer; calling that function again does
// nothing. Install panics if a Fake is installed already.
func (f *Fake) Install() (uninstall func()) {
	installMu.Lock()
	defer installMu.Unlock()
	if installed != nil {
		panic("orloj: Fake.Install: a Fake is installed already; tests that use a Fake must not run in parallel, and each must uninstall it")
	}
	installed = f
	var once sync.Once
	return func() {
		once.Do(func() {
			installMu.Lock()
			defer installMu.Unlock()
			if installed == f {
				installed = nil
			}
		})
	}
}

// Calls returns every call the agent made, in order, including failed and
// invalid ones.
func (f *Fake) Calls() []FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// CallsTo returns the calls of one tool, in order.
func (f *Fake) CallsTo(tool string) []FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []FakeCall
	for _, c := range f.calls {
		if c.Tool == tool {
			out = append(out, c)
		}
	}
	return out
}

// Output returns the task output the agent set last, nil if it set none,
// even if run failed afterwards (the host would then discard it).
func (f *Fake) Output() json.RawMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.out)
}

// Logs returns the lines the agent logged, in order, each as "level: message"
// (for example "info: fetched 3 pages").
func (f *Fake) Logs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.logs)
}

// Effects returns the outbox effects the agent emitted, in order, with
// canonical params. The fake does not run them: the host would, and only
// after the task succeeded.
func (f *Fake) Effects() []abi.Effect {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.effects)
}

// fakeHost is a Fake seen as a rawHost. It is a separate type so the raw
// methods (input, output, ...) neither clash with the Fake's fields nor show
// in its documentation.
type fakeHost Fake

// reply writes body into buf, or keeps it for response when it does not fit,
// as the host does.
func (h *fakeHost) reply(st abi.Status, body, buf []byte) (abi.Status, uint32) {
	if len(body) > len(buf) {
		h.pending = &fakeResponse{status: st, body: body}
		return abi.StatusBufferTooSmall, uint32(len(body))
	}
	return st, uint32(copy(buf, body))
}

func (h *fakeHost) input(buf []byte) (abi.Status, uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.in) > len(buf) {
		// Input is not kept for response: the guest asks again with a
		// larger buffer, which is free of side effects.
		return abi.StatusBufferTooSmall, uint32(len(h.in))
	}
	return abi.StatusOK, uint32(copy(buf, h.in))
}

func (h *fakeHost) call(req, buf []byte) (abi.Status, uint32) {
	rec, st, body := h.invoke(req)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, rec)
	h.pending = nil // a new call drops a response the guest never fetched
	return h.reply(st, body, buf)
}

// callBatch runs the handlers of a batch at once, as the host runs the
// tools, and records the calls in request order.
func (h *fakeHost) callBatch(req, buf []byte) (abi.Status, uint32) {
	reqs, err := abi.DecodeBatchRequest(req)
	if err != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.pending = nil
		return h.reply(abi.StatusInvalidArgument, abi.EncodeErrorBody(abi.StatusInvalidArgument, messageOf(err)), buf)
	}
	recs := make([]FakeCall, len(reqs))
	items := make([]abi.BatchItem, len(reqs))
	var wg sync.WaitGroup
	for i, r := range reqs {
		wg.Go(func() {
			one, _ := json.Marshal(r) // the request as the guest would send it alone
			var st abi.Status
			var body []byte
			recs[i], st, body = h.invoke(one)
			items[i] = abi.BatchItem{Status: st.String()}
			if st == abi.StatusOK {
				items[i].Result = body
			} else {
				var eb abi.ErrorBody
				_ = json.Unmarshal(body, &eb) // the fake's own encoding
				items[i].Message = eb.Message
			}
		})
	}
	wg.Wait()
	body, err := json.Marshal(items)
	if err != nil {
		panic(fmt.Sprintf("orloj fake: encode batch response: %v", err)) // results were checked as JSON
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.calls = append(h.calls, recs...)
	h.pending = nil
	return h.reply(abi.StatusOK, body, buf)
}

// invoke decodes a call request and runs its handler, without the lock.
func (h *fakeHost) invoke(req []byte) (rec FakeCall, st abi.Status, body []byte) {
	r, err := abi.DecodeCallRequest(req)
	if err != nil {
		return FakeCall{Err: err}, abi.StatusInvalidArgument, abi.EncodeErrorBody(abi.StatusInvalidArgument, messageOf(err))
	}
	rec = FakeCall{Tool: r.Tool, Params: r.Params, Key: r.Key}
	h.mu.Lock()
	handler := h.handlers[r.Tool]
	var decision fakeDecision
	needs := h.approval[r.Tool] != nil
	if needs {
		decision = *h.approval[r.Tool]
	}
	h.mu.Unlock()
	switch {
	case needs && !decision.decided:
		rec.Err = abi.Errorf(abi.StatusInvalidArgument, "orloj fake: a call of %s waits for approval; call Fake.Approve or Fake.Deny first", r.Tool)
		return rec, abi.StatusInvalidArgument, abi.EncodeErrorBody(abi.StatusInvalidArgument, messageOf(rec.Err))
	case needs && !decision.approved:
		rec.Err = abi.Errorf(abi.StatusPermissionDenied, "call of %s denied by the fake; reason: %s", r.Tool, decision.reason)
		return rec, abi.StatusPermissionDenied, abi.EncodeErrorBody(abi.StatusPermissionDenied, messageOf(rec.Err))
	}
	if handler == nil {
		rec.Err = abi.Errorf(abi.StatusNotFound, "tool %q is not registered with the fake", r.Tool)
		return rec, abi.StatusNotFound, abi.EncodeErrorBody(abi.StatusNotFound, messageOf(rec.Err))
	}
	res, err := handler(slices.Clone(r.Params))
	if err != nil {
		st, ok := abi.StatusOf(err)
		if !ok || st == abi.StatusOK || st == abi.StatusBufferTooSmall {
			st = abi.StatusToolError
		}
		rec.Err = err
		return rec, st, abi.EncodeErrorBody(st, messageOf(err))
	}
	b, err := marshal(res)
	if err == nil && len(b) > abi.MaxResponseBytes {
		err = fmt.Errorf("%d bytes, limit %d", len(b), abi.MaxResponseBytes)
	}
	if err != nil {
		rec.Err = abi.Errorf(abi.StatusToolError, "fake: result of handler %q: %v", r.Tool, err)
		return rec, abi.StatusToolError, abi.EncodeErrorBody(abi.StatusToolError, messageOf(rec.Err))
	}
	rec.Result = slices.Clone(b)
	return rec, abi.StatusOK, b
}

// messageOf is the ErrorBody message for err: an *abi.Error's own message
// (its status travels separately), a bare status's none.
func messageOf(err error) string {
	switch e := err.(type) {
	case *abi.Error:
		return e.Message
	case abi.Status:
		return ""
	}
	return err.Error()
}

func (h *fakeHost) response(buf []byte) (abi.Status, uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.pending
	if p == nil {
		body := abi.EncodeErrorBody(abi.StatusNotFound, "no pending response")
		if len(body) > len(buf) {
			body = nil
		}
		return abi.StatusNotFound, uint32(copy(buf, body))
	}
	if len(p.body) > len(buf) {
		return abi.StatusBufferTooSmall, uint32(len(p.body))
	}
	h.pending = nil
	return p.status, uint32(copy(buf, p.body))
}

func (h *fakeHost) output(b []byte) abi.Status {
	if len(b) > abi.MaxOutputBytes || !json.Valid(b) {
		return abi.StatusInvalidArgument
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.out = slices.Clone(b)
	return abi.StatusOK
}

func (h *fakeHost) log(level abi.LogLevel, msg []byte) abi.Status {
	if level < abi.LogDebug || level > abi.LogError {
		return abi.StatusInvalidArgument
	}
	line := cutUTF8(string(msg), abi.MaxLogBytes)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, level.String()+": "+line)
	return abi.StatusOK
}

func (h *fakeHost) now() (uint64, abi.Status) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return uint64(h.clock.UnixNano()), abi.StatusOK
}

func (h *fakeHost) emit(req []byte) abi.Status {
	r, err := abi.DecodeCallRequest(req)
	if err != nil {
		return abi.StatusInvalidArgument
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.effects = append(h.effects, r)
	return abi.StatusOK
}

// wait answers at once, as the host does after the wait is over: a sleep
// moves the clock to its wake time; an Await takes the oldest signal of its
// name, or, with none, moves the clock by its timeout and times out. An
// Await without timeout and without a signal to take is refused
// (StatusInvalidArgument): under the host it would wait forever, and a
// test should send the signal first.
func (h *fakeHost) wait(req, buf []byte) (abi.Status, uint32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.pending = nil
	r, _, err := abi.DecodeWaitRequest(req)
	if err != nil {
		h.waits = append(h.waits, FakeWait{Status: abi.StatusInvalidArgument})
		return h.reply(abi.StatusInvalidArgument, abi.EncodeErrorBody(abi.StatusInvalidArgument, messageOf(err)), buf)
	}
	w := FakeWait{Request: r}
	var st abi.Status
	var body []byte
	switch r.Kind {
	case abi.WaitSleep:
		until := r.Until
		if until == 0 {
			until = h.clock.UnixNano() + r.Duration
		}
		if t := time.Unix(0, until).UTC(); t.After(h.clock) {
			h.clock = t
		}
		body, _ = json.Marshal(abi.WaitResult{Until: until}) // one integer
		w.Result = body
	default:
		switch q := h.signals[r.Name]; {
		case len(q) > 0:
			h.signals[r.Name] = q[1:]
			body = q[0]
			w.Result = body
		case r.Timeout > 0:
			h.clock = h.clock.Add(time.Duration(r.Timeout))
			st = abi.StatusTimeout
			body = abi.EncodeErrorBody(st, fmt.Sprintf("no signal %q within %s", r.Name, time.Duration(r.Timeout)))
		default:
			st = abi.StatusInvalidArgument
			body = abi.EncodeErrorBody(st, fmt.Sprintf("fake: no signal %q was sent and Await has no timeout, so it would wait forever; send it first with Fake.Signal", r.Name))
		}
	}
	w.Status = st
	h.waits = append(h.waits, w)
	return h.reply(st, body, buf)
}
