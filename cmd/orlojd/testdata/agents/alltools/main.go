// Command alltools is a test agent that calls every built-in tool: an http
// POST, a model completion, a kv put then a get of the same key (which must
// see the staged write), and an emitted kv put that the outbox applies after
// the task succeeds. With {"read": true} it only reads both keys back.
package main

import (
	"encoding/json"
	"fmt"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

type input struct {
	HTTPURL   string `json:"http_url"`
	Key       string `json:"key"`
	EffectKey string `json:"effect_key"`
	Read      bool   `json:"read"`
}

type kvGet struct {
	Found bool            `json:"found"`
	Value json.RawMessage `json:"value"`
}

func get(key string) (kvGet, error) {
	var g kvGet
	err := orloj.CallInto("kv", map[string]string{"op": "get", "key": key}, &g)
	return g, err
}

func run() error {
	var in input
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	if in.Read {
		put, err := get(in.Key)
		if err != nil {
			return err
		}
		eff, err := get(in.EffectKey)
		if err != nil {
			return err
		}
		return orloj.Output(map[string]kvGet{"put": put, "effect": eff})
	}

	var h struct {
		Status int    `json:"status"`
		Body   string `json:"body"`
	}
	if err := orloj.CallInto("http", map[string]string{"method": "POST", "url": in.HTTPURL, "body": "hello"}, &h); err != nil {
		return err
	}
	var m struct {
		Content string `json:"content"`
	}
	if err := orloj.CallInto("model", map[string]any{"messages": []map[string]string{{"role": "user", "content": "say hi"}}}, &m); err != nil {
		return err
	}
	if _, err := orloj.Call("kv", map[string]any{"op": "put", "key": in.Key, "value": map[string]string{"by": "put"}}); err != nil {
		return err
	}
	g, err := get(in.Key)
	if err != nil {
		return err
	}
	if !g.Found {
		return fmt.Errorf("kv get %q after put: not found", in.Key)
	}
	if err := orloj.Emit("kv", map[string]any{"op": "put", "key": in.EffectKey, "value": map[string]string{"by": "effect"}}); err != nil {
		return err
	}
	return orloj.Output(map[string]any{"http_status": h.Status, "http_body": h.Body, "model": m.Content, "kv_get": g})
}
