// Command callloop is a benchmark agent: it calls one tool N times with the
// same params and discards the results, so a run's cost beyond instantiation
// is the cost of its calls. Input: {"tool": "t", "params": {...}, "n": N}.
// Output: {"calls": N}.
//
// With "mode": "encode" it makes no call and instead encodes the request N
// times as the SDK does before each call (json.Valid of the params, then
// json.Marshal of the abi.CallRequest), to measure the guest's share.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		Tool   string          `json:"tool"`
		Params json.RawMessage `json:"params"`
		N      int             `json:"n"`
		Mode   string          `json:"mode"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	for i := range in.N {
		if in.Mode == "encode" {
			if !json.Valid(in.Params) {
				return errors.New("params are not JSON")
			}
			if _, err := json.Marshal(abi.CallRequest{Tool: in.Tool, Params: in.Params}); err != nil {
				return err
			}
			continue
		}
		if _, err := orloj.Call(in.Tool, in.Params); err != nil {
			return fmt.Errorf("call %d: %w", i+1, err)
		}
	}
	return orloj.Output(map[string]int{"calls": in.N})
}
