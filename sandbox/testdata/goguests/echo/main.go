//go:build wasip1

// Command echo is the smallest useful guest: it copies the task input to the
// task output. Benchmarks use it to measure instantiate + run + exit, and the
// RSS test parks many instances of it inside the input host call.
package main

import (
	"os"
	"unsafe"
)

//go:wasmimport orloj_v1 input
func input(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 response
func response(buf unsafe.Pointer, bufCap uint32, lenPtr unsafe.Pointer) uint32

//go:wasmimport orloj_v1 output
func output(ptr unsafe.Pointer, n uint32) uint32

const (
	statusOK             = 0
	statusBufferTooSmall = 7
)

func main() {
	buf := make([]byte, 256)
	var n uint32
	st := input(unsafe.Pointer(&buf[0]), uint32(len(buf)), unsafe.Pointer(&n))
	if st == statusBufferTooSmall {
		buf = make([]byte, n)
		st = response(unsafe.Pointer(&buf[0]), n, unsafe.Pointer(&n))
	}
	if st != statusOK {
		os.Exit(10 + int(st))
	}
	buf = append(buf[:n], 0) // never pass a pointer to a zero-length slice
	if st := output(unsafe.Pointer(&buf[0]), n); st != statusOK {
		os.Exit(10 + int(st))
	}
}
