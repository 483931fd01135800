//go:build !wasip1

package agent_test

// These tests install an orloj.Fake, which is process-wide: none of them
// may call t.Parallel.

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
	"github.com/orloj/orloj/sdk/orloj/agent"
)

// scriptedModel answers the model tool's calls with turns in order and
// keeps what each call was sent.
type scriptedModel struct {
	mu    sync.Mutex
	turns []string // each a model result in JSON
	seen  []json.RawMessage
}

func (m *scriptedModel) handle(params json.RawMessage) (any, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.seen = append(m.seen, params)
	if len(m.seen) > len(m.turns) {
		return nil, fmt.Errorf("model asked %d times, scripted %d turns", len(m.seen), len(m.turns))
	}
	return json.RawMessage(m.turns[len(m.seen)-1]), nil
}

func lookupTool() agent.Tool {
	return agent.Tool{
		Name:        "lookup_order",
		Description: "Look an order up.",
		Parameters:  json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`),
		Request: func(args json.RawMessage) (orloj.Request, error) {
			var a struct{ ID string }
			if err := json.Unmarshal(args, &a); err != nil || a.ID == "" {
				return orloj.Request{}, errors.New("want an id")
			}
			return orloj.Request{Tool: "http", Params: map[string]string{"method": "GET", "url": "http://shop/orders/" + a.ID}}, nil
		},
		Result: func(res json.RawMessage) (string, error) {
			var r struct{ Body string }
			err := json.Unmarshal(res, &r)
			return r.Body, err
		},
	}
}

const twoLookups = `{"content":"","finish_reason":"tool_calls","tool_calls":[
 {"id":"c1","type":"function","function":{"name":"lookup_order","arguments":"{\"id\":\"A1\"}"}},
 {"id":"c2","type":"function","function":{"name":"lookup_order","arguments":"{\"id\":\"B2\"}"}},
 {"id":"c3","type":"function","function":{"name":"nope","arguments":"{}"}},
 {"id":"c4","type":"function","function":{"name":"lookup_order","arguments":"{}"}}],
 "usage":{"prompt_tokens":10,"completion_tokens":5}}`

// One turn asks for four calls: the two good ones run at once through the
// ledger; the unknown function and the bad arguments are told to the model;
// its next turn sees every result under its call's ID and answers.
func TestRunCallsToolsAndLoops(t *testing.T) {
	m := &scriptedModel{turns: []string{twoLookups,
		`{"content":"A1 shipped, B2 is late.","finish_reason":"stop","usage":{"prompt_tokens":30,"completion_tokens":8,"cached_tokens":20}}`}}
	var mu sync.Mutex
	arrived := 0
	both := make(chan struct{})
	f := orloj.NewFake().Handle("model", m.handle).Handle("http", func(p json.RawMessage) (any, error) {
		mu.Lock()
		arrived++
		if arrived == 2 {
			close(both)
		}
		mu.Unlock()
		<-both // the two lookups are in flight together
		var r struct{ URL string }
		_ = json.Unmarshal(p, &r)
		return map[string]any{"status": 200, "body": "order " + r.URL[strings.LastIndex(r.URL, "/")+1:]}, nil
	})
	t.Cleanup(f.Install())
	a := &agent.Agent{System: "Be brief.", Endpoint: "claude", Tools: []agent.Tool{lookupTool()}}
	res, err := a.Run("Where are A1 and B2?")
	if err != nil {
		t.Fatal(err)
	}
	if res.Content != "A1 shipped, B2 is late." || res.Steps != 2 {
		t.Errorf("result %q after %d steps", res.Content, res.Steps)
	}
	if res.Usage != (agent.Usage{PromptTokens: 40, CompletionTokens: 13, CachedTokens: 20}) {
		t.Errorf("usage %+v", res.Usage)
	}
	var first struct {
		Endpoint   string          `json:"endpoint"`
		ToolChoice string          `json:"tool_choice"`
		Tools      json.RawMessage `json:"tools"`
		Messages   []agent.Message `json:"messages"`
	}
	if err := json.Unmarshal(m.seen[0], &first); err != nil {
		t.Fatal(err)
	}
	if first.Endpoint != "claude" || first.ToolChoice != "auto" || !strings.Contains(string(first.Tools), `"name":"lookup_order"`) ||
		len(first.Messages) != 2 || first.Messages[0].Role != "system" || first.Messages[1].Content != "Where are A1 and B2?" {
		t.Errorf("first model call %s", m.seen[0])
	}
	var second struct{ Messages []agent.Message }
	if err := json.Unmarshal(m.seen[1], &second); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, msg := range second.Messages[3:] {
		if msg.Role != "tool" {
			t.Errorf("message %+v after the assistant's, want tool replies", msg)
		}
		got[msg.ToolCallID] = msg.Content
	}
	want := map[string]string{"c1": "order A1", "c2": "order B2", "c3": `error: there is no tool named "nope"`, "c4": "error: lookup_order: want an id"}
	for id, w := range want {
		if got[id] != w {
			t.Errorf("reply to %s = %q, want %q", id, got[id], w)
		}
	}
	if a := second.Messages[2]; a.Role != "assistant" || len(a.ToolCalls) != 4 {
		t.Errorf("assistant turn sent back as %+v", a)
	}
	if n := len(f.CallsTo("http")); n != 2 {
		t.Errorf("%d http calls, want 2", n)
	}
}

// A transient tool failure ends the attempt (the host retries; the ledger
// replays what finished); a permanent one is the model's to read.
func TestRunToolFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		wantStop  bool
		wantReply string
	}{
		{"transient", abi.Errorf(abi.StatusTransient, "503"), true, ""},
		{"in doubt", abi.Errorf(abi.StatusInDoubt, "maybe charged"), true, ""},
		{"tool error", abi.Errorf(abi.StatusToolError, "404 no such order"), false, "404 no such order"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &scriptedModel{turns: []string{
				`{"tool_calls":[{"id":"c1","type":"function","function":{"name":"lookup_order","arguments":"{\"id\":\"A1\"}"}}]}`,
				`{"content":"sorry"}`}}
			f := orloj.NewFake().Handle("model", m.handle).Handle("http", func(json.RawMessage) (any, error) { return nil, tc.err })
			t.Cleanup(f.Install())
			_, err := (&agent.Agent{Tools: []agent.Tool{lookupTool()}}).Run("A1?")
			if tc.wantStop {
				st, _ := abi.StatusOf(tc.err)
				if !errors.Is(err, st) || len(m.seen) != 1 {
					t.Errorf("err %v after %d model calls; want %v after 1", err, len(m.seen), st)
				}
				return
			}
			if err != nil || len(m.seen) != 2 || !strings.Contains(string(m.seen[1]), tc.wantReply) {
				t.Errorf("err %v; second model call %s", err, m.seen[len(m.seen)-1])
			}
		})
	}
}

// The last allowed turn forbids tool calls; a model that calls one anyway
// ends the run with ErrMaxSteps.
func TestRunStepLimit(t *testing.T) {
	call := `{"tool_calls":[{"id":"c","type":"function","function":{"name":"lookup_order","arguments":"{\"id\":\"A\"}"}}]}`
	m := &scriptedModel{turns: []string{call, call, call}}
	f := orloj.NewFake().Handle("model", m.handle).Handle("http", func(json.RawMessage) (any, error) { return map[string]string{"body": "x"}, nil })
	t.Cleanup(f.Install())
	res, err := (&agent.Agent{MaxSteps: 3, Tools: []agent.Tool{lookupTool()}}).Run("loop")
	if !errors.Is(err, agent.ErrMaxSteps) || !errors.Is(err, orloj.ErrToolError) || res.Steps != 3 {
		t.Fatalf("err %v after %d steps", err, res.Steps)
	}
	if !strings.Contains(string(m.seen[2]), `"tool_choice":"none"`) || strings.Contains(string(m.seen[1]), `"tool_choice":"none"`) {
		t.Errorf("tool_choice: turn 2 %s, turn 3 %s", m.seen[1], m.seen[2])
	}
}

func TestAgentRefusesBadTools(t *testing.T) {
	t.Cleanup(orloj.NewFake().Install())
	for _, tools := range [][]agent.Tool{
		{{Name: "has space", Request: lookupTool().Request}},
		{lookupTool(), lookupTool()},
		{{Name: "x"}},
	} {
		if _, err := (&agent.Agent{Tools: tools}).Run("hi"); !errors.Is(err, orloj.ErrInvalidArgument) {
			t.Errorf("tools %+v: %v, want invalid_argument", tools, err)
		}
	}
}
