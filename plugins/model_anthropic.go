package plugins

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/orloj/orloj/abi"
)

// This file speaks Anthropic's Messages API: the guest's chat-completions
// params mapped onto it, and its answer mapped back, so a guest need not
// know which provider an endpoint is.

// anthropicVersion is the API version every request names.
const anthropicVersion = "2023-06-01"

type anthropicReq struct {
	Model         string               `json:"model"`
	MaxTokens     int64                `json:"max_tokens"`
	System        any                  `json:"system,omitempty"` // a string, or text blocks
	Messages      []anthropicMessage   `json:"messages"`
	Tools         []anthropicTool      `json:"tools,omitempty"`
	ToolChoice    *anthropicToolChoice `json:"tool_choice,omitempty"`
	Temperature   *float64             `json:"temperature,omitempty"`
	TopP          *float64             `json:"top_p,omitempty"`
	StopSequences []string             `json:"stop_sequences,omitempty"`
}

type anthropicMessage struct {
	Role    string `json:"role"`
	Content any    `json:"content"` // a string, or []anthropicBlock

	blocks []anthropicBlock
	plain  *string // the message is this one string, sent as such
	tools  bool    // the message carries tool results
}

type anthropicBlock struct {
	Type      string           `json:"type"`
	Text      string           `json:"text,omitempty"`
	ID        string           `json:"id,omitempty"`
	Name      string           `json:"name,omitempty"`
	Input     json.RawMessage  `json:"input,omitempty"`
	ToolUseID string           `json:"tool_use_id,omitempty"`
	Content   any              `json:"content,omitempty"` // a tool result's: a string, or text blocks
	Source    *anthropicSource `json:"source,omitempty"`

	CacheControl *cacheControl `json:"cache_control,omitempty"`
}

// cacheControl marks the end of a prompt prefix Anthropic may cache.
type cacheControl struct {
	Type string `json:"type"`
}

var ephemeral = &cacheControl{Type: "ephemeral"}

type anthropicSource struct {
	Type      string `json:"type"` // base64 or url
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
}

type anthropicTool struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema"`

	CacheControl *cacheControl `json:"cache_control,omitempty"`
}

type anthropicToolChoice struct {
	Type                   string `json:"type"`
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse bool   `json:"disable_parallel_tool_use,omitempty"`
}

// emptySchema is the input schema of a function declared without parameters.
var emptySchema = json.RawMessage(`{"type":"object","properties":{}}`)

func anthropicRequest(p modelParams, ep *modelEndpoint) (wireRequest, error) {
	refuse := func(field, why string) error {
		return invalidf("%s: %s with the anthropic provider (endpoint %q)", field, why, ep.name)
	}
	if p.Seed != nil {
		return wireRequest{}, refuse("seed", "not supported")
	}
	if p.ResponseFormat != nil && p.ResponseFormat.Type != "text" {
		return wireRequest{}, refuse("response_format", "only type text is supported")
	}
	if p.Temperature != nil && *p.Temperature > 1 {
		return wireRequest{}, refuse("temperature "+strconv.FormatFloat(*p.Temperature, 'g', -1, 64), "want 0..1")
	}
	r := anthropicReq{Model: p.Model, MaxTokens: ep.maxTokens, Temperature: p.Temperature, TopP: p.TopP, StopSequences: p.stops}
	switch {
	case p.MaxCompletionTokens != nil:
		r.MaxTokens = *p.MaxCompletionTokens
	case p.MaxTokens != nil:
		r.MaxTokens = *p.MaxTokens
	}

	var system []anthropicBlock
	for i, m := range p.Messages {
		at := "messages[" + strconv.Itoa(i) + "]"
		if m.Name != "" {
			return wireRequest{}, refuse(at+".name", "not supported")
		}
		switch m.Role {
		case roleSystem, roleDeveloper:
			// Anthropic has one system prompt, before the conversation: every
			// system message goes there, in order.
			for _, pt := range m.parts {
				if *pt.Text != "" {
					system = append(system, anthropicBlock{Type: partText, Text: *pt.Text})
				}
			}
		case roleUser:
			blocks, err := anthropicContent(at, m.parts)
			if err != nil {
				return wireRequest{}, err
			}
			// Text after tool results joins their message: Anthropic wants
			// the results first in the user turn that follows the tool use.
			if last := lastMessage(r.Messages); last != nil && last.tools {
				last.blocks = append(last.blocks, blocks...)
				continue
			}
			msg := anthropicMessage{Role: roleUser, blocks: blocks}
			if len(m.parts) == 1 && m.Content[0] == '"' {
				msg.plain = m.parts[0].Text
			}
			r.Messages = append(r.Messages, msg)
		case roleAssistant:
			blocks, err := anthropicContent(at, m.parts)
			if err != nil {
				return wireRequest{}, err
			}
			for j, tc := range m.ToolCalls {
				input, err := toolInput(tc.Function.Arguments)
				if err != nil {
					return wireRequest{}, invalidf("%s.tool_calls[%d].function.arguments: %v", at, j, err)
				}
				blocks = append(blocks, anthropicBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
			}
			msg := anthropicMessage{Role: roleAssistant, blocks: blocks}
			if len(m.ToolCalls) == 0 && len(m.parts) == 1 && m.Content[0] == '"' {
				msg.plain = m.parts[0].Text
			}
			r.Messages = append(r.Messages, msg)
		case roleTool:
			res := anthropicBlock{Type: "tool_result", ToolUseID: m.ToolCallID}
			if m.Content[0] == '"' {
				res.Content = *m.parts[0].Text
			} else {
				blocks, err := anthropicContent(at, m.parts)
				if err != nil {
					return wireRequest{}, err
				}
				if len(blocks) > 0 {
					res.Content = blocks
				}
			}
			// Consecutive tool messages answer one assistant turn: one user
			// message carries all their results.
			if last := lastMessage(r.Messages); last != nil && last.tools && last.onlyToolResults() {
				last.blocks = append(last.blocks, res)
				continue
			}
			r.Messages = append(r.Messages, anthropicMessage{Role: roleUser, blocks: []anthropicBlock{res}, tools: true})
		}
	}
	for _, t := range p.Tools {
		schema := t.Function.Parameters
		if len(schema) == 0 {
			schema = emptySchema
		}
		r.Tools = append(r.Tools, anthropicTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if ep.cache {
		markCache(&r, system)
	}
	for i := range r.Messages {
		m := &r.Messages[i]
		if m.plain != nil {
			m.Content = *m.plain
		} else {
			m.Content = m.blocks
		}
	}
	switch {
	case len(system) == 1 && system[0].CacheControl == nil:
		r.System = system[0].Text
	case len(system) > 0:
		r.System = system
	}
	if len(r.Tools) > 0 {
		r.ToolChoice = anthropicChoice(p.choice, p.ParallelToolCalls)
	}

	body, err := encodeRequest(r)
	if err != nil {
		return wireRequest{}, err
	}
	h := http.Header{}
	h.Set("anthropic-version", anthropicVersion)
	if ep.apiKey != "" {
		h.Set("x-api-key", ep.apiKey)
	}
	return wireRequest{body: body, header: h}, nil
}

// markCache puts cache breakpoints (three of Anthropic's four) at the end
// of the tools, of the system prompt and of the conversation: Anthropic
// caches the prefix up to each, and the next turn of a loop, which repeats
// all three and adds to the conversation, reads them back from the cache.
func markCache(r *anthropicReq, system []anthropicBlock) {
	if n := len(r.Tools); n > 0 {
		r.Tools[n-1].CacheControl = ephemeral
	}
	if n := len(system); n > 0 {
		system[n-1].CacheControl = ephemeral
	}
	if n := len(r.Messages); n > 0 {
		m := &r.Messages[n-1]
		if m.plain != nil {
			if *m.plain == "" {
				return // Anthropic refuses an empty text block; nothing to mark
			}
			m.blocks, m.plain = []anthropicBlock{{Type: partText, Text: *m.plain}}, nil
		}
		if k := len(m.blocks); k > 0 {
			m.blocks[k-1].CacheControl = ephemeral
		}
	}
}

func lastMessage(msgs []anthropicMessage) *anthropicMessage {
	if len(msgs) == 0 || msgs[len(msgs)-1].Role != roleUser {
		return nil
	}
	return &msgs[len(msgs)-1]
}

func (m *anthropicMessage) onlyToolResults() bool {
	for _, b := range m.blocks {
		if b.Type != "tool_result" {
			return false
		}
	}
	return true
}

// anthropicChoice maps tool_choice and parallel_tool_calls, which Anthropic
// folds into one object; nil leaves Anthropic's default (auto, parallel).
func anthropicChoice(c choice, parallel *bool) *anthropicToolChoice {
	var tc anthropicToolChoice
	switch c.mode {
	case choiceNone:
		return &anthropicToolChoice{Type: "none"}
	case choiceRequired:
		tc.Type = "any"
	case choiceFunction:
		tc = anthropicToolChoice{Type: "tool", Name: c.function}
	default:
		tc.Type = "auto"
	}
	tc.DisableParallelToolUse = parallel != nil && !*parallel
	if c.mode == "" && !tc.DisableParallelToolUse {
		return nil
	}
	return &tc
}

// anthropicContent maps content parts to blocks, leaving out empty text,
// which Anthropic refuses.
func anthropicContent(at string, parts []contentPart) ([]anthropicBlock, error) {
	var blocks []anthropicBlock
	for k, pt := range parts {
		switch pt.Type {
		case partText:
			if *pt.Text != "" {
				blocks = append(blocks, anthropicBlock{Type: partText, Text: *pt.Text})
			}
		case partImage:
			src, err := imageSource(pt.ImageURL.URL)
			if err != nil {
				return nil, invalidf("%s.content[%d].image_url.url: %v", at, k, err)
			}
			blocks = append(blocks, anthropicBlock{Type: "image", Source: src})
		}
	}
	return blocks, nil
}

// imageSource maps an image URL: a data URL becomes base64 data, an http
// or https URL stays a URL.
func imageSource(u string) (*anthropicSource, error) {
	if rest, ok := strings.CutPrefix(u, "data:"); ok {
		media, data, ok := strings.Cut(rest, ";base64,")
		if !ok || media == "" || data == "" {
			return nil, invalidf("a data URL must be data:MEDIA_TYPE;base64,DATA")
		}
		return &anthropicSource{Type: "base64", MediaType: media, Data: data}, nil
	}
	if strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://") {
		return &anthropicSource{Type: "url", URL: u}, nil
	}
	return nil, invalidf("want an http, https or data URL")
}

// toolInput parses a tool call's arguments, a JSON object as a string, into
// the object Anthropic's tool_use carries; "" is {}.
func toolInput(args string) (json.RawMessage, error) {
	if strings.TrimSpace(args) == "" {
		return json.RawMessage(`{}`), nil
	}
	if !isJSONObject(json.RawMessage(args)) {
		return nil, invalidf("want a JSON object in a string")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(args)); err != nil {
		return nil, invalidf("want a JSON object in a string")
	}
	return buf.Bytes(), nil
}

type anthropicResponse struct {
	Type    string `json:"type"`
	Model   string `json:"model"`
	Content []struct {
		Type  string          `json:"type"`
		Text  string          `json:"text"`
		ID    string          `json:"id"`
		Name  string          `json:"name"`
		Input json.RawMessage `json:"input"`
	} `json:"content"`
	StopReason string `json:"stop_reason"`
	Usage      *struct {
		InputTokens              int64 `json:"input_tokens"`
		OutputTokens             int64 `json:"output_tokens"`
		CacheCreationInputTokens int64 `json:"cache_creation_input_tokens"`
		CacheReadInputTokens     int64 `json:"cache_read_input_tokens"`
	} `json:"usage"`
}

// anthropicFinish maps stop_reason to OpenAI's finish_reason; a reason this
// code does not know passes through as it came.
var anthropicFinish = map[string]string{
	"end_turn":                      finishStop,
	"stop_sequence":                 finishStop,
	"tool_use":                      finishToolCalls,
	"max_tokens":                    finishLength,
	"model_context_window_exceeded": finishLength,
	"refusal":                       finishContentFilter,
}

func parseAnthropicResponse(body []byte) (modelResult, error) {
	var r anthropicResponse
	if err := decodeResponse(body, &r, "a message"); err != nil {
		return modelResult{}, err
	}
	if r.Type != "message" {
		return modelResult{}, abi.Errorf(abi.StatusToolError, "response is not a message (type %s)", excerpt([]byte(r.Type)))
	}
	res := modelResult{Model: r.Model, FinishReason: r.StopReason}
	if f, ok := anthropicFinish[r.StopReason]; ok {
		res.FinishReason = f
	}
	var text strings.Builder
	for i, b := range r.Content {
		switch b.Type {
		case "text":
			// Blocks are pieces of one answer (citations split a sentence),
			// so they join with nothing between.
			text.WriteString(b.Text)
		case "tool_use":
			args := "{}"
			if len(bytes.TrimSpace(b.Input)) > 0 {
				var buf bytes.Buffer
				if err := json.Compact(&buf, b.Input); err != nil {
					return modelResult{}, statusErrorf(abi.StatusToolError, err, "content[%d].input", i)
				}
				args = buf.String()
			}
			res.ToolCalls = append(res.ToolCalls, toolCall{ID: b.ID, Type: "function", Function: functionCall{Name: b.Name, Arguments: args}})
		}
	}
	res.Content = text.String()
	if u := r.Usage; u != nil {
		// prompt_tokens counts every input token, cached or not, as OpenAI's
		// does, so a budget of prompt + completion means the same whatever
		// the provider.
		res.Usage = &Usage{
			PromptTokens:        u.InputTokens + u.CacheReadInputTokens + u.CacheCreationInputTokens,
			CompletionTokens:    u.OutputTokens,
			CachedTokens:        u.CacheReadInputTokens,
			CacheCreationTokens: u.CacheCreationInputTokens,
		}
	}
	return res, nil
}
