package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/orloj/orloj/abi"
)

// ModelToolName is the default name of the model tool.
const ModelToolName = "model"

// DefaultModelTimeout is longer than DefaultHTTPTimeout because a completion
// of a few thousand tokens routinely takes a minute.
const DefaultModelTimeout = 2 * time.Minute

// DefaultModelEndpoint is the name of the endpoint ModelConfig's own
// BaseURL, APIKey and Model define: the one a call that names no endpoint
// is sent to.
const DefaultModelEndpoint = "default"

// DefaultModelMaxTokens is the max_tokens sent to a provider that requires
// one (Anthropic) when neither the call nor the endpoint gives one.
const DefaultModelMaxTokens = 4096

// ModelProvider is the wire format an endpoint speaks.
type ModelProvider string

const (
	// ProviderOpenAI is OpenAI's chat completions (POST BASE/chat/completions,
	// bearer key), also spoken by most self-hosted and proxy servers. It is
	// the default.
	ProviderOpenAI ModelProvider = "openai"
	// ProviderAnthropic is Anthropic's Messages API (POST BASE/v1/messages,
	// x-api-key).
	ProviderAnthropic ModelProvider = "anthropic"
)

// ModelProviders lists every provider, for messages and docs.
var ModelProviders = []ModelProvider{ProviderOpenAI, ProviderAnthropic}

// Valid reports whether p is a known provider; "" is not (it means
// ProviderOpenAI only where a config says so).
func (p ModelProvider) Valid() bool { return slices.Contains(ModelProviders, p) }

// defaultBaseURL is where a provider's own API lives.
func (p ModelProvider) defaultBaseURL() string {
	if p == ProviderAnthropic {
		return "https://api.anthropic.com"
	}
	return "https://api.openai.com/v1"
}

// ModelEndpoint is one model API the model tool can send a call to.
type ModelEndpoint struct {
	// Name is what a call's "endpoint" param names it by.
	Name string
	// Provider is the wire format; "" means ProviderOpenAI.
	Provider ModelProvider
	// BaseURL is the API root; "" means the provider's own
	// (https://api.openai.com/v1, https://api.anthropic.com). OpenAI's
	// requests go to BaseURL/chat/completions, Anthropic's to
	// BaseURL/v1/messages.
	BaseURL string
	// APIKey is the key sent with every request (a bearer token for OpenAI,
	// x-api-key for Anthropic); "" sends none. It never appears in an
	// error, a log line or a result.
	APIKey string
	// Model is the model asked for when a call does not name one.
	Model string
	// MaxTokens is the max_tokens sent to Anthropic when a call gives
	// neither max_tokens nor max_completion_tokens; 0 means
	// DefaultModelMaxTokens. OpenAI requests carry only what the call says.
	MaxTokens int64
	// PromptCache (Anthropic only) marks the tools, the system prompt and
	// the conversation so far as cacheable, so each turn of an agent loop
	// reads the previous turns from Anthropic's prompt cache instead of
	// paying for them in full again. OpenAI caches long prompts without
	// being asked.
	PromptCache bool
}

// Validate reports the first invalid field of e, by name.
func (e ModelEndpoint) Validate() error {
	if !validFunctionName(e.Name) {
		return fmt.Errorf("Name: %q: want 1 to 64 letters, digits, _ or -", e.Name)
	}
	if e.Provider != "" && !e.Provider.Valid() {
		return fmt.Errorf("Provider: %q: want one of %s", e.Provider, providerList())
	}
	if e.BaseURL != "" {
		u, err := url.Parse(e.BaseURL)
		if err != nil {
			// url.Error quotes the URL, and with it any password in it.
			return errors.New("BaseURL: does not parse as a URL")
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("BaseURL: %q is not an absolute http or https URL", u.Redacted())
		}
		if u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("BaseURL: %q has a query or fragment", u.Redacted())
		}
	}
	if e.Model == "" {
		return errors.New("Model: required")
	}
	if strings.ContainsAny(e.APIKey, "\r\n") {
		return errors.New("APIKey: has a line break")
	}
	if e.PromptCache && e.Provider != ProviderAnthropic {
		return errors.New("PromptCache: only for the anthropic provider (OpenAI caches prompts on its own)")
	}
	if e.MaxTokens < 0 {
		return fmt.Errorf("MaxTokens: %d is negative (0 means %d)", e.MaxTokens, DefaultModelMaxTokens)
	}
	return nil
}

func providerList() string {
	s := make([]string, len(ModelProviders))
	for i, p := range ModelProviders {
		s[i] = string(p)
	}
	return strings.Join(s, ", ")
}

// ModelConfig configures a model tool: one tool holding one or more named
// endpoints. BaseURL, APIKey, Model, Provider and MaxTokens define the
// endpoint named DefaultModelEndpoint when BaseURL is set; Endpoints adds
// others (one of which may be named DefaultModelEndpoint instead).
type ModelConfig struct {
	// Name is the tool's name; default ModelToolName.
	Name string
	// Provider is the default endpoint's wire format; "" means ProviderOpenAI.
	Provider ModelProvider
	// BaseURL is the default endpoint's API root, e.g.
	// "https://api.openai.com/v1" or "http://127.0.0.1:8080/v1"; "" means
	// no endpoint of that name unless Endpoints has one.
	BaseURL string
	// APIKey is the default endpoint's key; "" sends none.
	APIKey string
	// Model is the default endpoint's default model.
	Model string
	// MaxTokens is the default endpoint's ModelEndpoint.MaxTokens.
	MaxTokens int64
	// Endpoints are further endpoints, by name.
	Endpoints []ModelEndpoint
	// Timeout bounds one completion; default DefaultModelTimeout.
	Timeout time.Duration
	// MaxResponseBytes bounds the API's response; default
	// DefaultMaxResponseBytes, at most abi.MaxResponseBytes.
	MaxResponseBytes int64
	// Client sends the requests; default a client of its own.
	Client *http.Client
}

// endpoints is every endpoint c defines, the default first.
func (c ModelConfig) endpoints() []ModelEndpoint {
	var all []ModelEndpoint
	if c.BaseURL != "" {
		all = append(all, ModelEndpoint{Name: DefaultModelEndpoint, Provider: c.Provider, BaseURL: c.BaseURL,
			APIKey: c.APIKey, Model: c.Model, MaxTokens: c.MaxTokens})
	}
	return append(all, c.Endpoints...)
}

// Validate reports the first invalid field of c, by name.
func (c ModelConfig) Validate() error {
	if c.Name != "" {
		if err := abi.ValidToolName(c.Name); err != nil {
			return fmt.Errorf("ModelConfig.Name: %w", err)
		}
	}
	if c.BaseURL == "" && len(c.Endpoints) == 0 {
		return errors.New("ModelConfig.BaseURL: required when there are no Endpoints")
	}
	seen := map[string]bool{}
	for i, e := range c.endpoints() {
		prefix := "ModelConfig."
		if c.BaseURL == "" || i > 0 {
			j := i
			if c.BaseURL != "" {
				j--
			}
			prefix = fmt.Sprintf("ModelConfig.Endpoints[%d].", j)
		}
		if err := e.Validate(); err != nil {
			return fmt.Errorf("%s%w", prefix, err)
		}
		if seen[e.Name] {
			return fmt.Errorf("%sName: %q is declared twice", prefix, e.Name)
		}
		seen[e.Name] = true
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

// ModelTool asks a chat model for a completion, through one of its named
// endpoints, each speaking OpenAI's chat completions or Anthropic's
// Messages API. Guests speak one shape whichever the endpoint: OpenAI's
// chat-completions params (messages, tools, tool_choice, ...) plus
// "endpoint", and get back
//
//	{"content": "...", "tool_calls": [...], "finish_reason": "stop",
//	 "model": "...", "usage": {"prompt_tokens": N, "completion_tokens": N}}
//
// (docs/tools.md has the whole contract), and Result.Usage, so budgets see
// the tokens. Its semantics are Idempotent: asking again is harmless but
// costs tokens, and the ledger makes that rare. A completion is not
// deterministic, so what a task saw is what the ledger recorded, not what a
// second request would say.
type ModelTool struct {
	name      string
	endpoints map[string]*modelEndpoint
	names     []string // sorted, for messages
	timeout   time.Duration
	max       int64
	client    *http.Client
}

// modelEndpoint is a ModelEndpoint ready to send to.
type modelEndpoint struct {
	name      string
	provider  ModelProvider
	url       string // the full request URL
	shown     string // url with any password in it redacted, for messages
	apiKey    string
	model     string
	maxTokens int64
	cache     bool // ModelEndpoint.PromptCache
}

// NewModel returns a model tool configured by cfg.
func NewModel(cfg ModelConfig) (*ModelTool, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &ModelTool{
		name:      cfg.Name,
		endpoints: map[string]*modelEndpoint{},
		timeout:   cfg.Timeout,
		max:       cfg.MaxResponseBytes,
		client:    cfg.Client,
	}
	for _, e := range cfg.endpoints() {
		ep := &modelEndpoint{name: e.Name, provider: e.Provider, apiKey: e.APIKey, model: e.Model, maxTokens: e.MaxTokens,
			cache: e.PromptCache}
		if ep.provider == "" {
			ep.provider = ProviderOpenAI
		}
		if ep.maxTokens == 0 {
			ep.maxTokens = DefaultModelMaxTokens
		}
		base := e.BaseURL
		if base == "" {
			base = ep.provider.defaultBaseURL()
		}
		base = strings.TrimSuffix(base, "/")
		if ep.provider == ProviderAnthropic {
			ep.url = base + "/v1/messages"
		} else {
			ep.url = base + "/chat/completions"
		}
		ep.shown = ep.url
		if u, err := url.Parse(ep.url); err == nil {
			ep.shown = u.Redacted()
		}
		t.endpoints[e.Name] = ep
		t.names = append(t.names, e.Name)
	}
	slices.Sort(t.names)
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

// Endpoints lists the names of the tool's endpoints, sorted.
func (t *ModelTool) Endpoints() []string { return slices.Clone(t.names) }

// modelResult is the tool's result, the same for every provider.
type modelResult struct {
	Content      string     `json:"content"`
	ToolCalls    []toolCall `json:"tool_calls,omitempty"`
	FinishReason string     `json:"finish_reason,omitempty"`
	Model        string     `json:"model"`
	Usage        *Usage     `json:"usage,omitempty"`
}

// Finish reasons, OpenAI's vocabulary, which results speak whatever the
// provider.
const (
	finishStop          = "stop"
	finishToolCalls     = "tool_calls"
	finishLength        = "length"
	finishContentFilter = "content_filter"
)

// wireRequest is one provider request: where it goes and what it says.
type wireRequest struct {
	body   []byte
	header http.Header
}

// Invoke asks for one completion.
func (t *ModelTool) Invoke(ctx context.Context, call Call) (Result, error) {
	p, err := parseModelParams(call.Params)
	if err != nil {
		return Result{}, err
	}
	ep, err := t.endpoint(p.Endpoint)
	if err != nil {
		return Result{}, err
	}
	if p.Model == "" {
		p.Model = ep.model
	}
	var (
		wr    wireRequest
		parse func([]byte) (modelResult, error)
	)
	switch ep.provider {
	case ProviderAnthropic:
		wr, err = anthropicRequest(p, ep)
		parse = parseAnthropicResponse
	default:
		wr, err = openAIRequest(p, ep)
		parse = parseOpenAIResponse
	}
	if err != nil {
		return Result{}, err
	}
	what := "POST " + ep.shown
	body, err := t.post(ctx, call, ep, wr, what)
	if err != nil {
		return Result{}, err
	}
	// A 200 with a body we cannot read is recorded as a tool error: the
	// endpoint is not speaking the protocol, and asking again would burn
	// tokens for the same answer.
	res, err := parse(body)
	if err != nil {
		return Result{}, annotate(err, "%s", what)
	}
	if res.Model == "" {
		res.Model = p.Model
	}
	if res.Usage != nil {
		res.Usage.Model = res.Model
	}
	out, err := marshalBody(res)
	if err != nil {
		return Result{}, annotate(err, "%s", what)
	}
	return Result{Body: out, Usage: res.Usage}, nil
}

// endpoint finds the endpoint a call names; "" is DefaultModelEndpoint.
// The refusal lists the names only: URLs and keys are the operator's.
func (t *ModelTool) endpoint(name string) (*modelEndpoint, error) {
	if name == "" {
		name = DefaultModelEndpoint
	}
	if ep, ok := t.endpoints[name]; ok {
		return ep, nil
	}
	return nil, abi.Errorf(abi.StatusInvalidArgument, "endpoint %q: not configured on this node; configured: %s",
		name, strings.Join(t.names, ", "))
}

// post sends one request and reads the answer, classifying failures the
// way every HTTP tool does.
func (t *ModelTool) post(ctx context.Context, call Call, ep *modelEndpoint, wr wireRequest, what string) ([]byte, error) {
	callCtx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(callCtx, http.MethodPost, ep.url, bytes.NewReader(wr.body))
	if err != nil {
		return nil, statusErrorf(abi.StatusToolError, err, "%s", what)
	}
	for k, v := range wr.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	SetIdempotencyKey(req, call.ID, true) // a completion is idempotent

	resp, err := do(t.client, req)
	if err != nil {
		return nil, transportError(ctx, t.timeout, what, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		// Anthropic's 529 (overloaded) is a 5xx: transient, like the rest.
		return nil, responseError(resp, what, apiErrorDetail(resp))
	}
	body, err := readCapped(resp.Body, t.max)
	if errors.Is(err, errResponseTooLarge) {
		return nil, abi.Errorf(abi.StatusToolError, "%s: response larger than %d bytes", what, t.max)
	}
	if err != nil {
		return nil, transportError(ctx, t.timeout, what+": read response", err)
	}
	return body, nil
}

// apiErrorDetail extracts the message of an error body, OpenAI's
// ({"error": {"message": "..."}}) and Anthropic's ({"type": "error",
// "error": {"type": "...", "message": "..."}}) alike, or an excerpt of
// whatever the body is.
func apiErrorDetail(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10)) // best effort: the status already says what failed
	var e struct {
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &e) == nil && e.Error.Message != "" {
		if e.Error.Type != "" {
			return excerpt([]byte(e.Error.Type + ": " + e.Error.Message))
		}
		return excerpt([]byte(e.Error.Message))
	}
	return excerpt(b)
}

// decodeResponse decodes a provider's 200 body; failing, it is a tool error.
func decodeResponse(body []byte, v any, what string) error {
	if err := json.Unmarshal(body, v); err != nil {
		return statusErrorf(abi.StatusToolError, err, "response is not %s (%s)", what, excerpt(body))
	}
	return nil
}
