package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/orloj/orloj/host/api"
)

const slackDef = `{"name":"slack","kind":"http","http":{"base_url":"https://slack.example/api","methods":["POST"],
 "headers":{"Authorization":{"secret":"slack-token","format":"Bearer %s"}},"semantics":"idempotent"}}`

// TestToolsAPI: push (created, then the same content again: 200, same
// version; changed content: version 2), list, show (newest, a version,
// unknown), the refusals (invalid, unsupported kind, a built-in name, too
// large, no token), delete, and what a removed tool still shows.
func TestToolsAPI(t *testing.T) {
	t.Parallel()
	f := setup(t)
	_, f.url = f.serve(func(c *api.Config) { c.Tools = func() []string { return []string{"http", "kv"} } })

	r := f.do("POST", "/v1/tools", slackDef)
	want(t, r, http.StatusCreated, "")
	var v api.ToolView
	r.decode(t, &v)
	if v.Name != "slack" || v.Version != 1 || v.Kind != "http" || v.Semantics != "idempotent" || len(v.Secrets) != 1 || v.Secrets[0] != "slack-token" || len(v.Digest) != 64 {
		t.Fatalf("pushed = %+v", v)
	}
	if !strings.Contains(string(v.Definition), `"secret":"slack-token"`) {
		t.Fatalf("definition = %s", v.Definition)
	}
	r = f.do("POST", "/v1/tools", " \n"+strings.ReplaceAll(slackDef, `"kind":"http",`, `"kind": "http" ,`))
	want(t, r, http.StatusOK, "")
	r.decode(t, &v)
	if v.Version != 1 {
		t.Fatalf("the same content again made version %d", v.Version)
	}
	want(t, f.do("POST", "/v1/tools", strings.Replace(slackDef, "idempotent", "unsafe", 1)), http.StatusCreated, "")

	var list []api.ToolView
	r = f.do("GET", "/v1/tools", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &list)
	if len(list) != 1 || list[0].Version != 2 || list[0].Semantics != "unsafe" {
		t.Fatalf("list = %+v", list)
	}
	var d api.ToolDetail
	r = f.do("GET", "/v1/tools/slack?version=1", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &d)
	if d.Tool.Version != 1 || d.Tool.Semantics != "idempotent" || len(d.Versions) != 2 {
		t.Fatalf("show @1 = %+v", d)
	}
	want(t, f.do("GET", "/v1/tools/slack?version=3", nil), http.StatusNotFound, api.CodeNotFound)
	want(t, f.do("GET", "/v1/tools/slack?version=x", nil), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("GET", "/v1/tools/nosuch", nil), http.StatusNotFound, api.CodeNotFound)

	for name, tc := range map[string]struct {
		body   string
		status int
		code   string
		msg    string
	}{
		"unknown field":       {`{"name":"x","kind":"http","http":{"base_url":"https://h","semantics":"unsafe","verbs":["GET"]}}`, 400, api.CodeBadRequest, "verbs"},
		"wasm without module": {`{"name":"x","kind":"wasm","wasm":{}}`, 400, api.CodeBadRequest, "not a module digest"},
		"wasm not uploaded":   {`{"name":"x","kind":"wasm","wasm":{"module":"` + strings.Repeat("a", 64) + `"}}`, 400, api.CodeBadRequest, "is not uploaded"},
		"mcp url and command": {`{"name":"x","kind":"mcp","mcp":{"url":"https://m","command":"c"}}`, 400, api.CodeBadRequest, "not both"},
		"built-in name":       {`{"name":"kv","kind":"http","http":{"base_url":"https://h","semantics":"unsafe"}}`, 409, api.CodeConflict, "built-in tool"},
		"not json":            {`name: x`, 400, api.CodeBadRequest, "JSON object"},
		"too large":           {`{"name":"x","description":"` + strings.Repeat("a", 70<<10) + `"}`, 413, api.CodeTooLarge, "limit"},
	} {
		r := f.do("POST", "/v1/tools", tc.body)
		want(t, r, tc.status, tc.code)
		if e := r.errBody(t); !strings.Contains(e.Error, tc.msg) {
			t.Errorf("%s: %q does not say %q", name, e.Error, tc.msg)
		}
	}
	want(t, doURL(t, f.url, "POST", "/v1/tools", slackDef, ""), http.StatusUnauthorized, api.CodeUnauthorized)
	want(t, doURL(t, f.url, "DELETE", "/v1/tools/slack", nil, "Bearer wrong"), http.StatusUnauthorized, api.CodeUnauthorized)

	// An agent may name built-in and declared tools, nothing else.
	want(t, f.do("POST", "/v1/agents?name=a&version=v1&tools=http,slack", helloWasm(t)), http.StatusCreated, "")
	r = f.do("POST", "/v1/agents?name=a&version=v2&tools=http,nosuch", helloWasm(t))
	want(t, r, http.StatusBadRequest, api.CodeBadRequest)
	if e := r.errBody(t); !strings.Contains(e.Error, `"nosuch" is neither a built-in tool`) {
		t.Fatalf("unknown tool: %s", e.Error)
	}

	if r := f.do("DELETE", "/v1/tools/slack", nil); r.status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}
	want(t, f.do("DELETE", "/v1/tools/slack", nil), http.StatusNotFound, api.CodeNotFound)
	want(t, f.do("GET", "/v1/tools/slack", nil), http.StatusNotFound, api.CodeNotFound)
	r = f.do("GET", "/v1/tools/slack?version=2", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &d)
	if !d.Removed || d.Tool.Version != 2 {
		t.Fatalf("a removed tool's version = %+v", d)
	}
	r = f.do("GET", "/v1/tools", nil)
	r.decode(t, &list)
	if len(list) != 0 {
		t.Fatalf("list after delete = %+v", list)
	}
	want(t, f.do("POST", "/v1/agents?name=a&version=v3&tools=slack", helloWasm(t)), http.StatusBadRequest, api.CodeBadRequest)
}
