// Command declared is a test agent that calls one tool with each of the
// params its input lists, in order, and outputs each call's result or
// error text: {"tool": "slack", "calls": [{...params...}, ...]}.
package main

import (
	"encoding/json"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

type outcome struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func run() error {
	var in struct {
		Tool  string            `json:"tool"`
		Calls []json.RawMessage `json:"calls"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	out := make([]outcome, 0, len(in.Calls))
	for _, p := range in.Calls {
		res, err := orloj.Call(in.Tool, p)
		if err != nil {
			out = append(out, outcome{Error: err.Error()})
			continue
		}
		out = append(out, outcome{Result: res})
	}
	return orloj.Output(out)
}
