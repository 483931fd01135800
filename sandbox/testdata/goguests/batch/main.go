//go:build wasip1

// Command batch sends its input's "batch" string, as it is, to call_batch
// with a buffer of "buf" bytes, fetches a body that did not fit with
// response, and outputs {"status": S, "first_len": N, "body": "..."}: tests
// send malformed batches through it as well as good ones. With "summary",
// the body is the items with each result replaced by its length, for
// responses larger than an output may be.
package main

import (
	"encoding/json"
	"os"
	"unsafe"
)

//go:wasmimport orloj_v1 input
func input(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 call_batch
func callBatch(req unsafe.Pointer, reqLen uint32, buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 response
func response(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 output
func output(ptr unsafe.Pointer, n uint32) uint32

func ptr(b []byte) unsafe.Pointer { return unsafe.Pointer(unsafe.SliceData(b)) }

func main() {
	in := make([]byte, 8<<20)
	var n uint32
	if st := input(ptr(in), uint32(len(in)), unsafe.Pointer(&n)); st != 0 {
		os.Exit(10 + int(st))
	}
	var args struct {
		Batch   string `json:"batch"`
		Buf     int    `json:"buf"`
		Summary bool   `json:"summary"`
	}
	if err := json.Unmarshal(in[:n], &args); err != nil {
		os.Exit(3)
	}
	req := []byte(args.Batch)
	buf := make([]byte, args.Buf+1) // +1: never a pointer to nothing
	st := callBatch(ptr(req), uint32(len(req)), ptr(buf), uint32(args.Buf), unsafe.Pointer(&n))
	first := n
	if st == 7 { // buffer_too_small
		buf = make([]byte, n+1)
		st = response(ptr(buf), n, unsafe.Pointer(&n))
	}
	body := buf[:n]
	if args.Summary && st == 0 {
		var items []struct {
			Status  string          `json:"status"`
			Result  json.RawMessage `json:"result"`
			Message string          `json:"message"`
		}
		if err := json.Unmarshal(body, &items); err != nil {
			os.Exit(4)
		}
		type short struct {
			Status  string `json:"status"`
			Result  int    `json:"result"`
			Message string `json:"message,omitempty"`
		}
		var sum []short
		for _, it := range items {
			sum = append(sum, short{it.Status, len(it.Result), it.Message})
		}
		body, _ = json.Marshal(sum)
	}
	out, _ := json.Marshal(map[string]any{"status": st, "first_len": first, "body": string(body)})
	if st := output(ptr(out), uint32(len(out))); st != 0 {
		os.Exit(20 + int(st))
	}
}
