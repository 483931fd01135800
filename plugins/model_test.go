package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

// fakeOpenAI is an OpenAI-compatible chat-completions endpoint. It checks the
// request the way a real one would (path, method, auth, body shape) and
// answers with reply, or with an OpenAI-style error when the request is wrong.
func fakeOpenAI(t *testing.T, reply func(w http.ResponseWriter, req chatRequest)) *recorder {
	t.Helper()
	return newRecorder(t, func(w http.ResponseWriter, r *http.Request) {
		fail := func(code int, msg string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":{"message":%q,"type":"invalid_request_error"}}`, msg)
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v1/chat/completions" {
			fail(http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path)
			return
		}
		if r.Header.Get("Authorization") != "Bearer sk-test" {
			fail(http.StatusUnauthorized, "bad api key")
			return
		}
		var req chatRequest
		dec := json.NewDecoder(r.Body)
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			fail(http.StatusBadRequest, "bad body: "+err.Error())
			return
		}
		if req.Model == "" || len(req.Messages) == 0 {
			fail(http.StatusBadRequest, "model and messages are required")
			return
		}
		reply(w, req)
	})
}

type chatRequest struct {
	Model    string `json:"model"`
	Messages []struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	} `json:"messages"`
	Temperature *float64 `json:"temperature"`
	MaxTokens   *int64   `json:"max_tokens"`
}

type modelResult struct {
	Content      string         `json:"content"`
	Model        string         `json:"model"`
	FinishReason string         `json:"finish_reason"`
	Usage        *plugins.Usage `json:"usage"`
}

func completion(model, content string) string {
	return fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,
		"choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],
		"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}`, model, content)
}

func newModel(t *testing.T, srv *recorder, mod func(*plugins.ModelConfig)) *plugins.ModelTool {
	t.Helper()
	cfg := plugins.ModelConfig{BaseURL: srv.URL + "/v1/", APIKey: "sk-test", Model: "gpt-test"}
	if mod != nil {
		mod(&cfg)
	}
	m, err := plugins.NewModel(cfg)
	if err != nil {
		t.Fatalf("NewModel: %v", err)
	}
	return m
}

const askParams = `{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"classify this"}],"temperature":0.5,"max_tokens":64}`

func TestModelCompletion(t *testing.T) {
	t.Parallel()
	var got chatRequest
	srv := fakeOpenAI(t, func(w http.ResponseWriter, req chatRequest) {
		got = req
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, completion(req.Model+"-2026", "invoice"))
	})
	m := newModel(t, srv, nil)
	res, err := m.Invoke(t.Context(), plugins.Call{ID: "call-7", TaskID: "task-1", Attempt: 1, Params: json.RawMessage(askParams)})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}

	seen := srv.seen()
	if k := seen.Header.Get("Idempotency-Key"); k != "call-7" {
		t.Errorf("Idempotency-Key %q; want the call ID", k)
	}
	if ct := seen.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if got.Model != "gpt-test" || len(got.Messages) != 2 || got.Messages[0].Role != "system" ||
		got.Messages[1].Content != "classify this" || got.Temperature == nil || *got.Temperature != 0.5 ||
		got.MaxTokens == nil || *got.MaxTokens != 64 {
		t.Errorf("server got %+v", got)
	}

	if res.Usage == nil || *res.Usage != (plugins.Usage{PromptTokens: 12, CompletionTokens: 5, Model: "gpt-test-2026"}) {
		t.Errorf("Result.Usage = %+v; want 12/5 from gpt-test-2026 (the model that answered, for the metrics)", res.Usage)
	}
	var out modelResult
	decode(t, res.Body, &out)
	want := modelResult{Content: "invoice", Model: "gpt-test-2026", FinishReason: "stop", Usage: &plugins.Usage{PromptTokens: 12, CompletionTokens: 5}}
	if out.Content != want.Content || out.Model != want.Model || out.FinishReason != want.FinishReason || *out.Usage != *want.Usage {
		t.Errorf("body %s; want %+v", res.Body, want)
	}
}

func TestModelOverrideAndOptionalFields(t *testing.T) {
	t.Parallel()
	srv := fakeOpenAI(t, func(w http.ResponseWriter, req chatRequest) {
		if req.Temperature != nil || req.MaxTokens != nil {
			http.Error(w, "optional fields were sent", http.StatusBadRequest)
			return
		}
		// Some servers omit the model and the usage; the tool copes.
		fmt.Fprintf(w, `{"choices":[{"message":{"role":"assistant","content":"ok:%s"}}]}`, req.Model)
	})
	m := newModel(t, srv, nil)
	res, err := m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(`{"model":"small","messages":[{"role":"user","content":"hi"}]}`)})
	if err != nil {
		t.Fatalf("Invoke: %v", err)
	}
	var out modelResult
	decode(t, res.Body, &out)
	if out.Content != "ok:small" || out.Model != "small" || out.Usage != nil || res.Usage != nil {
		t.Errorf("body %s, usage %+v", res.Body, res.Usage)
	}
}

func TestModelErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		reply    func(srv *recorder) func(w http.ResponseWriter, req chatRequest)
		cfg      func(*plugins.ModelConfig)
		params   string
		want     abi.Status
		wantMsg  []string
		wantHits int
		// hitsUpTo makes wantHits a ceiling: a client-side timeout can
		// fire before a loaded server has counted the request.
		hitsUpTo bool
	}{
		{
			name:     "500 is transient",
			reply:    status(http.StatusInternalServerError, `{"error":{"message":"the server had an error"}}`),
			want:     abi.StatusTransient,
			wantMsg:  []string{"500", "the server had an error", "/v1/chat/completions"},
			wantHits: 1,
		},
		{
			name:     "429 is transient",
			reply:    status(http.StatusTooManyRequests, `{"error":{"message":"rate limited"}}`),
			want:     abi.StatusTransient,
			wantMsg:  []string{"429", "rate limited"},
			wantHits: 1,
		},
		{
			name:     "400 is a tool error with the API's message",
			reply:    status(http.StatusBadRequest, `{"error":{"message":"context length exceeded"}}`),
			want:     abi.StatusToolError,
			wantMsg:  []string{"400", "context length exceeded"},
			wantHits: 1,
		},
		{
			name:     "wrong API key is a tool error",
			cfg:      func(c *plugins.ModelConfig) { c.APIKey = "sk-wrong" },
			reply:    status(http.StatusOK, completion("m", "unreachable")),
			want:     abi.StatusToolError,
			wantMsg:  []string{"401", "bad api key"},
			wantHits: 1,
		},
		{
			name:     "malformed JSON response is a tool error",
			reply:    status(http.StatusOK, `{"choices":[{"message":`),
			want:     abi.StatusToolError,
			wantMsg:  []string{"not a chat completion"},
			wantHits: 1,
		},
		{
			name:     "HTML instead of JSON is a tool error",
			reply:    status(http.StatusOK, `<html>proxy login</html>`),
			want:     abi.StatusToolError,
			wantMsg:  []string{"proxy login"},
			wantHits: 1,
		},
		{
			name:     "empty choices is a tool error",
			reply:    status(http.StatusOK, `{"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":0}}`),
			want:     abi.StatusToolError,
			wantMsg:  []string{"no choices"},
			wantHits: 1,
		},
		{
			name:     "oversize response is a tool error",
			cfg:      func(c *plugins.ModelConfig) { c.MaxResponseBytes = 100 },
			reply:    status(http.StatusOK, completion("m", strings.Repeat("x", 200))),
			want:     abi.StatusToolError,
			wantMsg:  []string{"response larger than 100 bytes"},
			wantHits: 1,
		},
		{
			name: "timeout is transient",
			cfg:  func(c *plugins.ModelConfig) { c.Timeout = 50 * time.Millisecond },
			reply: func(srv *recorder) func(w http.ResponseWriter, req chatRequest) {
				return func(w http.ResponseWriter, req chatRequest) { <-srv.release }
			},
			want:     abi.StatusTransient,
			wantMsg:  []string{"timed out"},
			wantHits: 1,
			hitsUpTo: true,
		},
		{name: "no messages", params: `{"messages":[]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages"}},
		{name: "missing messages", params: `{"model":"m"}`, want: abi.StatusInvalidArgument},
		{name: "bad role", params: `{"messages":[{"role":"function","content":"x"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].role"}},
		{name: "tool message without tool_call_id", params: `{"messages":[{"role":"tool","content":"x"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].tool_call_id"}},
		{name: "tool_call_id on a user message", params: `{"messages":[{"role":"user","content":"x","tool_call_id":"a"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].tool_call_id"}},
		{name: "assistant with neither content nor tool calls", params: `{"messages":[{"role":"assistant","content":null}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content"}},
		{name: "user without content", params: `{"messages":[{"role":"user"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content"}},
		{name: "tool calls on a user message", params: `{"messages":[{"role":"user","content":"x","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].tool_calls"}},
		{name: "tool call without id", params: `{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].tool_calls[0].id"}},
		{name: "tool call arguments not a string", params: `{"messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":{}}}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"arguments", "string"}},
		{name: "tool call name with a space", params: `{"messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f g","arguments":"{}"}}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].tool_calls[0].function.name"}},
		{name: "unknown message field", params: `{"messages":[{"role":"user","content":"x","refusal":"no"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"refusal"}},
		{name: "unknown content part field", params: `{"messages":[{"role":"user","content":[{"type":"text","text":"x","cache_control":{}}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content", "cache_control"}},
		{name: "unknown content part type", params: `{"messages":[{"role":"user","content":[{"type":"input_audio"}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content[0].type"}},
		{name: "image on a system message", params: `{"messages":[{"role":"system","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content[0]"}},
		{name: "content a number", params: `{"messages":[{"role":"user","content":5}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content"}},
		{name: "empty content array", params: `{"messages":[{"role":"user","content":[]}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages[0].content"}},
		{name: "too many messages", params: `{"messages":[` + strings.Repeat(`{"role":"user","content":"x"},`, 1000) + `{"role":"user","content":"x"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"messages", "limit 1000"}},
		{name: "too many tools", params: `{"messages":[{"role":"user","content":"x"}],"tools":[` + manyTools(129) + `]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tools", "limit 128"}},
		{name: "tool name too long", params: `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"` + strings.Repeat("a", 65) + `"}}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tools[0].function.name"}},
		{name: "tool type not function", params: `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","function":{"name":"f"}}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tools[0].type"}},
		{name: "tool declared twice", params: `{"messages":[{"role":"user","content":"x"}],"tools":[` + manyTools(1) + `,` + manyTools(1) + `]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tools[1].function.name", "twice"}},
		{name: "tool parameters not an object", params: `{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tools[0].function.parameters"}},
		{name: "tool_choice names no tool", params: `{"messages":[{"role":"user","content":"x"}],"tools":[` + manyTools(1) + `],"tool_choice":{"type":"function","function":{"name":"g"}}}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tool_choice.function.name"}},
		{name: "tool_choice unknown mode", params: `{"messages":[{"role":"user","content":"x"}],"tools":[` + manyTools(1) + `],"tool_choice":"any"}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tool_choice"}},
		{name: "tool_choice without tools", params: `{"messages":[{"role":"user","content":"x"}],"tool_choice":"required"}`, want: abi.StatusInvalidArgument, wantMsg: []string{"tool_choice", "tools"}},
		{name: "parallel_tool_calls without tools", params: `{"messages":[{"role":"user","content":"x"}],"parallel_tool_calls":true}`, want: abi.StatusInvalidArgument, wantMsg: []string{"parallel_tool_calls"}},
		{name: "response_format unknown type", params: `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}`, want: abi.StatusInvalidArgument, wantMsg: []string{"response_format.type"}},
		{name: "json_schema without name", params: `{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}`, want: abi.StatusInvalidArgument, wantMsg: []string{"response_format.json_schema.name"}},
		{name: "too many stop sequences", params: `{"messages":[{"role":"user","content":"x"}],"stop":["a","b","c","d","e"]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"stop", "limit 4"}},
		{name: "stop a number", params: `{"messages":[{"role":"user","content":"x"}],"stop":5}`, want: abi.StatusInvalidArgument, wantMsg: []string{"stop"}},
		{name: "top_p above 1", params: `{"messages":[{"role":"user","content":"x"}],"top_p":1.5}`, want: abi.StatusInvalidArgument, wantMsg: []string{"top_p"}},
		{name: "max_completion_tokens zero", params: `{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":0}`, want: abi.StatusInvalidArgument, wantMsg: []string{"max_completion_tokens"}},
		{name: "seed not an integer", params: `{"messages":[{"role":"user","content":"x"}],"seed":"7"}`, want: abi.StatusInvalidArgument, wantMsg: []string{"seed"}},
		{name: "endpoint with a slash", params: `{"endpoint":"a/b","messages":[{"role":"user","content":"x"}]}`, want: abi.StatusInvalidArgument, wantMsg: []string{"endpoint"}},
		{name: "unknown field", params: `{"messages":[{"role":"user","content":"x"}],"stream":true}`, want: abi.StatusInvalidArgument, wantMsg: []string{"stream"}},
		{name: "temperature out of range", params: `{"messages":[{"role":"user","content":"x"}],"temperature":3}`, want: abi.StatusInvalidArgument},
		{name: "max_tokens not an integer", params: `{"messages":[{"role":"user","content":"x"}],"max_tokens":1.5}`, want: abi.StatusInvalidArgument, wantMsg: []string{"max_tokens", "integer"}},
		{name: "max_tokens zero", params: `{"messages":[{"role":"user","content":"x"}],"max_tokens":0}`, want: abi.StatusInvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var srv *recorder
			srv = fakeOpenAI(t, func(w http.ResponseWriter, req chatRequest) {
				if tc.reply == nil {
					t.Error("server hit for a call that should have been refused")
					return
				}
				tc.reply(srv)(w, req)
			})
			params := tc.params
			if params == "" {
				params = askParams
			}
			m := newModel(t, srv, tc.cfg)
			res, err := m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(params)})
			wantStatus(t, err, tc.want, tc.wantMsg...)
			if res.Usage != nil || res.Body != nil {
				t.Errorf("failed call returned a result %+v", res)
			}
			if n := srv.count(); n != tc.wantHits && !(tc.hitsUpTo && n < tc.wantHits) {
				t.Errorf("server hit %d times; want %d", n, tc.wantHits)
			}
			if strings.Contains(err.Error(), "sk-") {
				t.Errorf("error %q leaks the API key", err)
			}
		})
	}
}

// manyTools is n function declarations, all named alike when n is 1.
func manyTools(n int) string {
	tools := make([]string, n)
	for i := range tools {
		tools[i] = fmt.Sprintf(`{"type":"function","function":{"name":"f%d"}}`, i)
	}
	return strings.Join(tools, ",")
}

func status(code int, body string) func(*recorder) func(http.ResponseWriter, chatRequest) {
	return func(*recorder) func(http.ResponseWriter, chatRequest) {
		return func(w http.ResponseWriter, _ chatRequest) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprint(w, body)
		}
	}
}

func TestModelEndpointDownIsTransient(t *testing.T) {
	t.Parallel()
	srv := newRecorder(t, nil)
	m := newModel(t, srv, nil)
	srv.Close()
	_, err := m.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(askParams)})
	wantStatus(t, err, abi.StatusTransient)

	_, err = m.Invoke(canceled(t), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(askParams)})
	wantStatus(t, err, abi.StatusTransient)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v does not wrap context.Canceled", err)
	}
}

func TestModelConfigValidate(t *testing.T) {
	t.Parallel()
	ok := plugins.ModelConfig{BaseURL: "http://127.0.0.1:8080/v1", Model: "m"}
	cases := []struct {
		name string
		mod  func(*plugins.ModelConfig)
		want string
	}{
		{"valid", func(*plugins.ModelConfig) {}, ""},
		{"no base URL", func(c *plugins.ModelConfig) { c.BaseURL = "" }, "BaseURL"},
		{"relative base URL", func(c *plugins.ModelConfig) { c.BaseURL = "/v1" }, "BaseURL"},
		{"ftp base URL", func(c *plugins.ModelConfig) { c.BaseURL = "ftp://x/v1" }, "BaseURL"},
		{"query in base URL", func(c *plugins.ModelConfig) { c.BaseURL = "http://x/v1?k=1" }, "BaseURL"},
		{"no model", func(c *plugins.ModelConfig) { c.Model = "" }, "Model"},
		{"key with newline", func(c *plugins.ModelConfig) { c.APIKey = "a\nb" }, "APIKey"},
		{"negative timeout", func(c *plugins.ModelConfig) { c.Timeout = -1 }, "Timeout"},
		{"cap too big", func(c *plugins.ModelConfig) { c.MaxResponseBytes = abi.MaxResponseBytes + 1 }, "MaxResponseBytes"},
		{"bad name", func(c *plugins.ModelConfig) { c.Name = "" + "a b" }, "Name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := ok
			tc.mod(&cfg)
			err := cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "ModelConfig."+tc.want) {
				t.Fatalf("Validate = %v; want an error naming ModelConfig.%s", err, tc.want)
			}
			if _, err := plugins.NewModel(cfg); err == nil {
				t.Fatal("NewModel accepted an invalid config")
			}
		})
	}
}
