package abi

import (
	"errors"
	"strings"
	"testing"
)

func TestDecodeCallRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		in         string
		wantTool   string
		wantParams string
		wantKey    string
		wantErr    string
	}{
		{name: "canonical params", in: `{"tool":"ocr","params":{"b":2, "a":1}}`, wantTool: "ocr", wantParams: `{"a":1,"b":2}`},
		{name: "absent params is null", in: `{"tool":"clock"}`, wantTool: "clock", wantParams: `null`},
		{name: "key", in: `{"tool":"pay","params":[1],"key":"order-7"}`, wantTool: "pay", wantParams: `[1]`, wantKey: "order-7"},
		{name: "unknown field", in: `{"tool":"x","parms":{}}`, wantErr: "unknown field"},
		{name: "empty tool", in: `{"params":{}}`, wantErr: "tool name is empty"},
		{name: "bad tool name", in: `{"tool":"a b"}`, wantErr: "tool name"},
		{name: "long tool name", in: `{"tool":"` + strings.Repeat("a", MaxToolNameBytes+1) + `"}`, wantErr: "limit"},
		{name: "long key", in: `{"tool":"a","key":"` + strings.Repeat("k", MaxKeyBytes+1) + `"}`, wantErr: "key"},
		{name: "not json", in: `{tool}`, wantErr: "decode request"},
		{name: "trailing", in: `{"tool":"a"}{}`, wantErr: "after the value"},
		{name: "trailing bracket", in: `{"tool":"x"}]`, wantErr: "decode request"},
		{name: "case-folded duplicate", in: `{"tool":"x","Tool":"y"}`, wantErr: "unknown field"},
		{name: "duplicate tool", in: `{"tool":"x","tool":"y"}`, wantErr: "duplicate"},
		{name: "tool not a string", in: `{"tool":1}`, wantErr: "must be a string"},
		{name: "not an object", in: `[1]`, wantErr: "object"},
		{name: "null", in: `null`, wantErr: "object"},
		{name: "escaped key", in: `{"key":"a\"b\u00e9","tool":"t"}`, wantTool: "t", wantParams: `null`, wantKey: "a\"bé"},
		{name: "members in any order", in: `{"params":{"z":[true]},"key":"k","tool":"t"}`, wantTool: "t", wantParams: `{"z":[true]}`, wantKey: "k"},
		// "K\ud800" would otherwise be read as "K\ufffd": one call ID for two keys.
		{name: "lone surrogate in a key", in: `{"tool":"a","key":"K\ud800"}`, wantErr: "lone surrogate"},
		{name: "lone surrogate in params", in: `{"tool":"a","params":{"k":"\udfff"}}`, wantErr: "at params.k"},
		{name: "duplicate param key", in: `{"tool":"a","params":{"x":1,"x":2}}`, wantErr: "duplicate"},
		{name: "oversize", in: `{"tool":"a","params":"` + strings.Repeat("x", MaxRequestBytes) + `"}`, wantErr: "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := DecodeCallRequest([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				if !errors.Is(err, StatusInvalidArgument) {
					t.Fatalf("err %v does not carry StatusInvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Tool != tt.wantTool || string(req.Params) != tt.wantParams || req.Key != tt.wantKey {
				t.Fatalf("got %+v (params %s)", req, req.Params)
			}
		})
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	for s := StatusOK; s <= StatusFault; s++ {
		got, ok := ParseStatus(s.String())
		if !ok || got != s {
			t.Errorf("ParseStatus(%q) = %v, %v", s.String(), got, ok)
		}
	}
	if Status(99).String() != "status(99)" {
		t.Errorf("unknown status renders as %q", Status(99).String())
	}
	err := Errorf(StatusTransient, "ocr: %s", "503")
	wrapped := errors.Join(errors.New("attempt 2"), err)
	if !errors.Is(wrapped, StatusTransient) || errors.Is(wrapped, StatusToolError) {
		t.Fatalf("errors.Is does not follow the status: %v", wrapped)
	}
	if s, ok := StatusOf(wrapped); !ok || s != StatusTransient {
		t.Fatalf("StatusOf = %v, %v", s, ok)
	}
	if _, ok := StatusOf(errors.New("disk on fire")); ok {
		t.Fatal("StatusOf found a status in a plain error")
	}
	body := EncodeErrorBody(StatusToolError, "no such invoice")
	back := DecodeErrorBody(StatusToolError, body)
	var ae *Error
	if !errors.As(back, &ae) || ae.Status != StatusToolError || ae.Message != "no such invoice" {
		t.Fatalf("error body round trip: %s -> %#v", body, back)
	}
	if DecodeErrorBody(StatusTransient, []byte("junk")) != StatusTransient {
		t.Fatal("junk body should decode to the bare status")
	}
}

func FuzzDecodeCallRequest(f *testing.F) {
	for _, s := range []string{`{"tool":"ocr","params":{"b":2,"a":1}}`, `{"tool":"x","key":"k"}`, `{}`, `[]`, `{"tool":"a","params":1e999}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		req, err := DecodeCallRequest(in)
		if err != nil {
			if !errors.Is(err, StatusInvalidArgument) {
				t.Fatalf("error without InvalidArgument: %v", err)
			}
			return
		}
		if req.Tool == "" {
			t.Fatal("accepted an empty tool name")
		}
		canon, err := Canonicalize(req.Params)
		if err != nil || string(canon) != string(req.Params) {
			t.Fatalf("params not canonical: %s", req.Params)
		}
	})
}

// TestValidToolName: the one tool-name rule, which the host's registry and
// the API's manifest check share with the guest's call decoding.
func TestValidToolName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ok   bool
	}{
		{"http", true},
		{"acme/search", true},
		{"orloj.now", true},
		{"_private-tool.v2", true},
		{strings.Repeat("a", MaxToolNameBytes), true},
		{"", false},
		{strings.Repeat("a", MaxToolNameBytes+1), false},
		{"two words", false},
		{"tool!", false},
		{"outil-é", false},
	}
	for _, tc := range tests {
		err := ValidToolName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidToolName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, StatusInvalidArgument) {
			t.Errorf("ValidToolName(%q) = %v, not invalid_argument", tc.name, err)
		}
	}
}

func TestDecodeBatchRequest(t *testing.T) {
	reqs, err := DecodeBatchRequest([]byte(`[{"tool":"a","params":{"b":1, "a":2}},{"tool":"a","key":"k"}]`))
	if err != nil || len(reqs) != 2 || string(reqs[0].Params) != `{"a":2,"b":1}` || reqs[1].Key != "k" || string(reqs[1].Params) != "null" {
		t.Fatalf("reqs %+v, err %v", reqs, err)
	}
	bigParam := `"` + strings.Repeat("x", MaxRequestBytes) + `"`
	for _, tc := range []struct{ name, batch, want string }{
		{"over the batch limit", "[" + strings.Repeat(" ", MaxBatchRequestBytes) + "]", "batch is 4194306 bytes, limit 4194304"},
		{"a call over the call limit", `[{"tool":"a","params":` + bigParam + `}]`, "batch call 0: request is"},
		{"null", `null`, "0 calls"},
		{"trailing data", `[{"tool":"a"}] x`, "want a JSON array"},
	} {
		_, err := DecodeBatchRequest([]byte(tc.batch))
		if st, _ := StatusOf(err); st != StatusInvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want invalid_argument with %q", tc.name, err, tc.want)
		}
	}
}
