package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"unicode/utf8"

	"github.com/orloj/orloj/abi"
)

// KVToolName is the name of the kv tool.
const KVToolName = "kv"

// MaxKVKeyBytes bounds a kv key.
const MaxKVKeyBytes = 512

// KVWrite is one staged write: a put of Value, or a delete.
type KVWrite struct {
	Key    string
	Value  json.RawMessage // ignored when Delete is set
	Delete bool
}

// KVBackend stores the kv tool's data. Writes are staged per task and become
// visible to other tasks only when the host completes the task, in the same
// step that records its success (so a task's writes and its outcome are one
// fact), and are dropped if the task is discarded. The host implements it
// through Raft; MemKV is the single-process implementation.
//
// Staged writes belong to the task, not to an attempt, and must outlive a
// failed attempt: a retried put whose result the ledger replays is not
// invoked again, so its write must still be staged. Only completing or
// discarding the task ends them.
type KVBackend interface {
	// Get returns the value of key as taskID sees it: its own staged write of
	// the key if any (a staged delete reads as not found), else the committed
	// value.
	Get(ctx context.Context, taskID, key string) (value json.RawMessage, found bool, err error)
	// Stage records w for taskID, replacing any earlier staged write of the
	// same key. Staging the same write twice has the effect of staging it
	// once, as re-invoking an idempotent call requires.
	Stage(ctx context.Context, taskID string, w KVWrite) error
}

// KVTool is the kv tool: staged key/value writes. Params:
//
//	{"op": "get", "key": "k"}              -> {"found": true, "value": <json>}
//	{"op": "put", "key": "k", "value": 1}  -> {"staged": true}
//	{"op": "delete", "key": "k"}           -> {"staged": true}
//
// Keys are 1 to MaxKVKeyBytes bytes of UTF-8; values are any JSON, null
// included. A get of a missing key returns {"found": false, "value": null}.
type KVTool struct {
	backend KVBackend
}

// NewKV returns the kv tool over backend.
func NewKV(backend KVBackend) *KVTool { return &KVTool{backend: backend} }

func (t *KVTool) Name() string            { return KVToolName }
func (t *KVTool) Semantics() Semantics    { return Idempotent }
func (t *KVTool) Schema() json.RawMessage { return kvSchema }

var kvSchema = json.RawMessage(`{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "kv",
  "description": "Read and stage key/value writes; writes become visible to other tasks when this task succeeds.",
  "type": "object",
  "properties": {
    "op": {"enum": ["get", "put", "delete"]},
    "key": {"type": "string", "minLength": 1, "maxLength": 512},
    "value": {}
  },
  "required": ["op", "key"],
  "additionalProperties": false
}`)

type kvParams struct {
	Op    string          `json:"op"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

type kvGetResult struct {
	Found bool            `json:"found"`
	Value json.RawMessage `json:"value"`
}

var stagedResult = json.RawMessage(`{"staged":true}`)

// Invoke performs one get, put or delete for call.TaskID.
func (t *KVTool) Invoke(ctx context.Context, call Call) (Result, error) {
	p, err := parseKVParams(call.Params)
	if err != nil {
		return Result{}, err
	}
	if call.TaskID == "" {
		return Result{}, abi.Errorf(abi.StatusInvalidArgument, "kv %s: call has no task ID", p.Op)
	}
	switch p.Op {
	case "get":
		v, found, err := t.backend.Get(ctx, call.TaskID, p.Key)
		if err != nil {
			return Result{}, annotate(err, "kv get %q", p.Key)
		}
		if !found || len(v) == 0 {
			v = json.RawMessage("null")
		}
		out, err := marshalBody(kvGetResult{Found: found, Value: v})
		if err != nil {
			return Result{}, annotate(err, "kv get %q", p.Key)
		}
		return Result{Body: out}, nil
	case "put":
		if err := t.backend.Stage(ctx, call.TaskID, KVWrite{Key: p.Key, Value: p.Value}); err != nil {
			return Result{}, annotate(err, "kv put %q", p.Key)
		}
	case "delete":
		if err := t.backend.Stage(ctx, call.TaskID, KVWrite{Key: p.Key, Delete: true}); err != nil {
			return Result{}, annotate(err, "kv delete %q", p.Key)
		}
	}
	return Result{Body: stagedResult}, nil
}

func parseKVParams(params json.RawMessage) (kvParams, error) {
	var p kvParams
	if err := decodeParams(params, &p); err != nil {
		return p, err
	}
	if p.Key == "" || len(p.Key) > MaxKVKeyBytes || !utf8.ValidString(p.Key) {
		return p, abi.Errorf(abi.StatusInvalidArgument, "key must be 1..%d bytes of UTF-8", MaxKVKeyBytes)
	}
	switch p.Op {
	case "put":
		// "value": null is a value; a missing value is a mistake, told apart
		// because encoding/json hands a RawMessage the literal null.
		if len(p.Value) == 0 {
			return p, abi.Errorf(abi.StatusInvalidArgument, "put %q: value is required (null is a value)", p.Key)
		}
		p.Value = bytes.Clone(p.Value)
	case "get", "delete":
		if len(p.Value) != 0 {
			return p, abi.Errorf(abi.StatusInvalidArgument, "%s %q: takes no value", p.Op, p.Key)
		}
	default:
		return p, abi.Errorf(abi.StatusInvalidArgument, "op %q: want get, put or delete", p.Op)
	}
	return p, nil
}
