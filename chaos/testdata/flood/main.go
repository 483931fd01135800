// Command flood is the hostile and the heavy agent of the brick tests: it
// makes N calls to one tool (each with its own params) or emits N effects,
// optionally going on past refusals, then makes one last call. Input:
//
//	{"mode": "call"|"emit", "tool": "kv", "params": {...}, "vary": "key",
//	 "n": 20000, "ignore_errors": true, "then": {"tool": "http", "params": {...}}}
//
// "params" is the base of every call's params; flood appends the call's
// number to the field "vary" names, or adds a field "i". Output:
// {"ok": N, "refused": N, "last": "the last refusal"}.
package main

import (
	"encoding/json"
	"fmt"

	"github.com/orloj/orloj/sdk/orloj"
)

type call struct {
	Tool   string         `json:"tool"`
	Params map[string]any `json:"params"`
}

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		Mode         string         `json:"mode"`
		Tool         string         `json:"tool"`
		Params       map[string]any `json:"params"`
		Vary         string         `json:"vary"`
		N            int            `json:"n"`
		IgnoreErrors bool           `json:"ignore_errors"`
		Then         *call          `json:"then"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	ok, refused, last := 0, 0, ""
	for i := range in.N {
		p := map[string]any{}
		for k, v := range in.Params {
			p[k] = v
		}
		if in.Vary != "" {
			p[in.Vary] = fmt.Sprintf("%v%d", p[in.Vary], i)
		} else {
			p["i"] = i
		}
		var err error
		if in.Mode == "emit" {
			err = orloj.Emit(in.Tool, p)
		} else {
			_, err = orloj.Call(in.Tool, p)
		}
		if err != nil {
			if !in.IgnoreErrors {
				return fmt.Errorf("%s %d: %w", in.Mode, i+1, err)
			}
			refused++
			last = err.Error()
			continue
		}
		ok++
	}
	if in.Then != nil {
		if _, err := orloj.Call(in.Then.Tool, in.Then.Params); err != nil {
			return fmt.Errorf("last call: %w", err)
		}
	}
	out, _ := json.Marshal(map[string]any{"ok": ok, "refused": refused, "last": last})
	return orloj.Output(json.RawMessage(out))
}
