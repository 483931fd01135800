//go:build wasip1

// Command reactor reports what its run sees, to test pre-initialization. It
// is built both as a command and as a reactor (-buildmode=c-shared); its
// package initializers read the clock and crypto/rand and print a line, and
// each run increments a package counter.
//
// The output is one JSON object: counter (after the increment), rand (8
// bytes of crypto/rand read by the run), init_rand (read by init), wall and
// init_wall (time.Now in unix ns, in the run and in init), args, env, now
// (orloj_v1.now in unix ns). An input of {"exit": N} makes the run exit with
// N after writing its output; {"scribble": N} allocates N MiB, reports
// whether it was all zero (zero) and fills it with 0xAA, so a memory reused
// without a proper reset would show in the next attempt.
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/orloj/orloj/sdk/orloj"
)

var (
	sink     []byte
	counter  int
	initRand = read8()
	initWall = time.Now().UnixNano()
)

func init() { fmt.Println("reactor: init ran") }

func read8() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func main() { orloj.Main(run) }

func run() error {
	counter++
	var in struct {
		Exit     int `json:"exit"`
		Scribble int `json:"scribble"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	now, err := orloj.Now()
	if err != nil {
		return err
	}
	fmt.Println("reactor: run", counter)
	zero := true
	if in.Scribble > 0 {
		b := make([]byte, in.Scribble<<20)
		for i := range b {
			zero = zero && b[i] == 0
			b[i] = 0xAA
		}
		sink = b
	}
	if err := orloj.Output(map[string]any{
		"counter": counter, "rand": read8(), "init_rand": initRand,
		"wall": time.Now().UnixNano(), "init_wall": initWall,
		"args": os.Args, "env": os.Environ(), "now": now.UnixNano(), "zero": zero,
	}); err != nil {
		return err
	}
	if in.Exit != 0 {
		os.Exit(in.Exit)
	}
	return nil
}
