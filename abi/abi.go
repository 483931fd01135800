// Package abi is the guest-facing contract of Orloj, version 1: the import
// module name, the host functions and their signatures, the memory protocol,
// status codes, message types, limits and the canonical JSON form used for
// hashing. Host and guest SDK both build on it; it imports only the standard
// library, and an incompatible change gets a new module name (orloj_v2), never
// an edit of this one. docs/abi.md is its prose form.
package abi

// ModuleName is the wasm import module every Orloj host function lives in.
const ModuleName = "orloj_v1"

// WASIModuleName is the only other import module a guest may use.
const WASIModuleName = "wasi_snapshot_preview1"

// Host function names in ModuleName. Every function takes and returns i32
// values only; pointers and lengths are unsigned 32-bit offsets into the
// guest's exported "memory". Each returns a Status.
//
// Output buffers are (buf_ptr, buf_cap, len_ptr). Whenever the host has a
// response body (any status but StatusFault and a bare StatusInvalidArgument
// for a request it refused before running), it writes the body's full length
// as a u32 little endian at len_ptr and copies the body to buf_ptr if it
// fits; if not, it keeps the body and returns StatusBufferTooSmall, and
// FuncResponse fetches it. Every range is checked before anything runs: a
// range outside memory returns StatusFault and nothing is read, written or
// invoked. A Dispatcher error without a status ends the attempt as a host
// fault; the guest sees no status for it.
const (
	// FuncInput copies the task input (JSON) into the guest. On
	// StatusBufferTooSmall the input is kept for FuncResponse (calling
	// FuncInput again with a larger buffer works too).
	//	input(buf_ptr, buf_cap, len_ptr) -> status
	FuncInput = "input"
	// FuncCall invokes a tool. The request is a CallRequest in JSON; the
	// response body is the tool's result (status OK) or an ErrorBody.
	//	call(req_ptr, req_len, buf_ptr, buf_cap, len_ptr) -> status
	FuncCall = "call"
	// FuncResponse copies the pending response body, kept after a call that
	// returned StatusBufferTooSmall, and returns the status of that call.
	//	response(buf_ptr, buf_cap, len_ptr) -> status
	FuncResponse = "response"
	// FuncOutput sets the task output (JSON). A later call replaces it.
	//	output(ptr, len) -> status
	FuncOutput = "output"
	// FuncLog writes one log line at a LogLevel.
	//	log(level, ptr, len) -> status
	FuncLog = "log"
	// FuncNow writes the recorded current time, as unsigned 64-bit little
	// endian nanoseconds since the Unix epoch, at out_ptr (8 bytes).
	//	now(out_ptr) -> status
	FuncNow = "now"
	// FuncEmit stages an outbox effect (an Effect in JSON), dispatched only
	// after the task succeeds.
	//	emit(req_ptr, req_len) -> status
	FuncEmit = "emit"
	// FuncCallBatch invokes several tools at once. The request is a JSON
	// array of CallRequests; the response body (status OK) is a JSON array
	// of BatchItems in the same order, each with its own status. The host
	// runs the calls concurrently, identifies them in array order, and
	// records each on its own; a malformed batch (StatusInvalidArgument,
	// with an ErrorBody) invokes nothing.
	//	call_batch(req_ptr, req_len, buf_ptr, buf_cap, len_ptr) -> status
	FuncCallBatch = "call_batch"
	// FuncWait waits durably: for a time (kind sleep) or for a signal sent
	// to the task (kind signal). The request is a WaitRequest in JSON. The
	// first time a wait is reached the attempt suspends: the guest is
	// stopped where it is, the worker and the lease are released, and the
	// task waits without running. When the wait is over the task runs again
	// from the start; every call before the wait replays from the ledger
	// and the wait returns at once with its recorded answer: for sleep, OK
	// and a WaitResult; for signal, OK and the signal's payload, or
	// StatusTimeout with an ErrorBody. A wait already over when it is
	// reached (a past sleep, a signal sent before) answers without
	// suspending. See docs/waits.md.
	//	wait(req_ptr, req_len, buf_ptr, buf_cap, len_ptr) -> status
	FuncWait = "wait"
)

// ExportStart is a WASI command module's entry point, called once per
// attempt in a fresh instance. A module exports it or ExportRun.
const ExportStart = "_start"

// ExportInitialize is a WASI reactor's initializer (language runtime start,
// package initializers). The host calls it once per agent version and keeps
// the initialized memory and globals as the starting point of every attempt;
// a reactor may omit it.
const ExportInitialize = "_initialize"

// ExportRun is a reactor's entry point, () -> (), called once per attempt in
// a fresh instance restored from the initialized state. It ends the attempt
// as _start does: by returning (success) or through proc_exit.
const ExportRun = "orloj_run"

// ExportMemory is the memory export every guest module must provide.
const ExportMemory = "memory"

// Exit codes a guest passes to proc_exit. Any other non-zero code is a
// permanent failure of the attempt.
const (
	ExitOK = 0
	// ExitTransient asks for the attempt to be retried under the task's
	// backoff policy (sysexits EX_TEMPFAIL).
	ExitTransient = 75
)

// Limits. The host refuses larger requests with StatusInvalidArgument and never
// produces larger responses.
const (
	MaxRequestBytes  = 1 << 20 // a call or emit request, or a log line (which is then cut to MaxLogBytes)
	MaxResponseBytes = 4 << 20 // a tool result, an error body or the input
	MaxOutputBytes   = 4 << 20 // the task output
	MaxLogBytes      = 16 << 10
	MaxToolNameBytes = 128
	MaxKeyBytes      = 256

	MaxBatchCalls         = 64       // calls in one call_batch
	MaxBatchRequestBytes  = 4 << 20  // a call_batch request; each call in it at most MaxRequestBytes
	MaxBatchResponseBytes = 16 << 20 // a call_batch response; each result at most MaxResponseBytes
)
