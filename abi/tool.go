package abi

import "encoding/json"

// ToolModuleName is the import module of tool plugins: WebAssembly modules
// that serve one tool for the host (docs/plugins.md). It offers a subset of
// orloj_v1 with the same signatures and memory protocol and a plugin's
// meaning for each: FuncInput reads the ToolRequest, FuncOutput answers it
// (a ToolAnswer), FuncCall asks the host for a capability the tool's
// definition grants (ToolCapHTTP), FuncResponse, FuncLog and FuncNow are as
// for agents. A plugin imports nothing else (WASI aside).
const ToolModuleName = "orloj_tool_v1"

// ToolFuncs are the functions ToolModuleName exports.
var ToolFuncs = []string{FuncInput, FuncOutput, FuncCall, FuncResponse, FuncLog, FuncNow}

// ToolCapHTTP is the capability a plugin calls (FuncCall with this tool
// name) to send an HTTP request through the host: to the hosts its
// definition allows, with the call's Idempotency-Key, and with headers
// whose values may name the node's secrets (ToolSecretRef), which the host
// fills in; the plugin never sees them. Params and result are the http
// tool's.
const ToolCapHTTP = "http"

// ToolRequest is what FuncInput gives a plugin: one invocation, or, with
// Describe, a request to describe itself (then the other fields are empty).
type ToolRequest struct {
	Describe bool            `json:"describe,omitempty"`
	CallID   string          `json:"call_id,omitempty"` // the call's idempotency key
	TaskID   string          `json:"task_id,omitempty"`
	Attempt  int             `json:"attempt,omitempty"`
	Params   json.RawMessage `json:"params,omitempty"`
}

// ToolAnswer is what a plugin passes to FuncOutput: the call's result, or a
// classified error (Status is an abi status name: tool_error,
// invalid_argument, not_found, permission_denied or transient).
type ToolAnswer struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *ErrorBody      `json:"error,omitempty"`
}

// ToolDescription is a plugin's answer to a Describe request (as its
// ToolAnswer's Result): the tool it serves.
type ToolDescription struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"` // JSON Schema of the params
	// Semantics: read_only, idempotent or unsafe (what repeating a call
	// does); the tool's definition may override it.
	Semantics string `json:"semantics"`
}

// ToolSecretRef is a header value a plugin sends in place of a secret:
// {"secret": "slack-token", "format": "Bearer %s"}. Format defaults to "%s".
type ToolSecretRef struct {
	Secret string `json:"secret"`
	Format string `json:"format,omitempty"`
}
