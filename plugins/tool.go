package plugins

import (
	"context"
	"encoding/json"
)

// Semantics says what the host may do with a call that is in doubt: its
// INTENT is recorded but its RESULT is not, so the effect may or may not have
// happened. The host never guesses; the tool declares which answer is safe.
type Semantics string

const (
	// ReadOnly tools have no effect; the host re-invokes them freely.
	ReadOnly Semantics = "read_only"
	// Idempotent tools apply a call at most once per idempotency key (Call.ID),
	// so the host re-invokes them with the same key.
	Idempotent Semantics = "idempotent"
	// Reconcile tools can say whether a call happened; the host asks them
	// (Reconciler) and records the answer. A tool that declares Reconcile must
	// implement Reconciler; the Registry refuses it otherwise.
	Reconcile Semantics = "reconcile"
	// Unsafe tools can neither dedupe nor tell; the host sends the task to the
	// dead-letter queue as in_doubt and a person decides.
	Unsafe Semantics = "unsafe"
)

// Valid reports whether s is one of the four declared semantics.
func (s Semantics) Valid() bool {
	switch s {
	case ReadOnly, Idempotent, Reconcile, Unsafe:
		return true
	}
	return false
}

// Call is one invocation of a tool as the host hands it over.
type Call struct {
	// ID is derived from the task, tool, canonical params and occurrence, so it
	// is the same on every attempt of the same call: it is the idempotency key.
	ID      string
	TaskID  string
	Attempt int
	// Params is the guest's params in canonical JSON (RFC 8785).
	Params json.RawMessage
}

// Result is what a successful call returns. The host records it and replays it
// on later attempts without invoking the tool.
type Result struct {
	// Body is returned to the guest as the call's response. It must be JSON of
	// at most abi.MaxResponseBytes.
	Body json.RawMessage
	// Usage is the model token usage of the call, if any. It is recorded with
	// the result so budgets count it once and a replay costs 0 tokens.
	Usage *Usage
}

// Usage is model token usage, as OpenAI-compatible APIs report it, whatever
// the provider. PromptTokens counts every input token, read from a cache or
// not, so budgets (prompt + completion) mean the same for every provider;
// the cache fields say how many of them were cache reads and writes.
type Usage struct {
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	// CachedTokens are the prompt tokens read from the provider's prompt
	// cache (OpenAI's prompt_tokens_details.cached_tokens, Anthropic's
	// cache_read_input_tokens).
	CachedTokens int64 `json:"cached_tokens,omitempty"`
	// CacheCreationTokens are the prompt tokens written to the cache
	// (Anthropic's cache_creation_input_tokens).
	CacheCreationTokens int64 `json:"cache_creation_tokens,omitempty"`
	// Model is the model that answered, for the node's metrics; not part
	// of what is recorded (the result carries it).
	Model string `json:"-"`
}

// Tool is something an agent can call. Implementations must be safe for
// concurrent use: many tasks call the same tool at once.
type Tool interface {
	// Name is the name guests call the tool by (abi.CallRequest.Tool).
	Name() string
	// Schema is the JSON Schema of the params. It documents the tool for agent
	// authors and models; Invoke still validates what it receives.
	Schema() json.RawMessage
	// Semantics tells the host how to resolve a call that is in doubt.
	Semantics() Semantics
	// Invoke performs the call. Errors must carry an abi.Status:
	// abi.StatusTransient (may succeed later: not recorded, re-invoked on a later
	// attempt), abi.StatusToolError (permanent: recorded and replayed),
	// abi.StatusInvalidArgument (bad params), abi.StatusPermissionDenied (the
	// tool's policy refuses the call). The host treats an error without a status
	// as transient.
	Invoke(ctx context.Context, call Call) (Result, error)
}

// Reconciler is implemented by tools with Semantics Reconcile.
type Reconciler interface {
	// Reconcile reports whether the effect of call.ID happened, and its result
	// if so. applied=false means the effect did not happen and will not happen
	// later, so the host may invoke the tool again; a tool that cannot yet know
	// returns an error carrying abi.StatusTransient instead.
	Reconcile(ctx context.Context, call Call) (res Result, applied bool, err error)
}
