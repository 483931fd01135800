package abi

import (
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// CallRequest is the JSON a guest passes to FuncCall:
//
//	{"tool": "ocr", "params": {...}, "key": "optional"}
//
// Key, when set, replaces the occurrence count in the call's identity, so a
// guest can name a call that must stay the same across code changes.
type CallRequest struct {
	Tool   string          `json:"tool"`
	Params json.RawMessage `json:"params,omitempty"`
	Key    string          `json:"key,omitempty"`
}

// Effect is the JSON a guest passes to FuncEmit: a tool call deferred until the
// task succeeds. It has the same shape as a CallRequest.
type Effect = CallRequest

// ErrorBody is the response body of a call that did not return StatusOK.
type ErrorBody struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

// BatchItem is one element of a FuncCallBatch response: the status of that
// call and, for StatusOK, its result, else the ErrorBody's message.
//
//	[{"status": "ok", "result": {...}}, {"status": "transient", "message": "..."}]
type BatchItem struct {
	Status  string          `json:"status"`
	Result  json.RawMessage `json:"result,omitempty"`
	Message string          `json:"message,omitempty"`
}

// LogLevel is the first argument of FuncLog.
type LogLevel int32

const (
	LogDebug LogLevel = iota
	LogInfo
	LogWarn
	LogError
)

func (l LogLevel) String() string {
	switch l {
	case LogDebug:
		return "debug"
	case LogInfo:
		return "info"
	case LogWarn:
		return "warn"
	case LogError:
		return "error"
	}
	return fmt.Sprintf("level(%d)", int32(l))
}

// DecodeCallRequest parses and validates a call or emit request. Errors carry
// StatusInvalidArgument. Params are returned in canonical form (RFC 8785), so
// two requests that differ only in spacing or key order are the same call.
func DecodeCallRequest(b []byte) (CallRequest, error) {
	var req CallRequest
	if len(b) > MaxRequestBytes {
		return req, Errorf(StatusInvalidArgument, "request is %d bytes, limit %d", len(b), MaxRequestBytes)
	}
	// Canonicalize first: it refuses duplicate members and trailing data,
	// which encoding/json would accept (and it matches field names
	// case-insensitively), so two spellings of one request are refused
	// rather than read as the same call.
	canon, members, err := canonicalObject(b)
	if err != nil {
		return req, Errorf(StatusInvalidArgument, "decode request: %v", err)
	}
	if members == nil {
		return req, Errorf(StatusInvalidArgument, "decode request: want a JSON object, got %s", kindOf(canon))
	}
	for _, m := range members {
		v := canon[m.colon+1 : m.end]
		var dst *string
		switch m.key {
		case "tool":
			dst = &req.Tool
		case "key":
			dst = &req.Key
		case "params":
			req.Params = v
			continue
		default:
			return CallRequest{}, Errorf(StatusInvalidArgument, "decode request: unknown field %q", m.key)
		}
		str, ok := canonicalString(v)
		if !ok {
			return CallRequest{}, Errorf(StatusInvalidArgument, "decode request: field %q must be a string", m.key)
		}
		*dst = str
	}
	if err := ValidToolName(req.Tool); err != nil {
		return CallRequest{}, err
	}
	if len(req.Key) > MaxKeyBytes || !utf8.ValidString(req.Key) {
		return CallRequest{}, Errorf(StatusInvalidArgument, "key must be valid UTF-8 of at most %d bytes", MaxKeyBytes)
	}
	if len(req.Params) == 0 {
		req.Params = json.RawMessage("null") // already canonical: it came from canon
	}
	return req, nil
}

// DecodeBatchRequest parses and validates a FuncCallBatch request: a JSON
// array of 1 to MaxBatchCalls call requests, each checked as
// DecodeCallRequest checks one call. Errors carry StatusInvalidArgument and
// name the offending element.
func DecodeBatchRequest(b []byte) ([]CallRequest, error) {
	if len(b) > MaxBatchRequestBytes {
		return nil, Errorf(StatusInvalidArgument, "batch is %d bytes, limit %d", len(b), MaxBatchRequestBytes)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(b, &elems); err != nil {
		return nil, Errorf(StatusInvalidArgument, "decode batch: want a JSON array of call requests: %v", err)
	}
	if len(elems) == 0 || len(elems) > MaxBatchCalls {
		return nil, Errorf(StatusInvalidArgument, "batch has %d calls; want 1 to %d", len(elems), MaxBatchCalls)
	}
	reqs := make([]CallRequest, len(elems))
	for i, e := range elems {
		r, err := DecodeCallRequest(e)
		if err != nil {
			msg := err.Error()
			var ae *Error
			if errors.As(err, &ae) {
				msg = ae.Message
			}
			return nil, Errorf(StatusInvalidArgument, "batch call %d: %s", i, msg)
		}
		reqs[i] = r
	}
	return reqs, nil
}

// ValidToolName is the one rule for a tool's name, wherever one is named: a
// guest's CallRequest.Tool and Effect.Tool, a tool registered with a host
// (plugins.Registry), and the tools an agent's manifest lists. A name is 1 to
// MaxToolNameBytes bytes of ASCII letters, digits and _ - . / so that
// namespaced names such as "acme/search" work. The error carries
// StatusInvalidArgument and names the offending character.
func ValidToolName(tool string) error {
	if tool == "" {
		return Errorf(StatusInvalidArgument, "tool name is empty")
	}
	if len(tool) > MaxToolNameBytes {
		return Errorf(StatusInvalidArgument, "tool name is %d bytes, limit %d", len(tool), MaxToolNameBytes)
	}
	for _, r := range tool {
		ok := r == '_' || r == '-' || r == '.' || r == '/' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return Errorf(StatusInvalidArgument, "tool name %q has %q; use letters, digits and _ - . /", tool, r)
		}
	}
	return nil
}

// EncodeErrorBody is the response body the host returns with a non-OK status.
func EncodeErrorBody(s Status, msg string) []byte {
	b, _ := json.Marshal(ErrorBody{Status: s.String(), Message: msg}) // cannot fail: two strings
	return b
}

// DecodeErrorBody turns a non-OK response back into an error carrying s.
func DecodeErrorBody(s Status, body []byte) error {
	var eb ErrorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Message == "" {
		return s
	}
	return &Error{Status: s, Message: eb.Message}
}
