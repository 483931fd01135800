//go:build wasip1

// Command waitfaults calls orloj_v1 wait with hostile arguments and outputs
// the status of each, as a JSON object: a request, a buffer and a length
// pointer outside memory, a malformed request, and an await whose payload
// does not fit its buffer (then fetched with response).
package main

import (
	"encoding/json"
	"os"
	"runtime"
	"unsafe"
)

//go:wasmimport orloj_v1 wait
func wait(req, reqLen, buf, bufCap, lenPtr uint32) uint32

//go:wasmimport orloj_v1 response
func response(buf, bufCap, lenPtr uint32) uint32

//go:wasmimport orloj_v1 output
func output(ptr, n uint32) uint32

func addr(b []byte) uint32 { return uint32(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

const outside = 0xFFFFFF00

func main() {
	req := []byte(`{"kind":"signal","name":"big","timeout":1000}`)
	bad := []byte(`{"kind":"signal","name":"big","until":5}`)
	small := make([]byte, 8)
	big := make([]byte, 1<<16)
	n := make([]byte, 4)
	out := map[string]any{}
	out["req_outside"] = wait(outside, uint32(len(req)), addr(big), uint32(len(big)), addr(n))
	out["req_wraps"] = wait(addr(req), 0xFFFFFFFF, addr(big), uint32(len(big)), addr(n))
	out["buf_outside"] = wait(addr(req), uint32(len(req)), outside, 64, addr(n))
	out["len_outside"] = wait(addr(req), uint32(len(req)), addr(big), uint32(len(big)), outside)
	out["malformed"] = wait(addr(bad), uint32(len(bad)), addr(big), uint32(len(big)), addr(n))
	out["malformed_body"] = string(big[:le32(n)])
	out["too_small"] = wait(addr(req), uint32(len(req)), addr(small), uint32(len(small)), addr(n))
	out["too_small_len"] = le32(n)
	out["response"] = response(addr(big), uint32(len(big)), addr(n))
	out["payload"] = string(big[:le32(n)])
	runtime.KeepAlive(req)
	runtime.KeepAlive(bad)
	runtime.KeepAlive(small)
	runtime.KeepAlive(big)
	runtime.KeepAlive(n)
	b, _ := json.Marshal(out)
	if st := output(addr(b), uint32(len(b))); st != 0 {
		os.Exit(int(st))
	}
	runtime.KeepAlive(b)
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}
