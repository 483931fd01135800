// Package mcptest is an MCP server for tests, written with the official Go
// SDK: tools with each kind of annotation, one that dedupes by the call's
// idempotency key and one that does not, and ways to fail, hang, crash and
// hold a call while the client dies. Serve it over streamable HTTP
// (Handler) or stdio (RunStdio).
package mcptest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"

	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

// MetaKey is the _meta key the server reads the idempotency key from
// (mcp.MetaIdempotencyKey; repeated here so the server knows nothing of
// the client).
const MetaKey = "orloj/idempotency_key"

// Server is the test server and what it has seen.
type Server struct {
	MCP *mcpsdk.Server
	// Arrived receives the key of each held call once it has arrived (and,
	// for put and charge, been applied).
	Arrived chan string

	mu       sync.Mutex
	hold     map[string]bool           // tool → hold its next call
	requests map[string]int            // tool → calls received
	applied  map[string]int            // tool → effects applied
	done     map[string]map[string]any // put's results by key
	headers  []string                  // Idempotency-Key headers seen
	auth     []string                  // Authorization headers of calls
	release  chan struct{}
	closed   bool
}

func obj(props string, required ...string) json.RawMessage {
	req, _ := json.Marshal(required)
	if len(required) == 0 {
		req = []byte("[]")
	}
	return json.RawMessage(fmt.Sprintf(`{"type":"object","properties":{%s},"required":%s}`, props, req))
}

func yes() *bool { b := true; return &b }

// New returns the server with its tools:
//
//	echo   readOnlyHint                 {"text"} → the text, the key and header seen
//	put    idempotentHint               {"k","v"}: applied once per key
//	charge destructiveHint              {"amount"}: applied on every call
//	plain  no annotations               {} → "ok"
//	fail   readOnlyHint                 → an isError result
//	slow   readOnlyHint                 waits until the call is abandoned
//	big    readOnlyHint                 {"n"} → n bytes of text
//	env    readOnlyHint                 → the process's environment and working directory
//	crash  readOnlyHint                 exits the process (stdio)
func New() *Server {
	s := &Server{Arrived: make(chan string, 16), hold: map[string]bool{}, requests: map[string]int{},
		applied: map[string]int{}, done: map[string]map[string]any{}, release: make(chan struct{})}
	s.MCP = mcpsdk.NewServer(&mcpsdk.Implementation{Name: "mcptest", Version: "v1"}, nil)
	ro := &mcpsdk.ToolAnnotations{ReadOnlyHint: true}
	s.add("echo", ro, obj(`"text":{"type":"string"}`, "text"), func(ctx context.Context, req *mcpsdk.CallToolRequest, args map[string]any, key string) *mcpsdk.CallToolResult {
		header := ""
		if req.Extra != nil && req.Extra.Header != nil {
			header = req.Extra.Header.Get("Idempotency-Key")
		}
		text, _ := args["text"].(string)
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: text}},
			StructuredContent: map[string]any{"text": text, "key": key, "header": header}}
	})
	s.add("put", &mcpsdk.ToolAnnotations{IdempotentHint: true}, obj(`"k":{"type":"string"},"v":{"type":"string"}`, "k"),
		func(ctx context.Context, req *mcpsdk.CallToolRequest, args map[string]any, key string) *mcpsdk.CallToolResult {
			s.mu.Lock()
			res, seen := s.done[key]
			if !seen {
				s.applied["put"]++
				res = map[string]any{"k": args["k"], "v": args["v"], "applied": s.applied["put"]}
				s.done[key] = res
			}
			s.mu.Unlock()
			s.maybeHold(ctx, "put", key)
			return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "stored"}}, StructuredContent: res}
		})
	s.add("charge", &mcpsdk.ToolAnnotations{DestructiveHint: yes()}, obj(`"amount":{"type":"integer"}`, "amount"),
		func(ctx context.Context, req *mcpsdk.CallToolRequest, args map[string]any, key string) *mcpsdk.CallToolResult {
			s.mu.Lock()
			s.applied["charge"]++
			n := s.applied["charge"]
			s.mu.Unlock()
			s.maybeHold(ctx, "charge", key)
			return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: fmt.Sprintf("ch_%d", n)}},
				StructuredContent: map[string]any{"charge": fmt.Sprintf("ch_%d", n)}}
		})
	s.add("plain", nil, obj(""), func(context.Context, *mcpsdk.CallToolRequest, map[string]any, string) *mcpsdk.CallToolResult {
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "ok"}}}
	})
	s.add("fail", ro, obj(""), func(context.Context, *mcpsdk.CallToolRequest, map[string]any, string) *mcpsdk.CallToolResult {
		return &mcpsdk.CallToolResult{IsError: true, Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "card declined"}}}
	})
	s.add("slow", ro, obj(""), func(ctx context.Context, _ *mcpsdk.CallToolRequest, _ map[string]any, _ string) *mcpsdk.CallToolResult {
		select {
		case <-ctx.Done():
		case <-s.release:
		}
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "late"}}}
	})
	s.add("big", ro, obj(`"n":{"type":"integer"}`, "n"), func(_ context.Context, _ *mcpsdk.CallToolRequest, args map[string]any, _ string) *mcpsdk.CallToolResult {
		n, _ := args["n"].(float64)
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: strings.Repeat("x", int(n))}}}
	})
	s.add("env", ro, obj(""), func(context.Context, *mcpsdk.CallToolRequest, map[string]any, string) *mcpsdk.CallToolResult {
		wd, _ := os.Getwd()
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "env"}},
			StructuredContent: map[string]any{"env": os.Environ(), "dir": wd}}
	})
	s.add("crash", ro, obj(""), func(context.Context, *mcpsdk.CallToolRequest, map[string]any, string) *mcpsdk.CallToolResult {
		os.Exit(3)
		return nil
	})
	return s
}

type handler func(ctx context.Context, req *mcpsdk.CallToolRequest, args map[string]any, key string) *mcpsdk.CallToolResult

func (s *Server) add(name string, ann *mcpsdk.ToolAnnotations, schema json.RawMessage, h handler) {
	s.MCP.AddTool(&mcpsdk.Tool{Name: name, Annotations: ann, InputSchema: schema},
		func(ctx context.Context, req *mcpsdk.CallToolRequest) (*mcpsdk.CallToolResult, error) {
			var args map[string]any
			if len(req.Params.Arguments) > 0 {
				if err := json.Unmarshal(req.Params.Arguments, &args); err != nil {
					return nil, err
				}
			}
			key, _ := req.Params.Meta[MetaKey].(string)
			s.mu.Lock()
			s.requests[name]++
			if req.Extra != nil && req.Extra.Header != nil {
				if h := req.Extra.Header.Get("Idempotency-Key"); h != "" {
					s.headers = append(s.headers, h)
				}
				s.auth = append(s.auth, req.Extra.Header.Get("Authorization"))
			}
			s.mu.Unlock()
			return h(ctx, req, args, key), nil
		})
}

// Add adds a tool that answers "ok", read-only: listed clients are told.
func (s *Server) Add(name string) {
	s.add(name, &mcpsdk.ToolAnnotations{ReadOnlyHint: true}, obj(""), func(context.Context, *mcpsdk.CallToolRequest, map[string]any, string) *mcpsdk.CallToolResult {
		return &mcpsdk.CallToolResult{Content: []mcpsdk.Content{&mcpsdk.TextContent{Text: "ok"}}}
	})
}

// Hold makes the next call of tool (put or charge) wait, after it was
// applied, until its client goes away or Close: its answer is lost.
func (s *Server) Hold(tool string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hold[tool] = true
}

func (s *Server) maybeHold(ctx context.Context, tool, key string) {
	s.mu.Lock()
	h := s.hold[tool]
	s.hold[tool] = false
	s.mu.Unlock()
	if !h {
		return
	}
	s.Arrived <- key
	select {
	case <-ctx.Done():
	case <-s.release:
	}
}

// Counts returns how many calls of tool arrived and how many were applied.
func (s *Server) Counts(tool string) (requests, applied int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[tool], s.applied[tool]
}

// Headers returns the Idempotency-Key headers seen, in order.
func (s *Server) Headers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.headers...)
}

// Auth returns the Authorization header of each call over HTTP, in order
// ("" for a call without one).
func (s *Server) Auth() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...)
}

// Handler serves the server over streamable HTTP.
func (s *Server) Handler() http.Handler {
	return mcpsdk.NewStreamableHTTPHandler(func(*http.Request) *mcpsdk.Server { return s.MCP }, nil)
}

// RunStdio serves the server on stdin and stdout until stdin closes.
func (s *Server) RunStdio(ctx context.Context) error {
	return s.MCP.Run(ctx, &mcpsdk.StdioTransport{})
}

// Close releases held and slow calls.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.release)
	}
}
