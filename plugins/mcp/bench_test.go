package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
)

// BenchmarkCall is one call of a small echo, through an MCP server over
// stdio and over streamable HTTP, and through the built-in http tool to a
// loopback handler doing the same: what the MCP client and protocol add to
// a tool call, before the ledger (which is the same for all three).
//
//	go test -run '^$' -bench BenchmarkCall -count 10 ./plugins/mcp/
func BenchmarkCall(b *testing.B) {
	params := json.RawMessage(`{"text":"hello"}`)
	run := func(b *testing.B, tool plugins.Tool, params json.RawMessage) {
		b.Helper()
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			if _, err := tool.Invoke(ctx, plugins.Call{ID: fmt.Sprint("call-", i), TaskID: "t", Attempt: 1, Params: params}); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("transport=stdio", func(b *testing.B) {
		_, reg := startStdio(quiet{b}, mcp.ServerConfig{})
		run(b, reg.tools["local/echo"], params)
	})
	b.Run("transport=http", func(b *testing.B) {
		_, _, _, reg := startHTTP(quiet{b}, mcp.ServerConfig{})
		run(b, reg.tools["web/echo"], params)
	})
	b.Run("transport=httptool", func(b *testing.B) {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var in struct{ Text string }
			body, _ := io.ReadAll(r.Body)
			json.Unmarshal(body, &in)
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(map[string]string{"text": in.Text, "key": r.Header.Get("Idempotency-Key")})
		}))
		b.Cleanup(hs.Close)
		tool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: []string{"127.0.0.1"}})
		if err != nil {
			b.Fatal(err)
		}
		p, _ := json.Marshal(map[string]string{"method": "POST", "url": hs.URL + "/echo", "body": `{"text":"hello"}`})
		run(b, tool, p)
	})
}

// quiet is a testing.TB whose logs are dropped: a benchmark's loop should
// not format log lines.
type quiet struct{ testing.TB }

func (quiet) Log(...any) {}
