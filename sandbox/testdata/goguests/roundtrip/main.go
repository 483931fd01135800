//go:build wasip1

// Command roundtrip exercises every orloj_v1 function through raw imports:
// it reads the input, calls the "echo" tool with a buffer too small for the
// answer and fetches it with response, logs, reads the clock, emits an
// effect, calls an unknown tool, and writes a JSON report as its output.
package main

import (
	"encoding/binary"
	"encoding/json"
	"os"
	"unsafe"
)

//go:wasmimport orloj_v1 input
func input(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 call
func call(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 response
func response(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 output
func output(ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport orloj_v1 log
func logLine(level int32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport orloj_v1 now
func now(out unsafe.Pointer) uint32

//go:wasmimport orloj_v1 emit
func emit(req unsafe.Pointer, reqLen uint32) uint32

type report struct {
	Input          json.RawMessage `json:"input"`
	SmallStatus    uint32          `json:"small_status"`
	SmallLen       uint32          `json:"small_len"`
	ResponseStatus uint32          `json:"response_status"`
	Result         json.RawMessage `json:"result"`
	AgainStatus    uint32          `json:"again_status"` // response again: nothing pending
	UnknownStatus  uint32          `json:"unknown_status"`
	UnknownBody    json.RawMessage `json:"unknown_body"`
	LogStatus      uint32          `json:"log_status"`
	NowStatus      uint32          `json:"now_status"`
	Now            uint64          `json:"now"`
	EmitStatus     uint32          `json:"emit_status"`
}

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func main() {
	var r report
	var n uint32

	in := make([]byte, 4096)
	if st := input(ptr(in), uint32(len(in)), unsafe.Pointer(&n)); st != 0 {
		os.Exit(10 + int(st))
	}
	r.Input = in[:n]

	req, _ := json.Marshal(map[string]any{"tool": "echo", "params": map[string]any{"input": r.Input}})
	small := make([]byte, 8)
	r.SmallStatus = call(ptr(req), uint32(len(req)), ptr(small), uint32(len(small)), unsafe.Pointer(&n))
	r.SmallLen = n
	big := make([]byte, n+1)
	r.ResponseStatus = response(ptr(big), uint32(len(big)), unsafe.Pointer(&n))
	r.Result = big[:n]
	r.AgainStatus = response(ptr(big), uint32(len(big)), unsafe.Pointer(&n))

	unknown := []byte(`{"tool":"no_such_tool","params":{}}`)
	body := make([]byte, 512)
	r.UnknownStatus = call(ptr(unknown), uint32(len(unknown)), ptr(body), uint32(len(body)), unsafe.Pointer(&n))
	r.UnknownBody = body[:n]

	line := []byte("hello from roundtrip")
	r.LogStatus = logLine(2, ptr(line), uint32(len(line)))

	var ts [8]byte
	r.NowStatus = now(ptr(ts[:]))
	r.Now = binary.LittleEndian.Uint64(ts[:])

	eff := []byte(`{"tool":"notify","params":{"b":2,"a":1},"key":"k1"}`)
	r.EmitStatus = emit(ptr(eff), uint32(len(eff)))

	out, _ := json.Marshal(r)
	if st := output(ptr(out), uint32(len(out))); st != 0 {
		os.Exit(10 + int(st))
	}
}
