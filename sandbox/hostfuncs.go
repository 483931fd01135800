package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"unicode/utf8"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/orloj/orloj/abi"
)

// The orloj_v1 host functions. Each is an api.GoModuleFunc (a direct call on
// a []uint64 stack, ~60 ns) rather than a reflected WithFunc (~1 µs).
//
// Every function follows the same order, so a hostile guest can never make
// the host do work whose result is lost:
//
//  1. bounds-check every (ptr, len) pair against the guest's memory, in
//     64-bit arithmetic so 0xFFFFFFFF and ptr+len wrapping are caught; any
//     failure returns StatusFault and touches nothing;
//  2. check sizes against abi limits (StatusInvalidArgument, the request
//     is not even read) and decode the request;
//  3. only then call the Dispatcher;
//  4. write results (body, then its length) into the checked ranges.
//
// Response protocol (input, call, response): the body's length is written to
// *len_ptr as u32 little endian; the body is copied when it fits buf_cap and
// the call's status returned, else the body is kept pending on the attempt
// and StatusBufferTooSmall returned; response() then delivers it with the
// original status. A new input or call discards a pending body.

// attemptKey finds the running attempt in the context wazero hands to host
// functions (the one Run passed to InstantiateModule).
type attemptKey struct{}

// attempt is the host-side state of one instance. Host functions run on the
// guest's goroutine, one at a time, so it needs no lock.
type attempt struct {
	d             Dispatcher
	pending       []byte
	pendingStatus abi.Status
	hasPending    bool
	fault         *hostFault
}

// hostFault is a failure of the host while serving a call: the Dispatcher
// returned an error without a status, or panicked. Raising it aborts the
// guest at once (wazero unwinds a host function's panic like a trap).
type hostFault struct {
	fn  string
	err error
	// stack is the host goroutine's stack when a host function panicked.
	// Error leaves it out: the message becomes the task's error, shown
	// through the API; the stack is for the node's log (Result.HostStack).
	stack []byte
}

func (f *hostFault) Error() string {
	return fmt.Sprintf("sandbox: host fault in %s.%s: %v", abi.ModuleName, f.fn, f.err)
}

func (f *hostFault) Unwrap() error { return f.err }

func attemptOf(ctx context.Context) *attempt {
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	if a == nil {
		// Only Run instantiates guests in our runtime, so this is a bug.
		panic(&hostFault{fn: "?", err: errors.New("no attempt in the call context")})
	}
	return a
}

// fail records a host fault and aborts the guest.
func (a *attempt) fail(fn string, err error) {
	if a.fault == nil {
		a.fault = &hostFault{fn: fn, err: err}
	}
	panic(a.fault)
}

// recoverPanic turns a panic in host code (a Dispatcher's, or ours) into a
// host fault, so it is reported as the host's failure, not the guest's trap.
// Deferred by every host function.
func (a *attempt) recoverPanic(fn string) {
	r := recover()
	if r == nil {
		return
	}
	if f, ok := r.(*hostFault); ok {
		panic(f) // already a fault: keep unwinding the guest
	}
	if a.fault == nil {
		a.fault = &hostFault{fn: fn, err: fmt.Errorf("panic: %v", r), stack: debug.Stack()}
	}
	panic(a.fault)
}

// status maps a Dispatcher error to the status the guest sees, or aborts
// with a host fault if the error carries none, or one the Dispatcher may not
// return (the memory-protocol statuses belong to the sandbox).
func (a *attempt) status(fn string, err error) abi.Status {
	if err == nil {
		return abi.StatusOK
	}
	st, ok := abi.StatusOf(err)
	switch {
	case !ok:
		a.fail(fn, err)
	case st <= abi.StatusOK || st > abi.StatusTimeout || st == abi.StatusBufferTooSmall || st == abi.StatusFault:
		a.fail(fn, fmt.Errorf("dispatcher returned status %v, which only the sandbox may return: %w", st, err))
	}
	return st
}

func (a *attempt) clearPending() {
	a.pending, a.pendingStatus, a.hasPending = nil, abi.StatusOK, false
}

// deliver implements the response protocol. buf and lenOut were checked.
func (a *attempt) deliver(buf, lenOut []byte, st abi.Status, body []byte) abi.Status {
	if len(body) <= len(buf) {
		copy(buf, body)
		binary.LittleEndian.PutUint32(lenOut, uint32(len(body)))
		a.clearPending()
		return st
	}
	binary.LittleEndian.PutUint32(lenOut, uint32(len(body)))
	a.pending, a.pendingStatus, a.hasPending = body, st, true
	return abi.StatusBufferTooSmall
}

// errorBody is the ErrorBody for a non-OK status: the *abi.Error's message
// when there is one (not the wrapping text), cut to MaxLogBytes.
func errorBody(st abi.Status, err error) []byte {
	var msg string
	var ae *abi.Error
	if errors.As(err, &ae) {
		msg = ae.Message
	} else if bare, ok := err.(abi.Status); err != nil && (!ok || bare != st) {
		msg = err.Error() // keep the context a wrapped status carries
	}
	return abi.EncodeErrorBody(st, cutUTF8(msg, abi.MaxLogBytes))
}

// cutUTF8 cuts s to at most n bytes without splitting a UTF-8 sequence.
func cutUTF8[T string | []byte](s T, n int) T {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && i > n-utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// guestMemory returns the instance's whole linear memory as a slice. The
// view stays valid for the host call: the guest cannot grow memory while it
// is blocked in us.
func guestMemory(mod api.Module) []byte {
	mem := mod.Memory()
	if mem == nil {
		panic(&hostFault{fn: "?", err: errors.New("guest has no memory")}) // Compile requires one
	}
	b, _ := mem.Read(0, mem.Size())
	return b
}

// span returns mem[ptr:ptr+n] if that range lies inside mem. The sum is
// computed in 64 bits, so a length of 0xFFFFFFFF or a ptr+n that would wrap
// in 32 bits is out of bounds, never a small range. An empty range is valid
// with any pointer (docs/abi.md): a C guest passes NULL with 0, and there
// is nothing to read or write.
func span(mem []byte, ptr, n uint32) ([]byte, bool) {
	if n == 0 {
		return mem[:0:0], true
	}
	end := uint64(ptr) + uint64(n)
	if end > uint64(len(mem)) {
		return nil, false
	}
	return mem[ptr:end:end], true
}

func u32(v uint64) uint32 { return uint32(v) }

func ret(stack []uint64, st abi.Status) { stack[0] = api.EncodeI32(int32(st)) }

// hostInput: input(buf_ptr, buf_cap, len_ptr) -> status
//
//	[buf_ptr, buf_ptr+buf_cap)  written: the task input
//	[len_ptr, len_ptr+4)        written: its length, u32 LE
//
// Fault, BufferTooSmall, InvalidArgument (input over MaxResponseBytes), or
// a Dispatcher status with an ErrorBody.
func hostInput(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncInput)
	mem := guestMemory(mod)
	buf, ok1 := span(mem, u32(stack[0]), u32(stack[1]))
	lenOut, ok2 := span(mem, u32(stack[2]), 4)
	if !ok1 || !ok2 {
		ret(stack, abi.StatusFault)
		return
	}
	a.clearPending()
	body, err := a.d.Input(ctx)
	st := a.status(abi.FuncInput, err)
	if st == abi.StatusOK && len(body) > abi.MaxResponseBytes {
		st, err = abi.StatusInvalidArgument, abi.Errorf(abi.StatusInvalidArgument,
			"task input is %d bytes, limit %d", len(body), abi.MaxResponseBytes)
	}
	if st != abi.StatusOK {
		body = errorBody(st, err)
	}
	ret(stack, a.deliver(buf, lenOut, st, body))
}

// hostCall: call(req_ptr, req_len, buf_ptr, buf_cap, len_ptr) -> status
//
//	[req_ptr, req_ptr+req_len)  read: a CallRequest in JSON
//	[buf_ptr, buf_ptr+buf_cap)  written: the result, or an ErrorBody
//	[len_ptr, len_ptr+4)        written: the body's length, u32 LE
//
// Fault; InvalidArgument (request over MaxRequestBytes or malformed, with an
// ErrorBody, and no tool invoked); BufferTooSmall; ToolError for a result
// over MaxResponseBytes; or the Dispatcher's status.
func hostCall(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncCall)
	mem := guestMemory(mod)
	reqLen := u32(stack[1])
	req, ok1 := span(mem, u32(stack[0]), reqLen)
	buf, ok2 := span(mem, u32(stack[2]), u32(stack[3]))
	lenOut, ok3 := span(mem, u32(stack[4]), 4)
	if !ok1 || !ok2 || !ok3 {
		ret(stack, abi.StatusFault)
		return
	}
	a.clearPending()
	if reqLen > abi.MaxRequestBytes {
		ret(stack, a.deliver(buf, lenOut, abi.StatusInvalidArgument, errorBody(abi.StatusInvalidArgument,
			abi.Errorf(abi.StatusInvalidArgument, "request is %d bytes, limit %d", reqLen, abi.MaxRequestBytes))))
		return
	}
	cr, err := abi.DecodeCallRequest(req)
	if err != nil {
		ret(stack, a.deliver(buf, lenOut, abi.StatusInvalidArgument, errorBody(abi.StatusInvalidArgument, err)))
		return
	}
	body, err := a.d.Call(ctx, cr)
	st := a.status(abi.FuncCall, err)
	switch {
	case st != abi.StatusOK:
		body = errorBody(st, err)
	case len(body) > abi.MaxResponseBytes:
		st = abi.StatusToolError
		body = errorBody(st, abi.Errorf(st, "tool %s returned %d bytes, limit %d", cr.Tool, len(body), abi.MaxResponseBytes))
	}
	ret(stack, a.deliver(buf, lenOut, st, body))
}

// hostCallBatch: call_batch(req_ptr, req_len, buf_ptr, buf_cap, len_ptr) -> status
//
//	[req_ptr, req_ptr+req_len)  read: a JSON array of CallRequests
//	[buf_ptr, buf_ptr+buf_cap)  written: a JSON array of abi.BatchItems, or an ErrorBody
//	[len_ptr, len_ptr+4)        written: the body's length, u32 LE
//
// Fault; InvalidArgument (a batch over the limits or malformed, with an
// ErrorBody, and no tool invoked); BufferTooSmall; else OK, each call's own
// status in its item. A result over MaxResponseBytes, or one that would
// take the response past MaxBatchResponseBytes, is a tool_error item.
func hostCallBatch(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncCallBatch)
	mem := guestMemory(mod)
	reqLen := u32(stack[1])
	req, ok1 := span(mem, u32(stack[0]), reqLen)
	buf, ok2 := span(mem, u32(stack[2]), u32(stack[3]))
	lenOut, ok3 := span(mem, u32(stack[4]), 4)
	if !ok1 || !ok2 || !ok3 {
		ret(stack, abi.StatusFault)
		return
	}
	a.clearPending()
	reqs, err := abi.DecodeBatchRequest(req) // checks the size before reading
	if err != nil {
		ret(stack, a.deliver(buf, lenOut, abi.StatusInvalidArgument, errorBody(abi.StatusInvalidArgument, err)))
		return
	}
	var results []CallResult
	if bd, ok := a.d.(BatchDispatcher); ok {
		results = bd.CallBatch(ctx, reqs)
		if len(results) != len(reqs) {
			a.fail(abi.FuncCallBatch, fmt.Errorf("dispatcher answered %d calls of a batch of %d", len(results), len(reqs)))
		}
	} else {
		results = make([]CallResult, len(reqs))
		for i, r := range reqs {
			results[i].Body, results[i].Err = a.d.Call(ctx, r)
		}
	}
	ret(stack, a.deliver(buf, lenOut, abi.StatusOK, a.batchBody(reqs, results)))
}

// batchBody encodes a batch's results as the guest reads them. When the
// results together pass MaxBatchResponseBytes, the last results that make
// them do are replaced by tool_error items (error items alone always fit:
// at most MaxBatchCalls messages of MaxLogBytes, escaped).
func (a *attempt) batchBody(reqs []abi.CallRequest, results []CallResult) []byte {
	items := make([][]byte, len(results))
	total := 2 + len(results) - 1 // brackets and commas
	for i, r := range results {
		st := a.status(abi.FuncCallBatch, r.Err) // a host fault ends the attempt here
		switch {
		case st != abi.StatusOK:
			items[i] = batchError(st, r.Err)
		case len(r.Body) > abi.MaxResponseBytes:
			items[i] = batchError(abi.StatusToolError, abi.Errorf(abi.StatusToolError, "tool %s returned %d bytes, limit %d", reqs[i].Tool, len(r.Body), abi.MaxResponseBytes))
		case !json.Valid(r.Body):
			a.fail(abi.FuncCallBatch, fmt.Errorf("tool %s returned a result that is not JSON", reqs[i].Tool))
		default:
			items[i] = append(append([]byte(`{"status":"ok","result":`), r.Body...), '}')
		}
		total += len(items[i])
	}
	for i := len(items) - 1; i >= 0 && total > abi.MaxBatchResponseBytes; i-- {
		if results[i].Err != nil || len(items[i]) <= maxBatchOverflowItem {
			continue // an error, or a result no longer than what would replace it
		}
		e := batchError(abi.StatusToolError, abi.Errorf(abi.StatusToolError,
			"the result of tool %s (%d bytes) does not fit in the batch's %d-byte response; make this call on its own", reqs[i].Tool, len(results[i].Body), abi.MaxBatchResponseBytes))
		total += len(e) - len(items[i])
		items[i] = e
	}
	body := make([]byte, 0, total)
	body = append(body, '[')
	for i, it := range items {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, it...)
	}
	return append(body, ']')
}

// maxBatchOverflowItem bounds the item that replaces a result that does not
// fit: its message names a tool (at most MaxToolNameBytes) and two numbers.
const maxBatchOverflowItem = abi.MaxToolNameBytes + 160

func batchError(st abi.Status, err error) []byte {
	var eb abi.ErrorBody
	_ = json.Unmarshal(errorBody(st, err), &eb)                                   // our own encoding
	b, _ := json.Marshal(abi.BatchItem{Status: st.String(), Message: eb.Message}) // two strings: cannot fail
	return b
}

// hostResponse: response(buf_ptr, buf_cap, len_ptr) -> status
//
//	[buf_ptr, buf_ptr+buf_cap)  written: the pending body
//	[len_ptr, len_ptr+4)        written: its length (0 if none), u32 LE
//
// Returns the status of the call that left the body pending (the tool is not
// invoked again), BufferTooSmall if it still does not fit, NotFound if
// nothing is pending, or Fault.
func hostResponse(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncResponse)
	mem := guestMemory(mod)
	buf, ok1 := span(mem, u32(stack[0]), u32(stack[1]))
	lenOut, ok2 := span(mem, u32(stack[2]), 4)
	if !ok1 || !ok2 {
		ret(stack, abi.StatusFault)
		return
	}
	if !a.hasPending {
		binary.LittleEndian.PutUint32(lenOut, 0)
		ret(stack, abi.StatusNotFound)
		return
	}
	ret(stack, a.deliver(buf, lenOut, a.pendingStatus, a.pending))
}

// hostOutput: output(ptr, len) -> status
//
//	[ptr, ptr+len)  read: the task output
//
// Fault, InvalidArgument (over MaxOutputBytes), or the Dispatcher's status.
func hostOutput(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncOutput)
	n := u32(stack[1])
	out, ok := span(guestMemory(mod), u32(stack[0]), n)
	switch {
	case !ok:
		ret(stack, abi.StatusFault)
	case n > abi.MaxOutputBytes:
		ret(stack, abi.StatusInvalidArgument)
	default:
		ret(stack, a.status(abi.FuncOutput, a.d.Output(ctx, slices.Clone(out))))
	}
}

// hostLog: log(level, ptr, len) -> status
//
//	[ptr, ptr+len)  read: the line, cut to MaxLogBytes (on a UTF-8 boundary)
//
// Fault, InvalidArgument (unknown level), or the Dispatcher's status.
func hostLog(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncLog)
	level := abi.LogLevel(api.DecodeI32(stack[0]))
	line, ok := span(guestMemory(mod), u32(stack[1]), u32(stack[2]))
	switch {
	case !ok:
		ret(stack, abi.StatusFault)
	case level < abi.LogDebug || level > abi.LogError:
		ret(stack, abi.StatusInvalidArgument)
	default:
		line = cutUTF8(line, abi.MaxLogBytes)
		ret(stack, a.status(abi.FuncLog, a.d.Log(ctx, level, slices.Clone(line))))
	}
}

// hostNow: now(out_ptr) -> status
//
//	[out_ptr, out_ptr+8)  written: unix nanoseconds, u64 LE
//
// Fault or the Dispatcher's status (nothing written unless OK).
func hostNow(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncNow)
	out, ok := span(guestMemory(mod), u32(stack[0]), 8)
	if !ok {
		ret(stack, abi.StatusFault)
		return
	}
	t, err := a.d.Now(ctx)
	st := a.status(abi.FuncNow, err)
	if st == abi.StatusOK {
		binary.LittleEndian.PutUint64(out, uint64(t.UnixNano()))
	}
	ret(stack, st)
}

// hostEmit: emit(req_ptr, req_len) -> status
//
//	[req_ptr, req_ptr+req_len)  read: an Effect in JSON
//
// Fault, InvalidArgument (over MaxRequestBytes or malformed), or the
// Dispatcher's status.
func hostEmit(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncEmit)
	n := u32(stack[1])
	req, ok := span(guestMemory(mod), u32(stack[0]), n)
	if !ok {
		ret(stack, abi.StatusFault)
		return
	}
	if n > abi.MaxRequestBytes {
		ret(stack, abi.StatusInvalidArgument)
		return
	}
	eff, err := abi.DecodeCallRequest(req)
	if err != nil {
		ret(stack, abi.StatusInvalidArgument)
		return
	}
	ret(stack, a.status(abi.FuncEmit, a.d.Emit(ctx, eff)))
}

// hostWait: wait(req_ptr, req_len, buf_ptr, buf_cap, len_ptr) -> status
//
//	[req_ptr, req_ptr+req_len)  read: a WaitRequest in JSON
//	[buf_ptr, buf_ptr+buf_cap)  written: the answer (a WaitResult, a signal's payload) or an ErrorBody
//	[len_ptr, len_ptr+4)        written: the body's length, u32 LE
//
// Fault; InvalidArgument (request over MaxWaitRequestBytes or malformed,
// with an ErrorBody); NotFound when the Dispatcher serves no waits;
// BufferTooSmall; Timeout; or the Dispatcher's status. When the
// Dispatcher suspends the attempt (ErrSuspend) the guest does not return
// from the call: it is stopped, and Run returns OutcomeSuspended.
func hostWait(ctx context.Context, mod api.Module, stack []uint64) {
	a := attemptOf(ctx)
	defer a.recoverPanic(abi.FuncWait)
	mem := guestMemory(mod)
	reqLen := u32(stack[1])
	req, ok1 := span(mem, u32(stack[0]), reqLen)
	buf, ok2 := span(mem, u32(stack[2]), u32(stack[3]))
	lenOut, ok3 := span(mem, u32(stack[4]), 4)
	if !ok1 || !ok2 || !ok3 {
		ret(stack, abi.StatusFault)
		return
	}
	a.clearPending()
	wr, canon, err := abi.DecodeWaitRequest(req) // checks the size before reading
	if err != nil {
		ret(stack, a.deliver(buf, lenOut, abi.StatusInvalidArgument, errorBody(abi.StatusInvalidArgument, err)))
		return
	}
	wd, ok := a.d.(WaitDispatcher)
	if !ok {
		ret(stack, a.deliver(buf, lenOut, abi.StatusNotFound, errorBody(abi.StatusNotFound,
			abi.Errorf(abi.StatusNotFound, "this host serves no waits"))))
		return
	}
	body, err := wd.Wait(ctx, wr, canon)
	if errors.Is(err, ErrSuspend) {
		a.fail(abi.FuncWait, err) // classify reads it as a suspension, not a fault
	}
	st := a.status(abi.FuncWait, err)
	switch {
	case st != abi.StatusOK:
		body = errorBody(st, err)
	case len(body) > abi.MaxResponseBytes:
		a.fail(abi.FuncWait, fmt.Errorf("wait answered %d bytes, limit %d", len(body), abi.MaxResponseBytes))
	}
	ret(stack, a.deliver(buf, lenOut, st, body))
}

// hostFunc describes one orloj_v1 export. All parameters and the result are
// i32; the table drives both the host module and import validation.
type hostFunc struct {
	name   string
	params []string
	fn     api.GoModuleFunc
}

var hostFuncs = []hostFunc{
	{abi.FuncInput, []string{"buf_ptr", "buf_cap", "len_ptr"}, hostInput},
	{abi.FuncCall, []string{"req_ptr", "req_len", "buf_ptr", "buf_cap", "len_ptr"}, hostCall},
	{abi.FuncResponse, []string{"buf_ptr", "buf_cap", "len_ptr"}, hostResponse},
	{abi.FuncOutput, []string{"ptr", "len"}, hostOutput},
	{abi.FuncLog, []string{"level", "ptr", "len"}, hostLog},
	{abi.FuncNow, []string{"out_ptr"}, hostNow},
	{abi.FuncEmit, []string{"req_ptr", "req_len"}, hostEmit},
	{abi.FuncCallBatch, []string{"req_ptr", "req_len", "buf_ptr", "buf_cap", "len_ptr"}, hostCallBatch},
	{abi.FuncWait, []string{"req_ptr", "req_len", "buf_ptr", "buf_cap", "len_ptr"}, hostWait},
}

func hostModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	return hostModuleOf(rt, abi.ModuleName, hostFuncs)
}

// toolHostModule is orloj_tool_v1: the same functions, for tool plugins.
func toolHostModule(rt wazero.Runtime) wazero.HostModuleBuilder {
	var fs []hostFunc
	for _, f := range hostFuncs {
		if slices.Contains(abi.ToolFuncs, f.name) {
			fs = append(fs, f)
		}
	}
	return hostModuleOf(rt, abi.ToolModuleName, fs)
}

func hostModuleOf(rt wazero.Runtime, module string, funcs []hostFunc) wazero.HostModuleBuilder {
	b := rt.NewHostModuleBuilder(module)
	for _, f := range funcs {
		params := make([]api.ValueType, len(f.params))
		for i := range params {
			params[i] = api.ValueTypeI32
		}
		b = b.NewFunctionBuilder().
			WithGoModuleFunction(f.fn, params, []api.ValueType{api.ValueTypeI32}).
			WithParameterNames(f.params...).
			WithResultNames("status").
			Export(f.name)
	}
	return b
}
