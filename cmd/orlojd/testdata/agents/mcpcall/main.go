// Command mcpcall makes one call: {"tool": "server/tool", "args": {...}}
// in, the tool's result out.
package main

import (
	"encoding/json"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		Tool string          `json:"tool"`
		Args json.RawMessage `json:"args"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	var out json.RawMessage
	if err := orloj.CallInto(in.Tool, in.Args, &out); err != nil {
		return err
	}
	return orloj.Output(out)
}
