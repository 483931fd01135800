package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/orloj/orloj/abi"
)

// ModelToolName is the default name of the model tool.
const ModelToolName = "model"

// DefaultModelTimeout is longer than DefaultHTTPTimeout because a completion
// of a few thousand tokens routinely takes a minute.
const DefaultModelTimeout = 2 * time.Minute

// ModelConfig configures a model tool.
type ModelConfig struct {
	// Name is the tool's name; default ModelToolName. Register several to
	// offer several endpoints.
	Name string
	// BaseURL is the API root, e.g. "https://api.openai.com/v1" or
	// "http://127.0.0.1:8080/v1"; the tool POSTs to BaseURL/chat/completions.
	BaseURL string
	// APIKey is sent as "Authorization: Bearer APIKey"; empty sends none.
	APIKey string
	// Model is the model asked for when a call does not name one.
	Model string
	// Timeout bounds one completion; default DefaultModelTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the API's response; default
	// DefaultMaxResponseBytes, at most abi.MaxResponseBytes.
	MaxResponseBytes int64
	// Client sends the requests; default a client of its own.
	Client *http.Client
}

// Validate reports the first invalid field of c, by name.
func (c ModelConfig) Validate() error {
	if c.Name != "" {
		if err := abi.ValidToolName(c.Name); err != nil {
			return fmt.Errorf("ModelConfig.Name: %w", err)
		}
	}
	if c.BaseURL == "" {
		return errors.New("ModelConfig.BaseURL: required")
	}
	u, err := url.Parse(c.BaseURL)
	if err != nil {
		return fmt.Errorf("ModelConfig.BaseURL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("ModelConfig.BaseURL: %q is not an absolute http or https URL", c.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("ModelConfig.BaseURL: %q has a query or fragment", c.BaseURL)
	}
	if c.Model == "" {
		return errors.New("ModelConfig.Model: required")
	}
	if strings.ContainsAny(c.APIKey, "\r\n") {
		return errors.New("ModelConfig.APIKey: has a line break")
	}
	if c.Timeout < 0 {
		return fmt.Errorf("ModelConfig.Timeout: %s is negative", c.Timeout)
	}
	if c.MaxResponseBytes < 0 || c.MaxResponseBytes > abi.MaxResponseBytes {
		return fmt.Errorf("ModelConfig.MaxResponseBytes: %d is outside 0..%d (0 means %d)",
			c.MaxResponseBytes, abi.MaxResponseBytes, DefaultMaxResponseBytes)
	}
	return nil
}

// ModelTool asks an OpenAI-compatible chat-completions API for a completion.
// Params:
//
//	{"messages": [{"role": "system|user|assistant", "content": "..."}],
//	 "temperature": 0.2, "max_tokens": 512, "model": "optional override"}
//
// Result:
//
//	{"content": "...", "model": "...", "finish_reason": "stop",
//	 "usage": {"prompt_tokens": N, "completion_tokens": N}}
//
// and Result.Usage, so budgets see the tokens. Its semantics are Idempotent:
// asking again is harmless but costs tokens, and the ledger makes that rare.
// A completion is not deterministic, so what a task saw is what the ledger
// recorded, not what a second request would say.
type ModelTool struct {
	name     string
	endpoint string
	shown    string // endpoint with any password in it redacted, for messages
	apiKey   string
	model    string
	timeout  time.Duration
	max      int64
	client   *http.Client
}

// NewModel returns a model tool configured by cfg.
func NewModel(cfg ModelConfig) (*ModelTool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &ModelTool{
		name:     cfg.Name,
		endpoint: strings.TrimSuffix(cfg.BaseURL, "/") + "/chat/completions",
		apiKey:   cfg.APIKey,
		model:    cfg.Model,
		timeout:  cfg.Timeout,
		max:      cfg.MaxResponseBytes,
		client:   cfg.Client,
	}
	if u, err := url.Parse(t.endpoint); err == nil {
		t.shown = u.Redacted()
	}
	if t.name == "" {
		t.name = ModelToolName
	}
	if t.timeout == 0 {
		t.timeout = DefaultModelTimeout
	}
	if t.max == 0 {
		t.max = DefaultMaxResponseBytes
	}
	if t.client == nil {
		t.client = &http.Client{Transport: newTransport()}
	}
	return t, nil
}

func (t *ModelTool) Name() string            { return t.name }
func (t *ModelTool) Semantics() Semantics    { return Idempotent }
func (t *ModelTool) Schema() json.RawMessage { return modelSchema }

var modelSchema = json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "model",
  "description": "Ask a chat model for a completion.",
  "type": "object",
  "properties": {
    "messages": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "properties": {
          "role": {"enum": ["system", "user", "assistant"]},
          "content": {"type": "string"}
        },
        "required": ["role", "content"],
        "additionalProperties": false
      }
    },
    "temperature": {"type": "number", "minimum": 0, "maximum": 2},
    "max_tokens": {"type": "integer", "minimum": 1},
    "model": {"type": "string", "minLength": 1}
  },
  "required": ["messages"],
  "additionalProperties": false
}`)

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// modelParams is both the tool's params and, with Model filled in, the
// request body: the two are the same shape on purpose, so nothing the guest
// said is lost in translation.
type modelParams struct {
	Model       string        `json:"model,omitempty"`
	Messages    []chatMessage `json:"messages"`
	Temperature *float64      `json:"temperature,omitempty"`
	MaxTokens   *int64        `json:"max_tokens,omitempty"`
}

type chatResponse struct {
	Model   string `json:"model"`
	Choices []struct {
		Message struct {
			Content *string `json:"content"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage *Usage `json:"usage"`
}

type modelResult struct {
	Content      string `json:"content"`
	Model        string `json:"model"`
	FinishReason string `json:"finish_reason,omitempty"`
	Usage        *Usage `json:"usage,omitempty"`
}

// Invoke asks for one completion.
func (t *ModelTool) Invoke(ctx context.Context, call Call) (Result, error) {
	p, err := parseModelParams(call.Params)
	if err != nil {
		return Result{}, err
	}
	if p.Model == "" {
		p.Model = t.model
	}
	reqBody, err := json.Marshal(p)
	if err != nil {
		return Result{}, statusErrorf(abi.StatusInvalidArgument, err, "encode request")
	}
	what := "POST " + t.shown

	callCtx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, t.endpoint, bytes.NewReader(reqBody))
	if err != nil {
		return Result{}, statusErrorf(abi.StatusToolError, err, "%s", what)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Idempotency-Key", call.ID)
	if t.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+t.apiKey)
	}

	resp, err := t.client.Do(req)
	if err != nil {
		return Result{}, transportError(ctx, t.timeout, what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return Result{}, responseError(resp, what, apiErrorDetail(resp))
	}
	body, err := readCapped(resp.Body, t.max)
	if errors.Is(err, errResponseTooLarge) {
		return Result{}, abi.Errorf(abi.StatusToolError, "%s: response larger than %d bytes", what, t.max)
	}
	if err != nil {
		return Result{}, transportError(ctx, t.timeout, what+": read response", err)
	}

	// A 200 with a body we cannot read is recorded as a tool error: the
	// endpoint is not speaking the protocol, and asking again would burn
	// tokens for the same answer.
	var cr chatResponse
	if err := json.Unmarshal(body, &cr); err != nil {
		return Result{}, statusErrorf(abi.StatusToolError, err, "%s: response is not a chat completion (%s)", what, excerpt(body))
	}
	if len(cr.Choices) == 0 {
		return Result{}, abi.Errorf(abi.StatusToolError, "%s: response has no choices", what)
	}
	c := cr.Choices[0]
	res := modelResult{Model: cr.Model, FinishReason: c.FinishReason, Usage: cr.Usage}
	if c.Message.Content != nil {
		res.Content = *c.Message.Content
	}
	if res.Model == "" {
		res.Model = p.Model
	}
	out, err := marshalBody(res)
	if err != nil {
		return Result{}, annotate(err, "%s", what)
	}
	return Result{Body: out, Usage: cr.Usage}, nil
}

var chatRoles = map[string]bool{"system": true, "user": true, "assistant": true}

func parseModelParams(params json.RawMessage) (modelParams, error) {
	var p modelParams
	if err := decodeParams(params, &p); err != nil {
		return p, err
	}
	if len(p.Messages) == 0 {
		return p, abi.Errorf(abi.StatusInvalidArgument, "messages: at least one is required")
	}
	for i, m := range p.Messages {
		if !chatRoles[m.Role] {
			return p, abi.Errorf(abi.StatusInvalidArgument, "messages[%d].role %q: want system, user or assistant", i, m.Role)
		}
	}
	if p.Temperature != nil && (math.IsNaN(*p.Temperature) || *p.Temperature < 0 || *p.Temperature > 2) {
		return p, abi.Errorf(abi.StatusInvalidArgument, "temperature %v: want 0..2", *p.Temperature)
	}
	if p.MaxTokens != nil && *p.MaxTokens < 1 {
		return p, abi.Errorf(abi.StatusInvalidArgument, "max_tokens %d: want at least 1", *p.MaxTokens)
	}
	return p, nil
}

// apiErrorDetail extracts the message of an OpenAI-style error body
// ({"error": {"message": "..."}}), or an excerpt of whatever the body is.
func apiErrorDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // best effort: the status already says what failed
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		return excerpt([]byte(e.Error.Message))
	}
	return excerpt(b)
}
