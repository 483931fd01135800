package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/orloj/orloj/abi"
)

// This file holds the model tool's params: OpenAI's chat-completions shape,
// provider-neutral, and every check made on them before any request is
// built. The guest's request is already bounded by abi.MaxRequestBytes;
// the counts below bound what a provider could not take anyway.

const (
	maxModelMessages  = 1000 // messages in one call
	maxModelTools     = 128  // OpenAI's own limit
	maxContentParts   = 256  // parts of one message's content
	maxToolCalls      = 128  // tool_calls of one assistant message
	maxStopSequences  = 4    // OpenAI's own limit
	maxToolDescBytes  = 16 << 10
	maxEndpointLength = 64
)

var functionNameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

func validFunctionName(s string) bool { return functionNameRE.MatchString(s) }

// modelParams is the tool's params. With Endpoint cleared and Model filled
// in, it is also the OpenAI request body: the two are the same shape on
// purpose, so nothing the guest said is lost in translation. The fields
// that take several JSON shapes (content, tool_choice, stop) stay raw and
// are checked by parseModelParams, which also fills the parsed views the
// Anthropic mapping reads.
type modelParams struct {
	Endpoint            string          `json:"endpoint,omitempty"`
	Model               string          `json:"model,omitempty"`
	Messages            []chatMessage   `json:"messages"`
	Tools               []chatTool      `json:"tools,omitempty"`
	ToolChoice          json.RawMessage `json:"tool_choice,omitempty"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat      *responseFormat `json:"response_format,omitempty"`
	Temperature         *float64        `json:"temperature,omitempty"`
	TopP                *float64        `json:"top_p,omitempty"`
	MaxTokens           *int64          `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens,omitempty"`
	Stop                json.RawMessage `json:"stop,omitempty"`
	Seed                *int64          `json:"seed,omitempty"`

	choice choice   // tool_choice, parsed
	stops  []string // stop, parsed
}

// Message roles. "developer" is OpenAI's newer name for "system".
const (
	roleSystem    = "system"
	roleDeveloper = "developer"
	roleUser      = "user"
	roleAssistant = "assistant"
	roleTool      = "tool"
)

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content,omitempty"`
	Name       string          `json:"name,omitempty"`
	ToolCalls  []toolCall      `json:"tool_calls,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`

	parts []contentPart // content, parsed: a string is one text part
}

// contentPart is one part of a message's content array.
type contentPart struct {
	Type     string    `json:"type"`
	Text     *string   `json:"text,omitempty"`
	ImageURL *imageURL `json:"image_url,omitempty"`
}

type imageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

const (
	partText  = "text"
	partImage = "image_url"
)

type toolCall struct {
	ID       string       `json:"id"`
	Type     string       `json:"type"`
	Function functionCall `json:"function"`
}

type functionCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

type chatTool struct {
	Type     string      `json:"type"`
	Function functionDef `json:"function"`
}

type functionDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

type responseFormat struct {
	Type       string            `json:"type"`
	JSONSchema *jsonSchemaFormat `json:"json_schema,omitempty"`
}

type jsonSchemaFormat struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// choice is tool_choice: a mode, and the function's name for choiceFunction.
type choice struct {
	mode     string
	function string
}

const (
	choiceAuto     = "auto"
	choiceNone     = "none"
	choiceRequired = "required"
	choiceFunction = "function"
)

func invalidf(format string, args ...any) error {
	return abi.Errorf(abi.StatusInvalidArgument, format, args...)
}

func parseModelParams(params json.RawMessage) (modelParams, error) {
	var p modelParams
	if err := decodeParams(params, &p); err != nil {
		return p, err
	}
	if p.Endpoint != "" && !validFunctionName(p.Endpoint) {
		return p, invalidf("endpoint %q: want 1 to %d letters, digits, _ or -", excerptString(p.Endpoint), maxEndpointLength)
	}
	if err := checkMessages(p.Messages); err != nil {
		return p, err
	}
	if err := checkTools(p.Tools); err != nil {
		return p, err
	}
	var err error
	if p.choice, err = parseToolChoice(p.ToolChoice, p.Tools); err != nil {
		return p, err
	}
	if p.ParallelToolCalls != nil && len(p.Tools) == 0 {
		return p, invalidf("parallel_tool_calls: only allowed with tools")
	}
	if err := checkResponseFormat(p.ResponseFormat); err != nil {
		return p, err
	}
	if t := p.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > 2) {
		return p, invalidf("temperature %v: want 0..2", *t)
	}
	if t := p.TopP; t != nil && (math.IsNaN(*t) || *t < 0 || *t > 1) {
		return p, invalidf("top_p %v: want 0..1", *t)
	}
	if p.MaxTokens != nil && *p.MaxTokens < 1 {
		return p, invalidf("max_tokens %d: want at least 1", *p.MaxTokens)
	}
	if p.MaxCompletionTokens != nil && *p.MaxCompletionTokens < 1 {
		return p, invalidf("max_completion_tokens %d: want at least 1", *p.MaxCompletionTokens)
	}
	if p.stops, err = parseStop(p.Stop); err != nil {
		return p, err
	}
	return p, nil
}

func checkMessages(msgs []chatMessage) error {
	if len(msgs) == 0 {
		return invalidf("messages: at least one is required")
	}
	if len(msgs) > maxModelMessages {
		return invalidf("messages: %d of them, limit %d", len(msgs), maxModelMessages)
	}
	for i := range msgs {
		if err := checkMessage(i, &msgs[i]); err != nil {
			return err
		}
	}
	return nil
}

func checkMessage(i int, m *chatMessage) error {
	at := func(field string) string { return "messages[" + strconv.Itoa(i) + "]" + field }
	switch m.Role {
	case roleSystem, roleDeveloper, roleUser, roleAssistant, roleTool:
	default:
		return invalidf("%s %q: want system, developer, user, assistant or tool", at(".role"), excerptString(m.Role))
	}
	if m.Role != roleAssistant && len(m.ToolCalls) > 0 {
		return invalidf("%s: only assistant messages carry tool calls", at(".tool_calls"))
	}
	if m.Role == roleTool {
		if m.ToolCallID == "" {
			return invalidf("%s: required in a tool message", at(".tool_call_id"))
		}
		if m.Name != "" {
			return invalidf("%s: not allowed in a tool message", at(".name"))
		}
	} else if m.ToolCallID != "" {
		return invalidf("%s: only tool messages carry one", at(".tool_call_id"))
	}
	null := len(m.Content) == 0 || string(m.Content) == "null"
	switch {
	case null && m.Role == roleAssistant && len(m.ToolCalls) > 0:
	case null:
		return invalidf("%s: required (a string or an array of parts)", at(".content"))
	default:
		parts, err := parseContent(at(".content"), m.Role, m.Content)
		if err != nil {
			return err
		}
		m.parts = parts
	}
	if len(m.ToolCalls) > maxToolCalls {
		return invalidf("%s: %d of them, limit %d", at(".tool_calls"), len(m.ToolCalls), maxToolCalls)
	}
	for j := range m.ToolCalls {
		tc := &m.ToolCalls[j]
		tat := at(".tool_calls[" + strconv.Itoa(j) + "]")
		switch {
		case tc.ID == "":
			return invalidf("%s.id: required", tat)
		case tc.Type == "":
			tc.Type = "function" // the only type; sent explicitly, as the API wants
		case tc.Type != "function":
			return invalidf("%s.type %q: want function", tat, excerptString(tc.Type))
		}
		if !validFunctionName(tc.Function.Name) {
			return invalidf("%s.function.name %q: want 1 to 64 letters, digits, _ or -", tat, excerptString(tc.Function.Name))
		}
	}
	return nil
}

// parseContent checks a message's content: a string, or an array of parts
// (text for every role, image_url for user messages).
func parseContent(at, role string, raw json.RawMessage) ([]contentPart, error) {
	raw = bytes.TrimSpace(raw)
	switch {
	case len(raw) > 0 && raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalidf("%s: %v", at, err)
		}
		return []contentPart{{Type: partText, Text: &s}}, nil
	case len(raw) > 0 && raw[0] == '[':
	default:
		return nil, invalidf("%s: want a string or an array of parts", at)
	}
	var parts []contentPart
	if err := decodeStrict(raw, &parts); err != nil {
		return nil, invalidf("%s: %v", at, err)
	}
	if len(parts) == 0 {
		return nil, invalidf("%s: an empty array; want at least one part", at)
	}
	if len(parts) > maxContentParts {
		return nil, invalidf("%s: %d parts, limit %d", at, len(parts), maxContentParts)
	}
	for k, pt := range parts {
		pat := at + "[" + strconv.Itoa(k) + "]"
		switch pt.Type {
		case partText:
			if pt.Text == nil || pt.ImageURL != nil {
				return nil, invalidf("%s: a text part has text and nothing else", pat)
			}
		case partImage:
			if role != roleUser {
				return nil, invalidf("%s: image_url parts are for user messages", pat)
			}
			if pt.ImageURL == nil || pt.ImageURL.URL == "" || pt.Text != nil {
				return nil, invalidf("%s: an image_url part has image_url.url and nothing else", pat)
			}
		default:
			return nil, invalidf("%s.type %q: want text or image_url", pat, excerptString(pt.Type))
		}
	}
	return parts, nil
}

func checkTools(tools []chatTool) error {
	if len(tools) > maxModelTools {
		return invalidf("tools: %d of them, limit %d", len(tools), maxModelTools)
	}
	seen := map[string]bool{}
	for i, t := range tools {
		at := "tools[" + strconv.Itoa(i) + "]"
		if t.Type != "function" {
			return invalidf("%s.type %q: want function", at, excerptString(t.Type))
		}
		f := t.Function
		if !validFunctionName(f.Name) {
			return invalidf("%s.function.name %q: want 1 to 64 letters, digits, _ or -", at, excerptString(f.Name))
		}
		if seen[f.Name] {
			return invalidf("%s.function.name %q: declared twice", at, f.Name)
		}
		seen[f.Name] = true
		if len(f.Description) > maxToolDescBytes {
			return invalidf("%s.function.description: %d bytes, limit %d", at, len(f.Description), maxToolDescBytes)
		}
		if len(f.Parameters) > 0 && !isJSONObject(f.Parameters) {
			return invalidf("%s.function.parameters: want a JSON Schema object", at)
		}
	}
	return nil
}

func parseToolChoice(raw json.RawMessage, tools []chatTool) (choice, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return choice{}, nil
	}
	var c choice
	if raw[0] == '"' {
		if err := json.Unmarshal(raw, &c.mode); err != nil {
			return c, invalidf("tool_choice: %v", err)
		}
		switch c.mode {
		case choiceAuto, choiceNone, choiceRequired:
		default:
			return c, invalidf("tool_choice %q: want auto, none, required or {\"type\":\"function\",\"function\":{\"name\":...}}", excerptString(c.mode))
		}
	} else {
		var o struct {
			Type     string `json:"type"`
			Function struct {
				Name string `json:"name"`
			} `json:"function"`
		}
		if err := decodeStrict(raw, &o); err != nil {
			return c, invalidf("tool_choice: %v", err)
		}
		if o.Type != "function" {
			return c, invalidf("tool_choice.type %q: want function", excerptString(o.Type))
		}
		c = choice{mode: choiceFunction, function: o.Function.Name}
		found := false
		for _, t := range tools {
			found = found || t.Function.Name == c.function
		}
		if !found {
			return c, invalidf("tool_choice.function.name %q: not among tools", excerptString(c.function))
		}
	}
	if c.mode != choiceNone && len(tools) == 0 {
		return c, invalidf("tool_choice %q: only allowed with tools", c.mode)
	}
	return c, nil
}

func checkResponseFormat(rf *responseFormat) error {
	if rf == nil {
		return nil
	}
	switch rf.Type {
	case "text", "json_object":
		if rf.JSONSchema != nil {
			return invalidf("response_format.json_schema: only with type json_schema")
		}
	case "json_schema":
		s := rf.JSONSchema
		if s == nil {
			return invalidf("response_format.json_schema: required with type json_schema")
		}
		if !validFunctionName(s.Name) {
			return invalidf("response_format.json_schema.name %q: want 1 to 64 letters, digits, _ or -", excerptString(s.Name))
		}
		if len(s.Schema) > 0 && !isJSONObject(s.Schema) {
			return invalidf("response_format.json_schema.schema: want a JSON Schema object")
		}
	default:
		return invalidf("response_format.type %q: want text, json_object or json_schema", excerptString(rf.Type))
	}
	return nil
}

func parseStop(raw json.RawMessage) ([]string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var stops []string
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return nil, invalidf("stop: %v", err)
		}
		stops = []string{s}
	} else if err := json.Unmarshal(raw, &stops); err != nil {
		return nil, invalidf("stop: want a string or an array of up to %d strings", maxStopSequences)
	}
	if len(stops) > maxStopSequences {
		return nil, invalidf("stop: %d sequences, limit %d", len(stops), maxStopSequences)
	}
	for i, s := range stops {
		if s == "" {
			return nil, invalidf("stop[%d]: empty", i)
		}
	}
	return stops, nil
}

// decodeStrict decodes raw into v, refusing unknown fields; the error
// speaks JSON, not Go.
func decodeStrict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field == "" {
				return fmt.Errorf("got %s, want %s", te.Value, jsonTypeName(te.Type))
			}
			return fmt.Errorf("%s: got %s, want %s", te.Field, te.Value, jsonTypeName(te.Type))
		}
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

func isJSONObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	return json.Unmarshal(raw, &m) == nil
}

// excerptString cuts what a guest sent to a length fit for a message.
func excerptString(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
