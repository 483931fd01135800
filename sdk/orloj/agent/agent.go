// Package agent is a function-calling agent loop on the Orloj SDK: a model
// endpoint, a system prompt and a set of tools, and Run, which asks the
// model, makes the tool calls it asks for (all of one turn at once, through
// orloj.CallAll) and asks again, until the model answers without calling a
// tool or the step limit is reached.
//
// Every step is an Orloj call, so a retried task replays the model turns and
// tool calls that finished and continues from the first that did not: the
// model is not asked again for a turn it already answered, and no tool call
// is repeated. For that the loop is deterministic: the same recorded answers
// give the same next requests.
//
//	support := &agent.Agent{
//		System: "You are a support agent. Look the order up before you answer.",
//		Tools: []agent.Tool{{
//			Name:        "lookup_order",
//			Description: "Look an order up by its ID.",
//			Parameters:  json.RawMessage(`{"type":"object","properties":{"id":{"type":"string"}},"required":["id"]}`),
//			Request: func(args json.RawMessage) (orloj.Request, error) {
//				var a struct{ ID string }
//				if err := json.Unmarshal(args, &a); err != nil {
//					return orloj.Request{}, err
//				}
//				return orloj.Request{Tool: "http", Params: map[string]string{"method": "GET", "url": shop + "/orders/" + url.PathEscape(a.ID)}}, nil
//			},
//		}},
//	}
//	res, err := support.Run(ticket)
//
// A tool call the model gets wrong (an unknown function, arguments the
// tool's Request refuses, a call the tool answers with a permanent error) is
// told to the model in the tool's message, so it can correct itself; a
// transient failure, an in-doubt call or a spent budget ends the attempt
// with its error, for the host to retry or dead-letter.
package agent

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// DefaultMaxSteps is how many model turns Run takes at most unless
// Agent.MaxSteps says otherwise.
const DefaultMaxSteps = 10

// ErrMaxSteps is returned (wrapped) when the model still calls tools after
// Agent.MaxSteps turns. It is permanent: running again gives the same turns.
var ErrMaxSteps = errors.New("agent: step limit reached")

// Agent is a function-calling agent. The zero value with a System prompt is
// a chat loop without tools.
type Agent struct {
	// Endpoint names the node's model endpoint ("" is the default one);
	// Model overrides the endpoint's model ("" keeps it).
	Endpoint, Model string
	// ModelTool is the Orloj tool that speaks to models; default "model".
	ModelTool string
	// System is the system prompt.
	System string
	Tools  []Tool
	// MaxSteps bounds the model turns of one Run; default DefaultMaxSteps.
	MaxSteps int
	// Sampling and length, sent as given when set.
	Temperature *float64
	MaxTokens   int
	// ParallelToolCalls, when set, tells the model whether it may ask for
	// several tool calls in one turn (they run at once either way).
	ParallelToolCalls *bool
}

// Tool is a function the model may call, and the Orloj call that serves it.
type Tool struct {
	Name        string          // what the model calls it: [a-zA-Z0-9_-], at most 64
	Description string          // what it does, for the model
	Parameters  json.RawMessage // JSON Schema of the arguments; nil: an empty object
	// Request builds the Orloj call for one call's arguments (JSON text,
	// as the model wrote them). An error is told to the model.
	Request func(args json.RawMessage) (orloj.Request, error)
	// Result turns the call's result into the text the model reads; nil
	// sends the result's JSON as it is.
	Result func(result json.RawMessage) (string, error)
}

// Message is one message of the conversation, in the model tool's shape.
type Message struct {
	Role       string     `json:"role"` // system, user, assistant or tool
	Content    string     `json:"content,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`   // assistant
	ToolCallID string     `json:"tool_call_id,omitempty"` // tool
}

// ToolCall is one function call a model asked for.
type ToolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"` // "function"
	Function FunctionCall `json:"function"`
}

// FunctionCall names the function and carries its arguments as JSON text.
type FunctionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Usage adds up the tokens of a Run's model turns.
type Usage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	CachedTokens        int64 `json:"cached_tokens,omitempty"`
	CacheCreationTokens int64 `json:"cache_creation_tokens,omitempty"`
}

// Result is what a Run ended with.
type Result struct {
	Content  string    // the model's final answer
	Messages []Message // the whole conversation, the final answer last
	Steps    int       // model turns taken
	Usage    Usage
}

type function struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters"`
}

type toolDef struct {
	Type     string   `json:"type"`
	Function function `json:"function"`
}

type modelParams struct {
	Endpoint          string    `json:"endpoint,omitempty"`
	Model             string    `json:"model,omitempty"`
	Messages          []Message `json:"messages"`
	Tools             []toolDef `json:"tools,omitempty"`
	ToolChoice        string    `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool     `json:"parallel_tool_calls,omitempty"`
	Temperature       *float64  `json:"temperature,omitempty"`
	MaxTokens         int       `json:"max_tokens,omitempty"`
}

type modelResult struct {
	Content      string     `json:"content"`
	ToolCalls    []ToolCall `json:"tool_calls"`
	FinishReason string     `json:"finish_reason"`
	Usage        *Usage     `json:"usage"`
}

// encoding/json learns these once per agent version in a reactor build.
var _ = orloj.Prepare(modelParams{}, modelResult{}, Message{})

// Run starts a conversation with input as the user's message.
func (a *Agent) Run(input string) (*Result, error) {
	return a.RunMessages([]Message{{Role: "user", Content: input}})
}

// RunMessages continues a conversation (the system prompt goes first).
func (a *Agent) RunMessages(msgs []Message) (*Result, error) {
	if err := a.check(); err != nil {
		return nil, err
	}
	conv := make([]Message, 0, len(msgs)+8)
	if a.System != "" {
		conv = append(conv, Message{Role: "system", Content: a.System})
	}
	conv = append(conv, msgs...)
	res := &Result{}
	maxSteps := a.MaxSteps
	if maxSteps <= 0 {
		maxSteps = DefaultMaxSteps
	}
	modelTool := a.ModelTool
	if modelTool == "" {
		modelTool = "model"
	}
	defs := a.toolDefs()
	for res.Steps < maxSteps {
		p := modelParams{Endpoint: a.Endpoint, Model: a.Model, Messages: conv, Tools: defs,
			ParallelToolCalls: a.ParallelToolCalls, Temperature: a.Temperature, MaxTokens: a.MaxTokens}
		if len(defs) > 0 {
			p.ToolChoice = "auto"
			if res.Steps == maxSteps-1 {
				p.ToolChoice = "none" // the last turn must answer
			}
		}
		var out modelResult
		if err := orloj.CallInto(modelTool, p, &out); err != nil {
			return res, fmt.Errorf("agent: step %d: %w", res.Steps+1, err)
		}
		res.Steps++
		res.Usage.add(out.Usage)
		conv = append(conv, Message{Role: "assistant", Content: out.Content, ToolCalls: out.ToolCalls})
		if len(out.ToolCalls) == 0 {
			res.Content, res.Messages = out.Content, conv
			return res, nil
		}
		replies, err := a.callTools(out.ToolCalls)
		if err != nil {
			res.Messages = conv
			return res, fmt.Errorf("agent: step %d: %w", res.Steps, err)
		}
		conv = append(conv, replies...)
	}
	res.Messages = conv
	return res, fmt.Errorf("%w: the model still called tools after %d turns: %w", ErrMaxSteps, maxSteps, orloj.ErrToolError)
}

func (a *Agent) check() error {
	seen := map[string]bool{}
	for i, t := range a.Tools {
		if !validName(t.Name) {
			return fmt.Errorf("agent: tool %d: name %q: want 1 to 64 of [a-zA-Z0-9_-]: %w", i, t.Name, orloj.ErrInvalidArgument)
		}
		if seen[t.Name] {
			return fmt.Errorf("agent: tool %q declared twice: %w", t.Name, orloj.ErrInvalidArgument)
		}
		seen[t.Name] = true
		if t.Request == nil {
			return fmt.Errorf("agent: tool %q has no Request: %w", t.Name, orloj.ErrInvalidArgument)
		}
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return false
		}
	}
	return true
}

func (a *Agent) toolDefs() []toolDef {
	defs := make([]toolDef, 0, len(a.Tools))
	for _, t := range a.Tools {
		params := t.Parameters
		if len(params) == 0 {
			params = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		defs = append(defs, toolDef{Type: "function", Function: function{Name: t.Name, Description: t.Description, Parameters: params}})
	}
	return defs
}

func (a *Agent) tool(name string) *Tool {
	for i := range a.Tools {
		if a.Tools[i].Name == name {
			return &a.Tools[i]
		}
	}
	return nil
}

// callTools makes one turn's tool calls at once and returns the tool
// messages, in the order the model asked. A call that cannot be made, or
// that failed for good, becomes a message the model reads; what the host
// must handle (transient, in doubt, budget) ends the turn with an error.
func (a *Agent) callTools(calls []ToolCall) ([]Message, error) {
	replies := make([]Message, len(calls))
	var reqs []orloj.Request
	var at []int // reqs[k] answers calls[at[k]]
	for i, c := range calls {
		replies[i] = Message{Role: "tool", ToolCallID: c.ID}
		t := a.tool(c.Function.Name)
		if t == nil {
			replies[i].Content = fmt.Sprintf("error: there is no tool named %q", c.Function.Name)
			continue
		}
		args := json.RawMessage(c.Function.Arguments)
		if len(args) == 0 {
			args = json.RawMessage("{}")
		}
		if !json.Valid(args) {
			replies[i].Content = fmt.Sprintf("error: the arguments of %s are not JSON", c.Function.Name)
			continue
		}
		req, err := t.Request(args)
		if err != nil {
			replies[i].Content = fmt.Sprintf("error: %s: %v", c.Function.Name, err)
			continue
		}
		reqs, at = append(reqs, req), append(at, i)
	}
	if len(reqs) == 0 {
		return replies, nil
	}
	var out []orloj.Response
	for start := 0; start < len(reqs); start += abi.MaxBatchCalls {
		part, err := orloj.CallAll(reqs[start:min(start+abi.MaxBatchCalls, len(reqs))]...)
		if err != nil {
			return nil, err
		}
		out = append(out, part...)
	}
	for k, r := range out {
		i := at[k]
		name := calls[i].Function.Name
		if r.Err != nil {
			if mustStop(r.Err) {
				return nil, fmt.Errorf("tool %s: %w", name, r.Err)
			}
			replies[i].Content = "error: " + r.Err.Error()
			continue
		}
		text := string(r.Result)
		if t := a.tool(name); t.Result != nil {
			s, err := t.Result(r.Result)
			if err != nil {
				s = fmt.Sprintf("error: %s: %v", name, err)
			}
			text = s
		}
		replies[i].Content = text
	}
	return replies, nil
}

// mustStop reports whether a tool call's error is the host's to handle
// rather than the model's to read.
func mustStop(err error) bool {
	for _, st := range []abi.Status{orloj.ErrTransient, orloj.ErrInDoubt, orloj.ErrBudgetExceeded, orloj.ErrFault} {
		if errors.Is(err, st) {
			return true
		}
	}
	return false
}

func (u *Usage) add(v *Usage) {
	if v == nil {
		return
	}
	u.PromptTokens += v.PromptTokens
	u.CompletionTokens += v.CompletionTokens
	u.CachedTokens += v.CachedTokens
	u.CacheCreationTokens += v.CacheCreationTokens
}
