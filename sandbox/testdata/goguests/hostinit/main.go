//go:build wasip1

// Command hostinit calls the orloj_v1 host (now) from a package
// initializer: as a reactor it cannot be snapshotted, and each attempt
// initializes itself, so the call is served by the attempt's dispatcher.
package main

import (
	"github.com/orloj/orloj/sdk/orloj"
)

var initNow = mustNow()

func mustNow() int64 {
	t, err := orloj.Now()
	if err != nil {
		panic(err)
	}
	return t.UnixNano()
}

func main() {
	orloj.Main(func() error { return orloj.Output(map[string]int64{"init_now": initNow}) })
}
