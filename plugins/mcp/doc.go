// Package mcp makes the tools of MCP (Model Context Protocol) servers Orloj
// tools: a streamable HTTP server by URL, or a stdio server the node starts
// from a command and restarts when it dies. Tool "search" of server "docs"
// becomes the tool "docs/search", with the tool's input schema as its
// schema and semantics from its annotations unless the definition says
// otherwise.
//
// Every call goes through the host's ledger like any other; this package
// adds what MCP itself lacks for that: each tools/call carries the call ID
// as its idempotency key (in `_meta` under MetaIdempotencyKey and, over
// HTTP, as the Idempotency-Key header), and failures are classified the way
// the host needs them (transient, tool_error, invalid_argument, not_found,
// plugins.ErrNotSent when nothing left the node).
package mcp
