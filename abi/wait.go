package abi

import (
	"encoding/json"
	"unicode/utf8"
)

// WaitKind names what a FuncWait request waits for.
type WaitKind string

const (
	// WaitSleep waits until a time: Until (unix nanoseconds), or Duration
	// nanoseconds after the host first met the call.
	WaitSleep WaitKind = "sleep"
	// WaitSignal waits for a signal named Name sent to the task, at most
	// Timeout nanoseconds (0: without end) after the host first met the call.
	WaitSignal WaitKind = "signal"
)

// WaitRequest is the JSON a guest passes to FuncWait:
//
//	{"kind": "sleep", "duration": 3000000000}
//	{"kind": "sleep", "until": 1767225600000000000}
//	{"kind": "signal", "name": "approved", "timeout": 86400000000000}
//
// A wait's identity, like a call's, is its canonical request and how many
// identical waits came before it in the run, so a replay finds the answer
// recorded for it.
type WaitRequest struct {
	Kind     WaitKind `json:"kind"`
	Duration int64    `json:"duration,omitempty"`
	Until    int64    `json:"until,omitempty"`
	Name     string   `json:"name,omitempty"`
	Timeout  int64    `json:"timeout,omitempty"`
}

// WaitResult is the body of a sleep's answer: the time it woke for.
type WaitResult struct {
	Until int64 `json:"until"`
}

// Limits of waits and signals.
const (
	// MaxSignalNameBytes bounds a signal's name; names follow the rule of
	// tool names (ValidSignalName).
	MaxSignalNameBytes = 128
	// MaxSignalBytes bounds a signal's payload (JSON).
	MaxSignalBytes = 256 << 10
	// MaxWaitRequestBytes bounds a FuncWait request.
	MaxWaitRequestBytes = 1 << 10
)

// ValidSignalName is the rule for a signal's name: 1 to MaxSignalNameBytes
// bytes of ASCII letters, digits and _ - . / : (so names such as
// "approval:refund" work).
func ValidSignalName(name string) error {
	if name == "" {
		return Errorf(StatusInvalidArgument, "signal name is empty")
	}
	if len(name) > MaxSignalNameBytes {
		return Errorf(StatusInvalidArgument, "signal name is %d bytes, limit %d", len(name), MaxSignalNameBytes)
	}
	for _, r := range name {
		ok := r == '_' || r == '-' || r == '.' || r == '/' || r == ':' ||
			(r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
		if !ok {
			return Errorf(StatusInvalidArgument, "signal name %q has %q; use letters, digits and _ - . / :", name, r)
		}
	}
	return nil
}

// DecodeWaitRequest parses and validates a FuncWait request and returns it
// with its canonical form (the bytes its identity is derived from). Errors
// carry StatusInvalidArgument.
func DecodeWaitRequest(b []byte) (WaitRequest, []byte, error) {
	var req WaitRequest
	if len(b) > MaxWaitRequestBytes {
		return req, nil, Errorf(StatusInvalidArgument, "wait request is %d bytes, limit %d", len(b), MaxWaitRequestBytes)
	}
	canon, err := Canonicalize(b)
	if err != nil {
		return req, nil, Errorf(StatusInvalidArgument, "decode wait request: %v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(canon, &fields); err != nil {
		return req, nil, Errorf(StatusInvalidArgument, "decode wait request: want a JSON object: %v", err)
	}
	for name, v := range fields {
		var dst any
		switch name {
		case "kind":
			dst = &req.Kind
		case "name":
			dst = &req.Name
		case "duration":
			dst = &req.Duration
		case "until":
			dst = &req.Until
		case "timeout":
			dst = &req.Timeout
		default:
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "decode wait request: unknown field %q", name)
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "decode wait request: field %q: %v", name, err)
		}
	}
	switch req.Kind {
	case WaitSleep:
		switch {
		case req.Name != "" || req.Timeout != 0:
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "a sleep takes duration or until, not name or timeout")
		case (req.Duration == 0) == (req.Until == 0):
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "a sleep takes exactly one of duration and until")
		case req.Duration < 0 || req.Until < 0:
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "a sleep's duration and until must be positive")
		}
	case WaitSignal:
		if err := ValidSignalName(req.Name); err != nil {
			return WaitRequest{}, nil, err
		}
		switch {
		case req.Duration != 0 || req.Until != 0:
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "a signal wait takes name and timeout, not duration or until")
		case req.Timeout < 0:
			return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "a signal wait's timeout must not be negative")
		}
	default:
		return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "wait kind %q; want %q or %q", req.Kind, WaitSleep, WaitSignal)
	}
	if !utf8.Valid(canon) {
		return WaitRequest{}, nil, Errorf(StatusInvalidArgument, "wait request is not valid UTF-8")
	}
	return req, canon, nil
}
