//go:build wasip1

// Command waiter calls the "step" tool, sleeps an hour, awaits the signal
// "go" for a minute, and outputs what it saw: the sleep's error, the
// signal's payload or the await's error.
package main

import (
	"time"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() {
	orloj.Main(func() error {
		if _, err := orloj.Call("step", map[string]int{"n": 1}); err != nil {
			return err
		}
		out := map[string]any{}
		if err := orloj.Sleep(time.Hour); err != nil {
			out["sleep"] = err.Error()
		}
		p, err := orloj.Await("go", time.Minute)
		if err != nil {
			out["await"] = err.Error()
		} else {
			out["signal"] = p
		}
		return orloj.Output(out)
	})
}
