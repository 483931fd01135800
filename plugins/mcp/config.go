package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

// Defaults of ServerConfig.
const (
	DefaultTimeout = 30 * time.Second
	// DefaultMaxResponseBytes is the http tool's cap, for the same reason:
	// room under abi.MaxResponseBytes for the envelope.
	DefaultMaxResponseBytes = plugins.DefaultMaxResponseBytes
)

// MetaIdempotencyKey is the `_meta` key every tools/call carries, with the
// call ID as its value: the same on every attempt of the same call, so a
// server that dedupes by it applies the call once. Over HTTP the same value
// is also sent as the Idempotency-Key header.
const MetaIdempotencyKey = "orloj/idempotency_key"

// ServerConfig defines one MCP server: where it is (a streamable HTTP URL,
// or a command the node starts and talks to over stdio) and what its tools
// mean to the ledger. It is a plain value; Validate names the first bad
// field. In JSON, Timeout is a duration string ("30s").
type ServerConfig struct {
	// Name prefixes the server's tools: tool "search" of server "docs" is
	// the Orloj tool "docs/search".
	Name string `json:"name"`
	// URL is a streamable HTTP endpoint (http or https). Exactly one of URL
	// and Command is set.
	URL string `json:"url,omitempty"`
	// Command and Args start a stdio server. The node starts it in its own
	// working directory under the data dir, restarts it with capped backoff
	// when it dies, and gives it only Env (plus PATH and HOME): the node's
	// own environment, which may hold its tokens, is not passed on.
	Command string            `json:"command,omitempty"`
	Args    []string          `json:"args,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
	// Tools overrides the semantics of tools by their MCP name; a tool not
	// listed takes them from its annotations (SemanticsFromAnnotations).
	Tools map[string]plugins.Semantics `json:"tools,omitempty"`
	// Timeout bounds one call, and connecting with its tools/list;
	// default DefaultTimeout.
	Timeout time.Duration `json:"timeout,omitempty"`
	// MaxResponseBytes bounds a call's result as JSON; default
	// DefaultMaxResponseBytes, at most abi.MaxResponseBytes.
	MaxResponseBytes int64 `json:"max_response_bytes,omitempty"`
}

// Validate reports the first invalid field of c, by name.
func (c ServerConfig) Validate() error {
	if c.Name == "" {
		return errors.New("ServerConfig.Name: is empty")
	}
	if strings.Contains(c.Name, "/") {
		return fmt.Errorf("ServerConfig.Name: %q has a /; the server's tools are named NAME/TOOL", c.Name)
	}
	// The shortest tool name the server can have must be valid.
	if err := abi.ValidToolName(c.Name + "/x"); err != nil {
		return fmt.Errorf("ServerConfig.Name: %w", err)
	}
	switch {
	case c.URL == "" && c.Command == "":
		return errors.New("ServerConfig.URL: set url (streamable HTTP) or command (stdio)")
	case c.URL != "" && c.Command != "":
		return errors.New("ServerConfig.URL: set url or command, not both")
	case c.URL != "":
		u, err := url.Parse(c.URL)
		if err != nil {
			return fmt.Errorf("ServerConfig.URL: %w", err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("ServerConfig.URL: %q is not an absolute http or https URL", u.Redacted())
		}
		if len(c.Args) > 0 || len(c.Env) > 0 {
			return errors.New("ServerConfig.Args: args and env are for a command, not a url")
		}
	}
	for k := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("ServerConfig.Env: %q is not a variable name", k)
		}
	}
	if err := plugins.CheckMCPSemantics(c.Tools); err != nil {
		return fmt.Errorf("ServerConfig.Tools%w", err)
	}
	if c.Timeout < 0 {
		return fmt.Errorf("ServerConfig.Timeout: %s is negative", c.Timeout)
	}
	if c.MaxResponseBytes < 0 || c.MaxResponseBytes > abi.MaxResponseBytes {
		return fmt.Errorf("ServerConfig.MaxResponseBytes: %d is outside 0..%d (0 means %d)",
			c.MaxResponseBytes, abi.MaxResponseBytes, DefaultMaxResponseBytes)
	}
	return nil
}

func (c ServerConfig) withDefaults() ServerConfig {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxResponseBytes == 0 {
		c.MaxResponseBytes = DefaultMaxResponseBytes
	}
	return c
}

// Transport is how the node reaches a server.
type Transport string

const (
	TransportHTTP  Transport = "http"
	TransportStdio Transport = "stdio"
)

// Transport reports which transport c names.
func (c ServerConfig) Transport() Transport {
	if c.URL != "" {
		return TransportHTTP
	}
	return TransportStdio
}

type serverConfigJSON struct {
	Name             string                       `json:"name"`
	URL              string                       `json:"url,omitempty"`
	Command          string                       `json:"command,omitempty"`
	Args             []string                     `json:"args,omitempty"`
	Env              map[string]string            `json:"env,omitempty"`
	Tools            map[string]plugins.Semantics `json:"tools,omitempty"`
	Timeout          string                       `json:"timeout,omitempty"`
	MaxResponseBytes int64                        `json:"max_response_bytes,omitempty"`
}

// UnmarshalJSON reads the definition, refusing unknown keys (a misspelt
// "comand" must not start nothing silently) and reading timeout as a
// duration string.
func (c *ServerConfig) UnmarshalJSON(b []byte) error {
	var j serverConfigJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return fmt.Errorf("mcp server: %w", err)
	}
	out := ServerConfig{Name: j.Name, URL: j.URL, Command: j.Command, Args: j.Args, Env: j.Env, Tools: j.Tools,
		MaxResponseBytes: j.MaxResponseBytes}
	if j.Timeout != "" {
		d, err := time.ParseDuration(j.Timeout)
		if err != nil {
			return fmt.Errorf("mcp server %q: timeout: %q is not a duration (like 30s)", j.Name, j.Timeout)
		}
		out.Timeout = d
	}
	*c = out
	return nil
}

// MarshalJSON writes the shape UnmarshalJSON reads.
func (c ServerConfig) MarshalJSON() ([]byte, error) {
	j := serverConfigJSON{Name: c.Name, URL: c.URL, Command: c.Command, Args: c.Args, Env: c.Env, Tools: c.Tools,
		MaxResponseBytes: c.MaxResponseBytes}
	if c.Timeout != 0 {
		j.Timeout = c.Timeout.String()
	}
	return json.Marshal(j)
}
