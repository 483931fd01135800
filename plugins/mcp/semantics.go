package mcp

import (
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orloj/orloj/plugins"
)

// SemanticsFromAnnotations maps a tool's MCP annotations to what the host
// may do with a call of it that is in doubt:
//
//	readOnlyHint              → read_only
//	idempotentHint            → idempotent (a repeat with the same
//	                            arguments has no further effect)
//	anything else, or nothing → unsafe
//
// destructiveHint without idempotentHint is unsafe, and so is
// destructiveHint false ("additive"): repeating an additive call adds
// twice. No annotations at all is unsafe too: the spec's defaults are
// destructive and not idempotent, and a wrong guess here means an effect
// applied twice, where unsafe costs a person's look at a dead letter. The
// hints come from the server; an operator who trusts it less overrides them
// (ServerConfig.Tools).
func SemanticsFromAnnotations(a *mcpsdk.ToolAnnotations) plugins.Semantics {
	switch {
	case a == nil:
		return plugins.Unsafe
	case a.ReadOnlyHint:
		return plugins.ReadOnly
	case a.IdempotentHint:
		return plugins.Idempotent
	}
	return plugins.Unsafe
}

// semanticsOf is a tool's semantics under c: the override, else the
// annotations'.
func (c ServerConfig) semanticsOf(t *mcpsdk.Tool) plugins.Semantics {
	if s, ok := c.Tools[t.Name]; ok {
		return s
	}
	return SemanticsFromAnnotations(t.Annotations)
}
