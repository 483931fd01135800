package plugins_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

// fakeKey is the API key every wire test configures; no error may carry it.
const fakeKey = "sk-fake-KEY-must-never-show-4242"

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "model", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// canonical re-encodes JSON with sorted keys and no insignificant space, so
// two documents compare equal when they say the same.
func canonical(t *testing.T, b []byte) string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("canonical: %v in %s", err, b)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// standIn speaks one provider's wire format: it checks the path and the
// headers that provider requires, and answers with reply.
func standIn(t *testing.T, provider plugins.ModelProvider, status int, reply []byte) *recorder {
	t.Helper()
	return newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fail := func(msg string) {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"type":"error","error":{"type":"invalid_request_error","message":%q}}`, msg)
		}
		if r.Header.Get("Content-Type") != "application/json" || r.Header.Get("Idempotency-Key") == "" {
			fail("content type or idempotency key missing")
			return
		}
		switch provider {
		case plugins.ProviderAnthropic:
			if r.URL.Path != "/v1/messages" || r.Header.Get("x-api-key") != fakeKey ||
				r.Header.Get("anthropic-version") != "2023-06-01" || r.Header.Get("Authorization") != "" {
				fail("not an Anthropic request: " + r.URL.Path)
				return
			}
		default:
			if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer "+fakeKey || r.Header.Get("x-api-key") != "" {
				fail("not an OpenAI request: " + r.URL.Path)
				return
			}
		}
		w.WriteHeader(status)
		w.Write(reply)
	})
}

func wireTool(t *testing.T, provider plugins.ModelProvider, srv *recorder) *plugins.ModelTool {
	t.Helper()
	return wireToolCache(t, provider, srv, false)
}

// wireToolCache is wireTool, with Anthropic's prompt cache marks if cache.
func wireToolCache(t *testing.T, provider plugins.ModelProvider, srv *recorder, cache bool) *plugins.ModelTool {
	t.Helper()
	cfg := plugins.ModelConfig{Provider: provider, BaseURL: srv.URL + "/v1", APIKey: fakeKey, Model: "gpt-4o"}
	if provider == plugins.ProviderAnthropic {
		cfg.BaseURL, cfg.Model = srv.URL, "claude-sonnet-4-5"
	}
	if cache {
		cfg = plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: plugins.DefaultModelEndpoint, Provider: provider,
			BaseURL: cfg.BaseURL, APIKey: fakeKey, Model: cfg.Model, PromptCache: true}}}
	}
	m, err := plugins.NewModel(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestModelWireFormat sends guest params to a stand-in of each provider and
// checks the exact request body it received and the exact result the guest
// gets back from a fixture answer.
func TestModelWireFormat(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		provider plugins.ModelProvider
		guest    string
		request  string // golden request body
		response string // the provider's answer
		result   string // golden result
		usage    plugins.Usage
		cache    bool // the endpoint marks prompt cache breakpoints
	}{
		{"openai tool loop, parallel tool calls back", plugins.ProviderOpenAI, "guest_tool_loop.json", "openai_request_tool_loop.json",
			"openai_response_parallel_tool_calls.json", "openai_result_parallel_tool_calls.json", plugins.Usage{PromptTokens: 82, CompletionTokens: 51}, false},
		{"openai structured output, cached tokens", plugins.ProviderOpenAI, "guest_structured.json", "openai_request_structured.json",
			"openai_response_prompt_caching.json", "openai_result_prompt_caching.json", plugins.Usage{PromptTokens: 2006, CompletionTokens: 300, CachedTokens: 1920}, false},
		{"anthropic tool loop, parallel tool use back", plugins.ProviderAnthropic, "guest_tool_loop.json", "anthropic_request_tool_loop.json",
			"anthropic_response_parallel_tool_use.json", "anthropic_result_parallel_tool_use.json", plugins.Usage{PromptTokens: 452, CompletionTokens: 121}, false},
		{"anthropic forced tool, system blocks, image, cache usage", plugins.ProviderAnthropic, "guest_required_tool.json", "anthropic_request_required_tool.json",
			"anthropic_response_cache_usage.json", "anthropic_result_cache_usage.json",
			plugins.Usage{PromptTokens: 188355, CompletionTokens: 393, CachedTokens: 188086, CacheCreationTokens: 248}, false},
		{"anthropic tool loop with prompt cache marks", plugins.ProviderAnthropic, "guest_tool_loop.json", "anthropic_request_tool_loop_cached.json",
			"anthropic_response_cache_usage.json", "anthropic_result_cache_usage.json",
			plugins.Usage{PromptTokens: 188355, CompletionTokens: 393, CachedTokens: 188086, CacheCreationTokens: 248}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := standIn(t, tc.provider, http.StatusOK, fixture(t, tc.response))
			m := wireToolCache(t, tc.provider, srv, tc.cache)
			res, err := m.Invoke(t.Context(), plugins.Call{ID: "call-id-1", TaskID: "t", Params: fixture(t, tc.guest)})
			if err != nil {
				t.Fatalf("Invoke: %v", err)
			}
			seen := srv.seen()
			if got, want := canonical(t, []byte(seen.Body)), canonical(t, fixture(t, tc.request)); got != want {
				t.Errorf("request body:\n%s\nwant (%s):\n%s", got, tc.request, want)
			}
			if k := seen.Header.Get("Idempotency-Key"); k != "call-id-1" {
				t.Errorf("Idempotency-Key %q; want the call ID", k)
			}
			if got, want := canonical(t, res.Body), canonical(t, fixture(t, tc.result)); got != want {
				t.Errorf("result:\n%s\nwant (%s):\n%s", got, tc.result, want)
			}
			var answered struct{ Model string }
			_ = json.Unmarshal(res.Body, &answered)
			want := tc.usage
			want.Model = answered.Model // the model that answered, for the metrics
			if res.Usage == nil || *res.Usage != want || want.Model == "" {
				t.Errorf("Result.Usage = %+v; want %+v", res.Usage, want)
			}
		})
	}
}

// TestModelAnthropicRefusals: what Anthropic cannot do is refused before
// any request, naming the field and the provider.
func TestModelAnthropicRefusals(t *testing.T) {
	t.Parallel()
	const user = `{"role":"user","content":"hi"}`
	cases := []struct{ name, params, field string }{
		{"seed", `{"messages":[` + user + `],"seed":7}`, "seed"},
		{"json_object", `{"messages":[` + user + `],"response_format":{"type":"json_object"}}`, "response_format"},
		{"json_schema", `{"messages":[` + user + `],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{}}}}`, "response_format"},
		{"temperature above 1", `{"messages":[` + user + `],"temperature":1.5}`, "temperature 1.5"},
		{"message name", `{"messages":[{"role":"user","name":"bob","content":"hi"}]}`, "messages[0].name"},
		{"arguments not an object", `{"messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`,
			"messages[1].tool_calls[0].function.arguments"},
		{"arguments not JSON", `{"messages":[` + user + `,{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}`,
			"messages[1].tool_calls[0].function.arguments"},
		{"ftp image", `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"ftp://x/y.png"}}]}]}`, "messages[0].content[0].image_url.url"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := standIn(t, plugins.ProviderAnthropic, http.StatusOK, fixture(t, "anthropic_response_cache_usage.json"))
			m := wireTool(t, plugins.ProviderAnthropic, srv)
			_, err := m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(tc.params)})
			want := []string{tc.field}
			if !strings.HasPrefix(tc.name, "arguments") && tc.name != "ftp image" {
				want = append(want, "anthropic")
			}
			wantStatus(t, err, abi.StatusInvalidArgument, want...)
			if n := srv.count(); n != 0 {
				t.Errorf("the provider was asked %d times", n)
			}
		})
	}
	// The same params are fine for OpenAI, which does all of this.
	srv := standIn(t, plugins.ProviderOpenAI, http.StatusOK, fixture(t, "openai_response_prompt_caching.json"))
	m := wireTool(t, plugins.ProviderOpenAI, srv)
	for _, tc := range cases[:5] {
		if _, err := m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(tc.params)}); err != nil {
			t.Errorf("openai %s: %v", tc.name, err)
		}
	}
}

// TestModelProviderErrors: each provider's error body gives the message;
// Anthropic's 529 (overloaded) is transient like a 5xx.
func TestModelProviderErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		provider plugins.ModelProvider
		status   int
		body     string
		want     abi.Status
		wantMsg  []string
	}{
		{"anthropic overloaded", plugins.ProviderAnthropic, 529, `{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}`,
			abi.StatusTransient, []string{"529", "overloaded_error: Overloaded", "/v1/messages"}},
		{"anthropic invalid request", plugins.ProviderAnthropic, 400, `{"type":"error","error":{"type":"invalid_request_error","message":"max_tokens: 100000 > 64000"}}`,
			abi.StatusToolError, []string{"400", "max_tokens: 100000 > 64000"}},
		{"anthropic rate limited", plugins.ProviderAnthropic, 429, `{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}`,
			abi.StatusTransient, []string{"429", "slow down"}},
		{"anthropic not a message", plugins.ProviderAnthropic, 200, `{"type":"completion","completion":"hi"}`,
			abi.StatusToolError, []string{"not a message"}},
		{"anthropic garbage", plugins.ProviderAnthropic, 200, `<html>`, abi.StatusToolError, []string{"not a message"}},
		{"openai 503", plugins.ProviderOpenAI, 503, `{"error":{"message":"busy","type":"server_error"}}`, abi.StatusTransient, []string{"503", "busy"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := standIn(t, tc.provider, tc.status, []byte(tc.body))
			m := wireTool(t, tc.provider, srv)
			_, err := m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"messages":[{"role":"user","content":"hi"}]}`)})
			wantStatus(t, err, tc.want, tc.wantMsg...)
			if strings.Contains(err.Error(), fakeKey) {
				t.Errorf("error %q carries the API key", err)
			}
		})
	}
}

// TestModelEndpoints: a call without "endpoint" goes to the default, a
// named one to that endpoint, an unknown name is refused listing the names
// and nothing else.
func TestModelEndpoints(t *testing.T) {
	t.Parallel()
	openai := standIn(t, plugins.ProviderOpenAI, http.StatusOK, fixture(t, "openai_response_prompt_caching.json"))
	claude := standIn(t, plugins.ProviderAnthropic, http.StatusOK, fixture(t, "anthropic_response_cache_usage.json"))
	local := standIn(t, plugins.ProviderOpenAI, http.StatusOK, fixture(t, "openai_response_parallel_tool_calls.json"))
	m, err := plugins.NewModel(plugins.ModelConfig{BaseURL: openai.URL + "/v1", APIKey: fakeKey, Model: "gpt-4o",
		Endpoints: []plugins.ModelEndpoint{
			{Name: "claude", Provider: plugins.ProviderAnthropic, BaseURL: claude.URL, APIKey: fakeKey, Model: "claude-haiku-4-5", MaxTokens: 1000},
			{Name: "local", BaseURL: local.URL + "/v1/", APIKey: fakeKey, Model: "llama"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(m.Endpoints(), ","); got != "claude,default,local" {
		t.Errorf("Endpoints() = %s", got)
	}
	call := func(endpoint string) (plugins.Result, error) {
		p := `{"messages":[{"role":"user","content":"hi"}]}`
		if endpoint != "" {
			p = `{"endpoint":"` + endpoint + `","messages":[{"role":"user","content":"hi"}]}`
		}
		return m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(p)})
	}
	type body struct {
		Model     string `json:"model"`
		MaxTokens int64  `json:"max_tokens"`
	}
	if _, err := call(""); err != nil || openai.count() != 1 {
		t.Fatalf("default: %v, openai asked %d times", err, openai.count())
	}
	var b body
	if err := json.Unmarshal([]byte(openai.seen().Body), &b); err != nil {
		t.Fatal(err)
	}
	if b.Model != "gpt-4o" || b.MaxTokens != 0 {
		t.Errorf("default endpoint got %+v; want model gpt-4o and no max_tokens", b)
	}
	res, err := call("claude")
	if err != nil || claude.count() != 1 {
		t.Fatalf("claude: %v, asked %d times", err, claude.count())
	}
	b = body{}
	if err := json.Unmarshal([]byte(claude.seen().Body), &b); err != nil {
		t.Fatal(err)
	}
	if b.Model != "claude-haiku-4-5" || b.MaxTokens != 1000 {
		t.Errorf("claude endpoint got %+v; want its model and its max_tokens", b)
	}
	if !strings.Contains(string(res.Body), `"cached_tokens":188086`) {
		t.Errorf("claude result %s", res.Body)
	}
	if _, err := call("local"); err != nil || local.count() != 1 {
		t.Fatalf("local: %v, asked %d times", err, local.count())
	}
	_, err = call("nope")
	wantStatus(t, err, abi.StatusInvalidArgument, `endpoint "nope"`, "claude, default, local")
	for _, leak := range []string{fakeKey, openai.URL, claude.URL, local.URL, "127.0.0.1"} {
		if strings.Contains(err.Error(), leak) {
			t.Errorf("refusal %q shows %q", err, leak)
		}
	}
	if openai.count()+claude.count()+local.count() != 3 {
		t.Error("the unknown endpoint reached a provider")
	}

	// Without a default endpoint, a call that names none is refused too.
	named, err := plugins.NewModel(plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "claude", Provider: plugins.ProviderAnthropic, BaseURL: claude.URL, Model: "c"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = named.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"messages":[{"role":"user","content":"hi"}]}`)})
	wantStatus(t, err, abi.StatusInvalidArgument, `endpoint "default"`, "configured: claude")
}

func TestModelEndpointConfigValidate(t *testing.T) {
	t.Parallel()
	ep := plugins.ModelEndpoint{Name: "claude", Provider: plugins.ProviderAnthropic, Model: "claude-sonnet-4-5"}
	cases := []struct {
		name string
		cfg  plugins.ModelConfig
		want string
	}{
		{"one named endpoint, provider's own URL", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{ep}}, ""},
		{"default plus named", plugins.ModelConfig{BaseURL: "http://127.0.0.1:1/v1", Model: "m", Endpoints: []plugins.ModelEndpoint{ep}}, ""},
		{"nothing at all", plugins.ModelConfig{}, "ModelConfig.BaseURL"},
		{"duplicate names", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{ep, ep}}, "ModelConfig.Endpoints[1].Name"},
		{"named default clashes with BaseURL", plugins.ModelConfig{BaseURL: "http://127.0.0.1:1/v1", Model: "m",
			Endpoints: []plugins.ModelEndpoint{{Name: "default", Model: "m"}}}, "ModelConfig.Endpoints[0].Name"},
		{"unknown provider", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "x", Provider: "gemini", Model: "m"}}}, "ModelConfig.Endpoints[0].Provider"},
		{"bad URL", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "x", BaseURL: "ftp://h/", Model: "m"}}}, "ModelConfig.Endpoints[0].BaseURL"},
		{"missing model", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "x"}}}, "ModelConfig.Endpoints[0].Model"},
		{"bad name", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "a b", Model: "m"}}}, "ModelConfig.Endpoints[0].Name"},
		{"negative max tokens", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "x", Model: "m", MaxTokens: -1}}}, "ModelConfig.Endpoints[0].MaxTokens"},
		{"prompt cache on openai", plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "x", Model: "m", PromptCache: true}}}, "ModelConfig.Endpoints[0].PromptCache"},
		{"bad default provider", plugins.ModelConfig{BaseURL: "http://127.0.0.1:1/v1", Model: "m", Provider: "x"}, "ModelConfig.Provider"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want an error naming %s", err, tc.want)
			}
		})
	}
	// A password in a URL is not repeated by the refusal.
	err := plugins.ModelConfig{Endpoints: []plugins.ModelEndpoint{{Name: "x", BaseURL: "ftp://u:hunter2@h/", Model: "m"}}}.Validate()
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Validate = %v; want a refusal without the password", err)
	}
}
