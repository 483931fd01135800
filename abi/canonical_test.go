package abi

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCanonicalize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
	}{
		// RFC 8785 section 3.2.2 example.
		{"rfc example",
			`{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],"string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/","literals":[null,true,false]}`,
			`{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`},
		// RFC 8785 section 3.2.3: sorted by UTF-16 code units, so U+1F600
		// (surrogates D83D DE00) sorts before U+FB33.
		{"utf16 order",
			`{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			"{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"whitespace", " { \"b\" : [ 1 , 2 ] ,\n\"a\" : { } } ", `{"a":{},"b":[1,2]}`},
		{"nested sort", `{"z":{"y":1,"x":2},"a":[{"d":1,"c":2}]}`, `{"a":[{"c":2,"d":1}],"z":{"x":2,"y":1}}`},
		{"no html escape", `"<a&b>"`, `"<a&b>"`},
		{"null", `null`, `null`},
		{"zero", `0`, `0`},
		{"negative zero", `-0`, `0`},
		{"negative zero float", `-0.0e5`, `0`},
		{"integer", `9007199254740992`, `9007199254740992`},
		{"1e21 exponent", `1e21`, `1e+21`},
		{"1e20 plain", `1e20`, `100000000000000000000`},
		{"small plain", `0.000001`, `0.000001`},
		{"small exponent", `1e-7`, `1e-7`},
		{"negative", `-1.5e-7`, `-1.5e-7`},
		{"max double", `1.7976931348623157e308`, `1.7976931348623157e+308`},
		{"min denormal", `5e-324`, `5e-324`},
		{"fraction", `123.456`, `123.456`},
		{"control chars", `"\u0001\u001f\t"`, `"\u0001\u001f\t"`},
		{"line separator kept", `"\u2028"`, "\"\u2028\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Canonicalize([]byte(tt.in))
			if err != nil {
				t.Fatalf("Canonicalize(%s): %v", tt.in, err)
			}
			if string(got) != tt.want {
				t.Fatalf("Canonicalize(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
			// Canonical form is a fixed point.
			again, err := Canonicalize(got)
			if err != nil || string(again) != string(got) {
				t.Fatalf("not idempotent: %s -> %s (%v)", got, again, err)
			}
		})
	}
}

func TestCanonicalizeRejects(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in string }{
		{"empty", ``},
		{"duplicate key", `{"a":1,"a":2}`},
		{"trailing data", `{} {}`},
		{"trailing garbage", `1 x`},
		{"infinite", `1e400`},
		{"invalid utf8", "\"\xff\""},
		{"unterminated", `{"a":`},
		{"bare word", `nope`},
		{"too deep", string(make([]byte, 0)) + deep(maxDepth+2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := Canonicalize([]byte(tt.in)); err == nil {
				t.Fatalf("Canonicalize(%q) = %s, want error", tt.in, got)
			}
		})
	}
}

func deep(n int) string {
	b := make([]byte, 0, 2*n)
	for range n {
		b = append(b, '[')
	}
	for range n {
		b = append(b, ']')
	}
	return string(b)
}

// FuzzCanonicalize checks that any accepted input canonicalizes to valid JSON
// that means the same thing and is a fixed point.
func FuzzCanonicalize(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `1e30`, `-0`, `"\u00e9"`, `[[[]]]`, `{"a":{"a":{}}}`, `3.14159`, `"\ud83d\ude00"`,
		`"K\ud800"`, `{"k":["\udc00"]}`, "\"K\xfe\"", `{"a":1,"a":2}`, `"\\ud800"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Canonicalize(in)
		if cerr := CheckJSON(in); (cerr == nil) != (err == nil) {
			t.Fatalf("CheckJSON(%q) = %v but Canonicalize: %v", in, cerr, err)
		}
		if err != nil {
			return
		}
		if !json.Valid(out) {
			t.Fatalf("invalid JSON out: %q from %q", out, in)
		}
		again, err := Canonicalize(out)
		if err != nil || string(again) != string(out) {
			t.Fatalf("not a fixed point: %q -> %q (%v)", out, again, err)
		}
		var a, b any
		if json.Unmarshal(in, &a) == nil && json.Unmarshal(out, &b) == nil && !reflect.DeepEqual(a, b) {
			t.Fatalf("meaning changed: %q -> %q", in, out)
		}
	})
}

func TestCheckJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		path     string // "" with reason "" means accepted
		reason   string
	}{
		{"plain", `{"a":[1,"x",{"b":null}]}`, "", ""},
		{"surrogate pair", `"\ud83d\ude00"`, "", ""},
		{"escaped backslash before u", `{"k":"\\ud800"}`, "", ""},
		{"literal replacement char", `{"k":"K\ufffd","l":"K` + "\uFFFD" + `"}`, "", ""},
		{"lone high surrogate", `{"k":"K\ud800"}`, "k", `\ud800 is a lone surrogate`},
		{"lone low surrogate", `{"k":["a","\uDC00x"]}`, "k[1]", `\uDC00 is a lone surrogate`},
		{"high then non-low", `"\ud800\u0041"`, "", `\ud800 is a lone surrogate`},
		{"high at the end", `"\ud800"`, "", `\ud800 is a lone surrogate`},
		{"surrogate in a key", `{"a":{"K\ud800":1}}`, "a", `\ud800 is a lone surrogate`},
		{"duplicate at depth", `{"retry":{"base":"1s","base":"2s"}}`, "retry", `duplicate member "base"`},
		{"duplicate in an array element", `{"x":[{},{"a":1,"a":1}]}`, "x[1]", `duplicate member "a"`},
		{"odd key quoted", `{"a b":{"c":1,"c":2}}`, `["a b"]`, `duplicate member "c"`},
		{"invalid utf8", "{\"k\":\"K\xfe\"}", "k", "invalid UTF-8 (byte 7)"},
		{"invalid utf8 in a key", "{\"a\":{\"\xc3\":1}}", "a", "invalid UTF-8 (byte 7)"},
		{"invalid utf8 outside strings", "{\"a\":1\xff}", "", "invalid character"},
		{"infinite number", `{"n":1e400}`, "n", "not a finite"},
		{"trailing", `{} x`, "", "data after the value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckJSON([]byte(tt.in))
			if tt.reason == "" {
				if err != nil {
					t.Fatalf("CheckJSON(%s): %v", tt.in, err)
				}
				return
			}
			var je *JSONError
			if !errors.As(err, &je) {
				t.Fatalf("CheckJSON(%s) = %v, want a *JSONError", tt.in, err)
			}
			if je.Path != tt.path || !strings.Contains(je.Reason, tt.reason) {
				t.Fatalf("CheckJSON(%s) = path %q reason %q, want path %q reason containing %q", tt.in, je.Path, je.Reason, tt.path, tt.reason)
			}
			if _, cerr := Canonicalize([]byte(tt.in)); cerr == nil {
				t.Fatalf("Canonicalize accepts what CheckJSON refuses: %s", tt.in)
			}
		})
	}
}
