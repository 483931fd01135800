//go:build wasip1

package orloj

import (
	"runtime"
	"unsafe"

	"github.com/orloj/orloj/abi"
)

// The orloj_v1 imports, as abi.go declares them. go:wasmimport takes 32-bit
// integers and pointers (a pointer lowers to its i32 offset in linear memory)
// and must name the module and function literally; TestWasmImportsMatchABI
// checks these names against the abi constants.

//go:wasmimport orloj_v1 input
//go:noescape
func importInput(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_v1 call
//go:noescape
func importCall(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_v1 response
//go:noescape
func importResponse(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_v1 output
//go:noescape
func importOutput(ptr unsafe.Pointer, length uint32) int32

//go:wasmimport orloj_v1 log
//go:noescape
func importLog(level int32, ptr unsafe.Pointer, length uint32) int32

//go:wasmimport orloj_v1 now
//go:noescape
func importNow(outPtr unsafe.Pointer) int32

//go:wasmimport orloj_v1 emit
//go:noescape
func importEmit(req unsafe.Pointer, reqLen uint32) int32

//go:wasmimport orloj_v1 call_batch
//go:noescape
func importCallBatch(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_v1 wait
//go:noescape
func importWait(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

// wasmHost is the real host, reached through the imports above.
type wasmHost struct{}

func host() (rawHost, error) { return wasmHost{}, nil }

// ptr is the linear-memory address of b's first byte; nil (offset 0) for an
// empty slice, which the host accepts with a zero length. Go's heap does not
// move objects and a goroutine's stack cannot move during an import call, so
// the address holds for the call; runtime.KeepAlive after each call keeps the
// slice reachable until the host is done with it.
func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func (wasmHost) input(buf []byte) (abi.Status, uint32) {
	var n uint32 // stays 0 if the host fails before writing it
	st := importInput(ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	runtime.KeepAlive(buf)
	return abi.Status(st), n
}

func (wasmHost) call(req, buf []byte) (abi.Status, uint32) {
	var n uint32
	st := importCall(ptr(req), uint32(len(req)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	runtime.KeepAlive(req)
	runtime.KeepAlive(buf)
	return abi.Status(st), n
}

func (wasmHost) callBatch(req, buf []byte) (abi.Status, uint32) {
	var n uint32
	st := importCallBatch(ptr(req), uint32(len(req)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	runtime.KeepAlive(req)
	runtime.KeepAlive(buf)
	return abi.Status(st), n
}

func (wasmHost) response(buf []byte) (abi.Status, uint32) {
	var n uint32
	st := importResponse(ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	runtime.KeepAlive(buf)
	return abi.Status(st), n
}

func (wasmHost) output(b []byte) abi.Status {
	st := importOutput(ptr(b), uint32(len(b)))
	runtime.KeepAlive(b)
	return abi.Status(st)
}

func (wasmHost) log(level abi.LogLevel, msg []byte) abi.Status {
	st := importLog(int32(level), ptr(msg), uint32(len(msg)))
	runtime.KeepAlive(msg)
	return abi.Status(st)
}

func (wasmHost) now() (uint64, abi.Status) {
	// The host writes u64 little endian; wasm memory is little endian, so
	// the bytes land as a native uint64.
	var ns uint64
	st := importNow(unsafe.Pointer(&ns))
	return ns, abi.Status(st)
}

func (wasmHost) emit(req []byte) abi.Status {
	st := importEmit(ptr(req), uint32(len(req)))
	runtime.KeepAlive(req)
	return abi.Status(st)
}

func (wasmHost) wait(req, buf []byte) (abi.Status, uint32) {
	var n uint32
	st := importWait(ptr(req), uint32(len(req)), ptr(buf), uint32(len(buf)), unsafe.Pointer(&n))
	runtime.KeepAlive(req)
	runtime.KeepAlive(buf)
	return abi.Status(st), n
}
