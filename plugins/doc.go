// Package plugins owns the tools agents call: the Tool contract (name, params
// schema, in-doubt semantics, Invoke), the optional Reconciler, the Registry
// the host looks tools up in, and the built-in tools: http (allow-listed
// outbound HTTP), model (chat completions with function calling, over named
// endpoints speaking OpenAI chat completions or Anthropic Messages), kv
// (key/value writes staged per task) and stub (canned answers for tests and
// `orlojd run`).
//
// A tool knows nothing of ledgers, leases or Raft. The host records every call
// and decides, from the tool's Semantics, what to do with a call that is in
// doubt; the tool's part is to honour the idempotency key it is given (Call.ID)
// and to classify its failures with an abi.Status, because that status decides
// whether the result is recorded (tool error) or the call is tried again later
// (transient). The package imports only the standard library, abi and the
// OpenTelemetry propagation API (an HTTP tool's request carries the host's
// span of the call as its W3C traceparent: SetTraceContext).
package plugins
