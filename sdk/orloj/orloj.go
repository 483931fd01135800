package orloj

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/orloj/orloj/abi"
)

// Input returns the task input: the JSON document the task was submitted
// with.
func Input() ([]byte, error) {
	h, err := host()
	if err != nil {
		return nil, fmt.Errorf("orloj: input: %w", err)
	}
	st, body, err := exchange(h.input, h.input)
	if err != nil {
		return nil, fmt.Errorf("orloj: input: %w", err)
	}
	if st != abi.StatusOK {
		return nil, fmt.Errorf("orloj: input: %w", abi.DecodeErrorBody(st, body))
	}
	return body, nil
}

// DecodeInput unmarshals the task input into v, as json.Unmarshal does. A
// malformed input is the submitter's mistake, so the error is permanent.
func DecodeInput(v any) error {
	in, err := Input()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(in, v); err != nil {
		return fmt.Errorf("orloj: decode input: %w", err)
	}
	return nil
}

// CallOption adjusts one Call, CallInto or Emit.
type CallOption struct {
	apply func(*abi.CallRequest)
}

// WithKey names the call with a key of the agent's choosing (at most
// abi.MaxKeyBytes of UTF-8). The host then identifies the call by tool and
// key instead of by its params and position in the run, so a retried task
// finds the recorded result even when the agent has changed in between, and
// an Emit'd effect gets the key as its idempotency key.
func WithKey(key string) CallOption {
	return CallOption{apply: func(r *abi.CallRequest) { r.Key = key }}
}

// Call invokes a tool and returns its JSON result. params is marshalled to
// JSON; a json.RawMessage or []byte is taken as JSON text already and passed
// through. A failure the host reports wraps an *Error, whose Status callers
// test with errors.Is (ErrTransient, ErrToolError, ...).
//
// The host records the result: when the task is retried, an unchanged call
// returns the recorded result without invoking the tool again.
func Call(tool string, params any, opts ...CallOption) (json.RawMessage, error) {
	h, err := host()
	if err != nil {
		return nil, fmt.Errorf("orloj: call %s: %w", tool, err)
	}
	// Params are encoded before the lock: a MarshalJSON may call the host.
	p, err := paramsJSON(params)
	if err != nil {
		return nil, fmt.Errorf("orloj: call %s: %w", tool, err)
	}
	st, body, err := exchangeCall(h, tool, p, callKey(opts))
	if err != nil {
		return nil, fmt.Errorf("orloj: call %s: %w", tool, err)
	}
	if st != abi.StatusOK {
		return nil, fmt.Errorf("orloj: call %s: %w", tool, abi.DecodeErrorBody(st, body))
	}
	return body, nil
}

// CallInto is Call followed by json.Unmarshal of the result into out.
func CallInto(tool string, params any, out any, opts ...CallOption) error {
	res, err := Call(tool, params, opts...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("orloj: call %s: decode result: %w", tool, err)
	}
	return nil
}

// Request is one call of a batch: the arguments Call would take.
type Request struct {
	Tool   string
	Params any
	Opts   []CallOption
}

// Response is what one call of a batch returned: the tool's JSON result, or
// the error Call would have returned for it.
type Response struct {
	Result json.RawMessage
	Err    error
}

// Into unmarshals a successful result into out; it returns the call's error
// if it failed.
func (r Response) Into(out any) error {
	if r.Err != nil {
		return r.Err
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("orloj: decode result: %w", err)
	}
	return nil
}

// CallAll makes several calls at once and returns their responses in the
// order of reqs. The host runs the tools concurrently (a node bounds how many
// at a time), identifies and records each call on its own, as Call would in
// that order, so a retried task replays the calls that finished and invokes
// only the others. Each Response carries its call's result or error; the
// error CallAll returns is for the batch as a whole (no host, a malformed
// request, more than abi.MaxBatchCalls calls), and then no call was made.
func CallAll(reqs ...Request) ([]Response, error) {
	h, err := host()
	if err != nil {
		return nil, fmt.Errorf("orloj: call batch: %w", err)
	}
	if len(reqs) == 0 {
		return nil, nil
	}
	if len(reqs) > abi.MaxBatchCalls {
		return nil, fmt.Errorf("orloj: call batch: %w", abi.Errorf(ErrInvalidArgument, "%d calls, limit %d", len(reqs), abi.MaxBatchCalls))
	}
	batch := []byte{'['}
	for i, r := range reqs {
		one, err := encodeRequest(r.Tool, r.Params, r.Opts)
		if err != nil {
			return nil, fmt.Errorf("orloj: call batch: call %d (%s): %w", i, r.Tool, err)
		}
		if i > 0 {
			batch = append(batch, ',')
		}
		batch = append(batch, one...)
	}
	batch = append(batch, ']')
	st, body, err := exchangeUpTo(abi.MaxBatchResponseBytes,
		func(buf []byte) (abi.Status, uint32) { return h.callBatch(batch, buf) },
		h.response,
	)
	if err != nil {
		return nil, fmt.Errorf("orloj: call batch: %w", err)
	}
	if st != abi.StatusOK {
		return nil, fmt.Errorf("orloj: call batch: %w", abi.DecodeErrorBody(st, body))
	}
	var items []abi.BatchItem
	if err := json.Unmarshal(body, &items); err != nil || len(items) != len(reqs) {
		return nil, fmt.Errorf("orloj: call batch: %w", abi.Errorf(abi.StatusFault, "host answered %d bytes that are not %d batch items", len(body), len(reqs)))
	}
	out := make([]Response, len(reqs))
	for i, it := range items {
		st, ok := abi.ParseStatus(it.Status)
		switch {
		case !ok:
			out[i].Err = fmt.Errorf("orloj: call %s: %w", reqs[i].Tool, abi.Errorf(abi.StatusFault, "host answered status %q", it.Status))
		case st == abi.StatusOK:
			out[i].Result = it.Result
		case it.Message != "":
			out[i].Err = fmt.Errorf("orloj: call %s: %w", reqs[i].Tool, &abi.Error{Status: st, Message: it.Message})
		default:
			out[i].Err = fmt.Errorf("orloj: call %s: %w", reqs[i].Tool, st)
		}
	}
	return out, nil
}

// Emit stages an outbox effect: a call of tool with params that the host
// makes only after the task has succeeded, with its own idempotency key
// (WithKey sets it). If the task fails, the effect is dropped. params are
// encoded as for Call.
func Emit(tool string, params any, opts ...CallOption) error {
	h, err := host()
	if err != nil {
		return fmt.Errorf("orloj: emit %s: %w", tool, err)
	}
	req, err := encodeRequest(tool, params, opts)
	if err != nil {
		return fmt.Errorf("orloj: emit %s: %w", tool, err)
	}
	// emit answers with a bare status, so a malformed effect would reach the
	// agent as "invalid_argument" and nothing more. Checking here with the
	// host's own decoder yields the reason; the host still checks again.
	if _, err := abi.DecodeCallRequest(req); err != nil {
		return fmt.Errorf("orloj: emit %s: %w", tool, err)
	}
	if st := h.emit(req); st != abi.StatusOK {
		return fmt.Errorf("orloj: emit %s: %w", tool, st)
	}
	return nil
}

// Output sets the task output, replacing any earlier one. v is marshalled to
// JSON; a json.RawMessage or []byte is taken as JSON text already. The output
// becomes visible only when the task succeeds.
func Output(v any) error {
	h, err := host()
	if err != nil {
		return fmt.Errorf("orloj: output: %w", err)
	}
	b, err := marshal(v)
	if err != nil {
		return fmt.Errorf("orloj: output: %w: %w", ErrInvalidArgument, err)
	}
	if len(b) > abi.MaxOutputBytes {
		return fmt.Errorf("orloj: output: %w", abi.Errorf(ErrInvalidArgument, "%d bytes, limit %d", len(b), abi.MaxOutputBytes))
	}
	if st := h.output(b); st != abi.StatusOK {
		return fmt.Errorf("orloj: output: %w", st)
	}
	return nil
}

// Now returns the current time as the host recorded it for this point of the
// run: a retried task reads the same time again, so logic that depends on it
// replays faithfully. Agents must use it instead of time.Now. The time is in
// UTC.
func Now() (time.Time, error) {
	h, err := host()
	if err != nil {
		return time.Time{}, fmt.Errorf("orloj: now: %w", err)
	}
	ns, st := h.now()
	if st != abi.StatusOK {
		return time.Time{}, fmt.Errorf("orloj: now: %w", st)
	}
	if ns > math.MaxInt64 {
		return time.Time{}, fmt.Errorf("orloj: now: %w", abi.Errorf(ErrFault, "host time %d ns is past 2262", ns))
	}
	return time.Unix(0, int64(ns)).UTC(), nil
}

// LogLevel is the severity of a log line.
type LogLevel = abi.LogLevel

// Log levels, from the ABI.
const (
	LevelDebug = abi.LogDebug
	LevelInfo  = abi.LogInfo
	LevelWarn  = abi.LogWarn
	LevelError = abi.LogError
)

// Log writes one line to the task's log at level. A line longer than
// abi.MaxLogBytes is cut, at a UTF-8 boundary, as the host would cut it.
//
// Logging never fails the agent: when the host refuses the line, or there is
// no host, the line goes to stderr, which the host keeps in the attempt log.
func Log(level LogLevel, msg string) {
	msg = cutUTF8(msg, abi.MaxLogBytes)
	if h, err := host(); err == nil && h.log(level, []byte(msg)) == abi.StatusOK {
		return
	}
	fmt.Fprintf(os.Stderr, "%v: %s\n", level, msg)
}

// Logf logs at LevelInfo, formatting as fmt.Sprintf.
func Logf(format string, args ...any) { Log(LevelInfo, fmt.Sprintf(format, args...)) }

// Debugf logs at LevelDebug, formatting as fmt.Sprintf.
func Debugf(format string, args ...any) { Log(LevelDebug, fmt.Sprintf(format, args...)) }

// Warnf logs at LevelWarn, formatting as fmt.Sprintf.
func Warnf(format string, args ...any) { Log(LevelWarn, fmt.Sprintf(format, args...)) }

// LogErrorf logs at LevelError, formatting as fmt.Sprintf. It is not named
// Errorf because it returns no error: to fail the task, return one from run.
func LogErrorf(format string, args ...any) { Log(LevelError, fmt.Sprintf(format, args...)) }

// encodeRequest builds the CallRequest JSON shared by call and emit by
// appending: encoding/json runs a function call per byte inside wasm, and
// marshalling an abi.CallRequest would scan the params twice more (json.Valid,
// then RawMessage compaction). Raw params are not validated here: the host
// decodes, validates and canonicalises every request and answers
// invalid_argument, so the guest would only repeat that work.
func encodeRequest(tool string, params any, opts []CallOption) ([]byte, error) {
	p, err := paramsJSON(params)
	if err != nil {
		return nil, err
	}
	return appendRequest(nil, tool, p, callKey(opts)), nil
}

// paramsJSON is a call's params as JSON text.
func paramsJSON(params any) ([]byte, error) {
	var p []byte
	switch v := params.(type) {
	case json.RawMessage:
		p = v
	case []byte:
		p = v
	default:
		var err error
		if p, err = json.Marshal(v); err != nil {
			return nil, fmt.Errorf("params: %w: %w", ErrInvalidArgument, err)
		}
	}
	if len(p) == 0 {
		p = []byte("null")
	}
	return p, nil
}

// callKey is the key the options name, "" for none. Apart so that a call
// without options does not put a request on the heap for them to fill.
func callKey(opts []CallOption) string {
	if len(opts) == 0 {
		return ""
	}
	var req abi.CallRequest
	for _, o := range opts {
		if o.apply != nil {
			o.apply(&req)
		}
	}
	return req.Key
}

// appendRequest appends the request {"tool":…,"params":…,"key":…} to b.
func appendRequest(b []byte, tool string, p []byte, key string) []byte {
	b = slices.Grow(b, len(p)+len(tool)+len(key)+32)
	b = append(b, `{"tool":`...)
	b = appendJSONString(b, tool)
	b = append(b, `,"params":`...)
	b = append(b, p...)
	if key != "" {
		b = append(b, `,"key":`...)
		b = appendJSONString(b, key)
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string. Bytes of invalid UTF-8 pass
// through; the host's decoder refuses them.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// errNotJSON is returned for a json.RawMessage or []byte that is not JSON.
var errNotJSON = errors.New("raw JSON is not valid")

// marshal is json.Marshal, except that json.RawMessage and []byte are JSON
// text already (json.Marshal would base64 a []byte). Empty raw text is null.
func marshal(v any) ([]byte, error) {
	var raw []byte
	switch b := v.(type) {
	case json.RawMessage:
		raw = b
	case []byte:
		raw = b
	default:
		return json.Marshal(v)
	}
	if len(raw) == 0 {
		return []byte("null"), nil
	}
	if !json.Valid(raw) {
		return nil, errNotJSON
	}
	return raw, nil
}

// cutUTF8 returns s cut to at most max bytes without splitting a rune.
func cutUTF8(s string, max int) string {
	if len(s) <= max {
		return s
	}
	i := max
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}
