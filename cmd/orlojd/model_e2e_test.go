package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// anthropicStandIn is a loopback Anthropic Messages API: it refuses what
// the real one would (path, headers, unknown fields) and answers the first
// turn with two tool_use blocks, the turn carrying their results with text.
type anthropicStandIn struct {
	*stub
	mu     sync.Mutex
	bodies []string
}

type anthropicWire struct {
	Model     string `json:"model"`
	MaxTokens int    `json:"max_tokens"`
	System    string `json:"system"`
	Messages  []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	} `json:"tools"`
	ToolChoice *struct {
		Type string `json:"type"`
	} `json:"tool_choice"`
}

type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
}

func startAnthropic(t *testing.T, key string) *anthropicStandIn {
	a := &anthropicStandIn{}
	a.stub = startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		a.mu.Lock()
		a.bodies = append(a.bodies, string(body))
		a.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fail := func(msg string) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"type":"error","error":{"type":"invalid_request_error","message":%q}}`, msg)
		}
		if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != key || r.Header.Get("anthropic-version") != "2023-06-01" {
			fail("not an Anthropic request")
			return
		}
		var req anthropicWire
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			fail(err.Error())
			return
		}
		if req.Model != "claude-sonnet-4-5" || req.MaxTokens != 256 || req.System != "You are a support agent." ||
			len(req.Tools) != 1 || req.Tools[0].Name != "lookup_order" || req.ToolChoice == nil || req.ToolChoice.Type != "auto" {
			fail("unexpected request: " + string(body))
			return
		}
		switch len(req.Messages) {
		case 1:
			fmt.Fprint(w, `{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
				"content":[{"type":"text","text":"Looking both up."},
				  {"type":"tool_use","id":"toolu_A1","name":"lookup_order","input":{"id":"A1"}},
				  {"type":"tool_use","id":"toolu_B2","name":"lookup_order","input":{"id":"B2"}}],
				"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":40,"output_tokens":30}}`)
		case 3:
			var results []anthropicBlock
			if req.Messages[1].Role != "assistant" || req.Messages[2].Role != "user" ||
				json.Unmarshal(req.Messages[2].Content, &results) != nil || len(results) != 2 ||
				results[0].Type != "tool_result" || results[0].ToolUseID != "toolu_A1" || results[1].ToolUseID != "toolu_B2" {
				fail("the tool results are not one user turn of tool_result blocks: " + string(body))
				return
			}
			fmt.Fprint(w, `{"id":"msg_2","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
				"content":[{"type":"text","text":"Both have shipped."}],"stop_reason":"end_turn","stop_sequence":null,
				"usage":{"input_tokens":12,"cache_read_input_tokens":60,"cache_creation_input_tokens":8,"output_tokens":5}}`)
		default:
			fail("unexpected conversation: " + string(body))
		}
	})
	return a
}

// TestModelFunctionCallingAnthropic runs, on a started `orlojd serve`
// whose config file declares an anthropic endpoint, an agent that calls
// the model tool with "endpoint": "claude" and a tool, answers the tool
// calls and asks again. The stand-in sees Anthropic's wire format (tool
// results as one user turn of tool_result blocks); the task output carries
// the tool calls in the provider-neutral shape; the default (OpenAI)
// endpoint is never asked; the key shows nowhere.
func TestModelFunctionCallingAnthropic(t *testing.T) {
	t.Parallel()
	const key = "sk-ant-e2e-FAKE-never-logged-9137"
	claude := startAnthropic(t, key)
	openai := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		http.Error(w, `{"error":{"message":"the default endpoint was not named"}}`, http.StatusBadRequest)
	})
	cfgFile := filepath.Join(t.TempDir(), "orlojd.json")
	cfg, _ := json.Marshal(map[string]any{"model_endpoints": []map[string]any{{
		"name": "claude", "provider": "anthropic", "base_url": claude.url, "key_env": "TEST_ANTHROPIC_KEY",
		"model": "claude-sonnet-4-5", "max_tokens": 4096}}})
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	n := startNode(t, withArgs("--config", cfgFile, "--model-url", openai.url+"/v1", "--model", "gpt-test"),
		withEnv("TEST_ANTHROPIC_KEY="+key))
	n.ok("agent", "push", agent("toolloop"), "--name", "toolloop", "--tools", "model", "--max-attempts", "2")

	id := strings.TrimSpace(n.ok("task", "submit", "toolloop", "--input", `{"endpoint":"claude"}`))
	n.ok("task", "wait", id, "--timeout", "2m")
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	if tk.State != "succeeded" || tk.Attempts != 1 {
		t.Fatalf("task = %+v, output %s\n%s", tk, tk.Output, n.log)
	}
	var out struct {
		First, Second struct {
			Content   string `json:"content"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
			FinishReason string          `json:"finish_reason"`
			Model        string          `json:"model"`
			Usage        json.RawMessage `json:"usage"`
		}
	}
	if err := json.Unmarshal(tk.Output, &out); err != nil {
		t.Fatalf("output %s: %v", tk.Output, err)
	}
	f, s := out.First, out.Second
	if f.Content != "Looking both up." || f.FinishReason != "tool_calls" || len(f.ToolCalls) != 2 ||
		f.ToolCalls[0].ID != "toolu_A1" || f.ToolCalls[0].Type != "function" || f.ToolCalls[0].Function.Name != "lookup_order" ||
		f.ToolCalls[0].Function.Arguments != `{"id":"A1"}` || f.ToolCalls[1].Function.Arguments != `{"id":"B2"}` {
		t.Errorf("first turn = %+v", f)
	}
	if s.Content != "Both have shipped." || s.FinishReason != "stop" || len(s.ToolCalls) != 0 || s.Model != "claude-sonnet-4-5-20250929" ||
		compact(s.Usage) != `{"prompt_tokens":80,"completion_tokens":5,"cached_tokens":60,"cache_creation_tokens":8}` {
		t.Errorf("second turn = %+v (usage %s)", s, s.Usage)
	}
	if got, _ := claude.seen(); got != 2 {
		t.Errorf("the anthropic stand-in was asked %d times, want 2", got)
	}
	if got, _ := openai.seen(); got != 0 {
		t.Errorf("the default endpoint was asked %d times, want 0", got)
	}
	// Both turns went through the ledger, each its own call.
	var calls []struct{ Tool, Outcome string }
	n.okJSON(&calls, "task", "calls", id)
	if len(calls) != 2 || calls[0].Tool != "model" || calls[0].Outcome != "invoked" || calls[1].Outcome != "invoked" {
		t.Errorf("task calls = %+v", calls)
	}
	metrics := n.ok("task", "calls", id, "-o", "json")
	for where, text := range map[string]string{"node log": n.log.String(), "task": string(tk.Output), "calls": metrics} {
		if strings.Contains(text, key) {
			t.Errorf("the API key shows in the %s", where)
		}
	}
}
