// Command hello is the smallest Orloj agent: it logs one line and returns its
// task input, byte for byte, as its output.
package main

import (
	"encoding/json"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

func run() error {
	in, err := orloj.Input()
	if err != nil {
		return err
	}
	orloj.Logf("hello: echoing %d bytes of input", len(in))
	// RawMessage: the input is JSON already and must come back unchanged,
	// not re-encoded.
	return orloj.Output(json.RawMessage(in))
}
