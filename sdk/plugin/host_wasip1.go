//go:build wasip1

package plugin

import (
	"runtime"
	"unsafe"

	"github.com/orloj/orloj/abi"
)

//go:wasmimport orloj_tool_v1 input
//go:noescape
func importInput(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_tool_v1 call
//go:noescape
func importCall(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_tool_v1 response
//go:noescape
func importResponse(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) int32

//go:wasmimport orloj_tool_v1 output
//go:noescape
func importOutput(ptr unsafe.Pointer, length uint32) int32

//go:wasmimport orloj_tool_v1 log
//go:noescape
func importLog(level int32, ptr unsafe.Pointer, length uint32) int32

type wasmHost struct{}

func host() (rawHost, error) { return wasmHost{}, nil }

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func (wasmHost) input(buf []byte) (abi.Status, uint32) {
	var n uint32
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
