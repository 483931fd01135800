// Command toolloop is a test agent that runs two turns of a
// function-calling loop against the model tool: it asks the model (on the
// endpoint its input names) with one tool declared, answers every tool
// call the model makes with a canned result, and asks again with those
// results. Its output is both model results.
package main

import (
	"encoding/json"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

type result struct {
	Content      string          `json:"content"`
	ToolCalls    json.RawMessage `json:"tool_calls,omitempty"`
	FinishReason string          `json:"finish_reason"`
	Model        string          `json:"model"`
	Usage        json.RawMessage `json:"usage,omitempty"`
}

type toolCall struct {
	ID string `json:"id"`
}

var tools = []any{map[string]any{"type": "function", "function": map[string]any{
	"name": "lookup_order", "description": "Look up an order by ID.",
	"parameters": map[string]any{"type": "object", "properties": map[string]any{"id": map[string]any{"type": "string"}}, "required": []string{"id"}},
}}}

func run() error {
	var in struct {
		Endpoint string `json:"endpoint"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	msgs := []any{
		map[string]any{"role": "system", "content": "You are a support agent."},
		map[string]any{"role": "user", "content": "Where are orders A1 and B2?"},
	}
	ask := func() (result, error) {
		var r result
		err := orloj.CallInto("model", map[string]any{"endpoint": in.Endpoint, "messages": msgs, "tools": tools,
			"tool_choice": "auto", "max_tokens": 256}, &r)
		return r, err
	}
	first, err := ask()
	if err != nil {
		return err
	}
	var calls []toolCall
	if len(first.ToolCalls) > 0 {
		if err := json.Unmarshal(first.ToolCalls, &calls); err != nil {
			return err
		}
	}
	msgs = append(msgs, map[string]any{"role": "assistant", "content": first.Content, "tool_calls": first.ToolCalls})
	for _, c := range calls {
		msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": c.ID, "content": `{"status":"shipped"}`})
	}
	second, err := ask()
	if err != nil {
		return err
	}
	return orloj.Output(map[string]result{"first": first, "second": second})
}
