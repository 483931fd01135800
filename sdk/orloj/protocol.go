package orloj

import (
	"sync"

	"github.com/orloj/orloj/abi"
	guestexchange "github.com/orloj/orloj/sdk/internal/exchange"
)

// rawHost is the orloj_v1 import surface with guest memory shown as byte
// slices: one method per host function, the same arguments, the same status.
// The wasip1 build implements it with the real imports, the native build with
// a Fake. Everything above it (request encoding, the buffer-too-small
// exchange, error decoding) is shared, so tests of the fake exercise the code
// that runs in production.
//
// For input, call and response, n is the value the host wrote at len_ptr:
// the body length, which exceeds len(buf) exactly when the status is
// abi.StatusBufferTooSmall.
type rawHost interface {
	input(buf []byte) (st abi.Status, n uint32)
	call(req, buf []byte) (st abi.Status, n uint32)
	callBatch(req, buf []byte) (st abi.Status, n uint32)
	response(buf []byte) (st abi.Status, n uint32)
	output(b []byte) abi.Status
	log(level abi.LogLevel, msg []byte) abi.Status
	now() (ns uint64, st abi.Status)
	emit(req []byte) abi.Status
	wait(req, buf []byte) (st abi.Status, n uint32)
}

// respBufSize is the size of the first response buffer. Most tool results
// fit; a larger one costs one extra host call (response), never a repeated
// tool call.
const respBufSize = 64 << 10

var (
	// exchangeMu serialises request/response exchanges: the buffer below and
	// the host's single pending response are both shared by every goroutine.
	exchangeMu sync.Mutex
	// respBuf is allocated by the package initializer, so a reactor's
	// snapshot already holds it.
	respBuf = make([]byte, respBufSize)
	// reqBuf holds Call's request, under exchangeMu.
	reqBuf []byte
)

// exchange runs one host function that answers into a buffer and returns the
// status and a body the caller owns. first makes the request. When the body
// did not fit, fetch is given a buffer of exactly the announced size: for call
// it is response, which hands over the kept body without invoking the tool
// again; for input it is input itself, which has no side effect to repeat.
//
// A host that breaks the protocol (claims to have written more than the
// buffer holds, announces more than abi.MaxResponseBytes, or still does not
// fit) yields an ErrFault error; the status and body are then meaningless.
func exchange(first, fetch func(buf []byte) (abi.Status, uint32)) (abi.Status, []byte, error) {
	return exchangeUpTo(abi.MaxResponseBytes, first, fetch)
}

// exchangeUpTo is exchange for a response of at most limit bytes (a batch's
// is larger than a call's).
func exchangeUpTo(limit uint32, first, fetch func(buf []byte) (abi.Status, uint32)) (abi.Status, []byte, error) {
	exchangeMu.Lock()
	defer exchangeMu.Unlock()
	return guestexchange.Do(respBuf, limit, first, fetch)
}

// exchangeCall is exchange for a call: the request is built in a buffer kept
// between calls, since the host reads it during the call only and calls are
// one at a time (exchangeMu).
func exchangeCall(h rawHost, tool string, params []byte, key string) (abi.Status, []byte, error) {
	exchangeMu.Lock()
	defer exchangeMu.Unlock()
	reqBuf = appendRequest(reqBuf[:0], tool, params, key)
	req := reqBuf
	if cap(reqBuf) > respBufSize {
		reqBuf = nil // a large request's buffer is not kept
	}
	return guestexchange.Do(respBuf, abi.MaxResponseBytes,
		func(buf []byte) (abi.Status, uint32) { return h.call(req, buf) },
		h.response)
}
