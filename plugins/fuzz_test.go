package plugins

import (
	"encoding/json"
	"testing"

	"github.com/orloj/orloj/abi"
)

// FuzzParams feeds guest-controlled bytes to every built-in tool's params
// decoder: none may panic, and every refusal must carry a status the host
// can hand back to the guest.
func FuzzParams(f *testing.F) {
	for _, s := range []string{
		`{"method":"POST","url":"http://127.0.0.1:1/x","headers":{"a":"b"},"body":"x"}`,
		`{"url":"http://[::1]:80/"}`, `{"url":"file:///etc/passwd"}`, `{"headers":{"a\n":"b"}}`,
		`{"messages":[{"role":"user","content":"hi"}],"temperature":0.5,"max_tokens":5,"model":"m"}`,
		`{"messages":[],"temperature":1e400}`,
		`{"endpoint":"claude","messages":[{"role":"system","content":[{"type":"text","text":"s"}]},{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png;base64,AA=="}}]},` +
			`{"role":"assistant","content":null,"tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":1}"}}]},` +
			`{"role":"tool","tool_call_id":"a","content":"ok"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],` +
			`"tool_choice":{"type":"function","function":{"name":"f"}},"parallel_tool_calls":false,"stop":["x"],"seed":1,"response_format":{"type":"text"}}`,
		`{"op":"put","key":"k","value":{"a":[1,2,null]}}`, `{"op":"get","key":""}`,
		`null`, `[]`, `{`, `{"a":1}{}`, "",
	} {
		f.Add([]byte(s))
	}
	h, err := NewHTTP(HTTPConfig{AllowHosts: []string{"127.0.0.1:1", "::1"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(what string, err error) {
			if err == nil {
				return
			}
			s, ok := abi.StatusOf(err)
			if !ok || (s != abi.StatusInvalidArgument && s != abi.StatusPermissionDenied) {
				t.Fatalf("%s(%q): error %v has status %v; want invalid_argument or permission_denied", what, b, err, s)
			}
		}
		_, _, err := h.parse(json.RawMessage(b))
		check("http", err)
		p, err := parseModelParams(json.RawMessage(b))
		check("model", err)
		if err == nil {
			// Params that pass the checks map onto every provider or are
			// refused, never crash the mapping.
			ep := &modelEndpoint{name: "e", model: "m", maxTokens: 1}
			_, err = anthropicRequest(p, ep)
			check("model/anthropic", err)
			_, err = openAIRequest(p, ep)
			check("model/openai", err)
		}
		_, err = parseKVParams(json.RawMessage(b))
		check("kv", err)
	})
}
