package abi

// The token-by-token implementation Canonicalize and CheckJSON had before the
// byte scanner, kept as the reference the scanner is tested against: same
// acceptance, same canonical bytes (call IDs hash them, so a difference would
// turn a recorded call into a new one).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf16"
	"unicode/utf8"
)

func refCanonicalize(in []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := refWalkJSON(in, &out); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// walker reads one JSON text token by token; with out set it writes the
// canonical form, without it it only checks.
type refWalker struct {
	in  []byte
	dec *json.Decoder
	out *bytes.Buffer
}

func refWalkJSON(in []byte, out *bytes.Buffer) error {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	w := &refWalker{in: in, dec: dec, out: out}
	if err := w.value(0); err != nil {
		if je, ok := err.(*JSONError); ok {
			je.Path = renderPath(je.segs)
		}
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return &JSONError{Reason: "data after the value"}
	}
	return nil
}

// token reads the next token; a string's escapes are checked against its
// raw text, which the decoder no longer has.
func (w *refWalker) token() (json.Token, error) {
	start := w.dec.InputOffset()
	tok, err := w.dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, refuse("unexpected end of input")
		}
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, refuse("%s (byte %d)", strings.TrimPrefix(syn.Error(), "json: "), syn.Offset)
		}
		return nil, refuse("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	// Invalid UTF-8 and lone surrogates both decode to U+FFFD; only then is
	// the raw text read. (Outside strings either is a syntax error.)
	if s, ok := tok.(string); ok && strings.ContainsRune(s, utf8.RuneError) {
		raw := w.in[start:w.dec.InputOffset()]
		if bad := refInvalidUTF8(raw); bad >= 0 {
			return nil, refuse("invalid UTF-8 (byte %d)", start+int64(bad))
		}
		if esc := refLoneSurrogate(raw); esc != "" {
			return nil, refuse("the escape %s is a lone surrogate and names no character", esc)
		}
	}
	return tok, nil
}

// invalidUTF8 returns the offset of the first byte in b that is not UTF-8,
// or -1.
func refInvalidUTF8(b []byte) int {
	for off := 0; off < len(b); {
		r, n := utf8.DecodeRune(b[off:])
		if r == utf8.RuneError && n <= 1 {
			return off
		}
		off += n
	}
	return -1
}

// loneSurrogate returns the first \uXXXX escape in raw that is half of a
// surrogate pair without its other half, or "".
func refLoneSurrogate(raw []byte) string {
	for i := 0; i+1 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // \" \\ \n ...: the escaped byte is not an escape
			continue
		}
		r, ok := refHex4(raw, i+2)
		if !ok {
			return "" // the decoder refuses it
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return string(raw[i : i+6])
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if lo, ok := refHex4(raw, i+8); ok && lo >= 0xDC00 && lo <= 0xDFFF {
					i += 11
					continue
				}
			}
			return string(raw[i : i+6])
		}
		i += 5
	}
	return ""
}

func refHex4(b []byte, i int) (rune, bool) {
	if i+4 > len(b) {
		return 0, false
	}
	var r rune
	for _, c := range b[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}

func (w *refWalker) value(depth int) error {
	if depth > maxDepth {
		return refuse("nesting deeper than %d", maxDepth)
	}
	tok, err := w.token()
	if err != nil {
		return err
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			return w.object(depth)
		case '[':
			return w.array(depth)
		}
		return refuse("unexpected %q", rune(v))
	case string:
		if w.out != nil {
			refWriteString(w.out, v)
		}
	case json.Number:
		s, err := refFormatNumber(string(v))
		if err != nil {
			return refuse("%v", err)
		}
		if w.out != nil {
			w.out.WriteString(s)
		}
	case bool:
		if w.out != nil {
			w.out.WriteString(strconv.FormatBool(v))
		}
	case nil:
		if w.out != nil {
			w.out.WriteString("null")
		}
	}
	return nil
}

func (w *refWalker) array(depth int) error {
	out := w.out
	if out != nil {
		out.WriteByte('[')
	}
	for i := 0; w.dec.More(); i++ {
		if i > 0 && out != nil {
			out.WriteByte(',')
		}
		if err := w.value(depth + 1); err != nil {
			return within(err, pathSeg{index: i})
		}
	}
	if _, err := w.token(); err != nil { // ']'
		return err
	}
	if out != nil {
		out.WriteByte(']')
	}
	return nil
}

type refMember struct {
	key   string
	utf16 []uint16
	value []byte
}

func (w *refWalker) object(depth int) error {
	out := w.out
	var members []refMember
	seen := make(map[string]struct{})
	for w.dec.More() {
		tok, err := w.token()
		if err != nil {
			return err
		}
		key, ok := tok.(string)
		if !ok {
			return refuse("object key is not a string")
		}
		if _, dup := seen[key]; dup {
			return refuse("duplicate member %q", key)
		}
		seen[key] = struct{}{}
		if out == nil {
			if err := w.value(depth + 1); err != nil {
				return within(err, pathSeg{key: key, index: -1})
			}
			continue
		}
		var val bytes.Buffer
		w.out = &val
		err = w.value(depth + 1)
		w.out = out
		if err != nil {
			return within(err, pathSeg{key: key, index: -1})
		}
		members = append(members, refMember{key: key, utf16: utf16.Encode([]rune(key)), value: val.Bytes()})
	}
	if _, err := w.token(); err != nil { // '}'
		return err
	}
	if out == nil {
		return nil
	}
	slices.SortFunc(members, func(a, b refMember) int { return slices.Compare(a.utf16, b.utf16) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		refWriteString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

// writeString escapes as ECMAScript JSON.stringify does: only '"', '\\' and
// control characters, with the short escapes where they exist.
func refWriteString(out *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	out.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			out.WriteString(`\"`)
		case c == '\\':
			out.WriteString(`\\`)
		case c == '\b':
			out.WriteString(`\b`)
		case c == '\f':
			out.WriteString(`\f`)
		case c == '\n':
			out.WriteString(`\n`)
		case c == '\r':
			out.WriteString(`\r`)
		case c == '\t':
			out.WriteString(`\t`)
		case c < 0x20:
			out.WriteString(`\u00`)
			out.WriteByte(hex[c>>4])
			out.WriteByte(hex[c&0xF])
		default:
			out.WriteByte(c)
		}
	}
	out.WriteByte('"')
}

// formatNumber renders a JSON number as ECMAScript Number.prototype.toString
// does for the nearest IEEE-754 double (RFC 8785 section 3.2.2.3).
func refFormatNumber(lit string) (string, error) {
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("number %s is not a finite IEEE-754 double", lit)
	}
	if f == 0 {
		return "0", nil // also for -0
	}
	var sb strings.Builder
	if f < 0 {
		sb.WriteByte('-')
		f = -f
	}
	// Shortest round-trip digits, as d.ddddde±XX.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expPart, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, _ := strconv.Atoi(expPart)
	k, n := len(digits), exp+1 // value = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		sb.WriteString(digits)
		sb.WriteString(strings.Repeat("0", n-k))
	case 0 < n && n <= 21:
		sb.WriteString(digits[:n])
		sb.WriteByte('.')
		sb.WriteString(digits[n:])
	case -6 < n && n <= 0:
		sb.WriteString("0.")
		sb.WriteString(strings.Repeat("0", -n))
		sb.WriteString(digits)
	default:
		sb.WriteByte(digits[0])
		if k > 1 {
			sb.WriteByte('.')
			sb.WriteString(digits[1:])
		}
		sb.WriteByte('e')
		if n-1 >= 0 {
			sb.WriteByte('+')
		}
		sb.WriteString(strconv.Itoa(n - 1))
	}
	return sb.String(), nil
}

// refCases are texts the scanner and the reference must treat alike; the
// fuzz target starts from them.
var refCases = []string{
	``, ` `, `{}`, `[]`, `""`, `0`, `-0`, `-0.0`, `1`, `-1`, `01`, `1.`, `.5`, `1e`, `1e+`, `1E-2`, `-`, `--1`, `1.5e308`, `1e400`, `-1e400`,
	`123456789012345`, `1234567890123456`, `9007199254740993`, `100000000000000000000`, `1e21`, `0.1`, `5e-324`, `2e-324`,
	`true`, `false`, `null`, `tru`, `nul`, `nulll`, `True`,
	`"a"`, `"\u0041"`, `"\/"`, `"\x"`, `"\u00"`, `"\u00g0"`, "\"\x01\"", "\"\x7f\"", `"\ud83d\ude00"`, `"\ud83d"`, `"\ude00"`, `"\ud83d\u0041"`,
	`"\ud83d\ud83d\ude00"`, `"\\ud800"`, "\"\xff\"", "\"\xc3\"", "\"\xed\xa0\x80\"", `"\u0000"`, `"\"\\\b\f\n\r\t"`, "\"\u2028\u2029\"",
	`{"a":1,"a":2}`, `{"a":1,"b":2}`, `{"b":1,"a":2}`, `{"a":{"b":1,"b":2}}`, `{"a\u0000":1,"a":2}`, `{"\u0061":1,"a":2}`,
	`{"b":[{"d":1,"c":2}],"a":{"z":0,"y":[3,2,1]}}`, `{"a":1,}`, `{,}`, `{"a"}`, `{"a":}`, `{"a" 1}`, `{1:2}`, `{"a":1 "b":2}`,
	`[1,]`, `[,1]`, `[1 2]`, `[`, `]`, `{`, `}`, `[[]`, `[]]`, `{} {}`, `{} x`, `1 x`, `1 `, ` 1`, "\t\n\r 1 \t\n\r",
	"{\"a\":1\xff}", "\xef\xbb\xbf1", `{"\ufb33":1,"\ud83d\ude00":2,"\u20ac":3,"\r":4}`, `{"é":1,"e":2,"z":3}`,
	`{"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17,"k1":0}`,
	deep(maxDepth), deep(maxDepth + 1), deep(maxDepth + 2), `{"a":` + deep(maxDepth) + `}`, `{"a":` + deep(maxDepth-1) + `}`,
}

// sameAsReference fails t when the scanner and the reference disagree on in:
// whether it is accepted, its canonical bytes, or where an error is.
func sameAsReference(t *testing.T, in []byte) {
	t.Helper()
	got, err := Canonicalize(in)
	want, rerr := refCanonicalize(in)
	if (err == nil) != (rerr == nil) {
		t.Fatalf("%q: Canonicalize err %v, reference err %v", in, err, rerr)
	}
	if err != nil {
		var je, rje *JSONError
		// Where a syntax error is reported depends on the token decoder's
		// read-ahead; every other refusal must name the same place.
		if errors.As(err, &je) && errors.As(rerr, &rje) && !syntaxError(rje.Reason) && je.Path != rje.Path {
			t.Fatalf("%q: error at %q (%s), reference at %q (%s)", in, je.Path, je.Reason, rje.Path, rje.Reason)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%q:\n got %q\nwant %q", in, got, want)
	}
	if cerr := CheckJSON(in); cerr != nil {
		t.Fatalf("%q: Canonicalize accepts it, CheckJSON refuses: %v", in, cerr)
	}
}

func syntaxError(reason string) bool {
	return strings.HasPrefix(reason, "invalid character") || strings.HasPrefix(reason, "unexpected ")
}

func TestCanonicalizeMatchesReference(t *testing.T) {
	t.Parallel()
	for _, in := range refCases {
		sameAsReference(t, []byte(in))
		if err := CheckJSON([]byte(in)); (err == nil) != (refWalkJSON([]byte(in), nil) == nil) {
			t.Fatalf("%q: CheckJSON %v disagrees with the reference", in, err)
		}
	}
}

func FuzzCanonicalizeMatchesReference(f *testing.F) {
	for _, in := range refCases {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, in []byte) { sameAsReference(t, in) })
}

// BenchmarkCanonicalize: the scanner against the token walker it replaced,
// on what guests send (a call request) and on a larger unsorted document.
func BenchmarkCanonicalize(b *testing.B) {
	call := []byte(`{"tool":"fetch","params":{"url":"https://example.com/doc/42","attempt":1,"headers":{"accept":"application/json"}},"key":"step-1"}`)
	var doc bytes.Buffer
	doc.WriteString(`{`)
	for i := 40; i > 0; i-- {
		fmt.Fprintf(&doc, `"field%02d": {"n": %d.5, "s": "value \u00e9 %d", "l": [1, 2, 3, true, null]},`, i, i, i)
	}
	doc.WriteString(`"z": 0}`)
	for _, in := range []struct {
		name string
		b    []byte
	}{{"call", call}, {"doc", doc.Bytes()}} {
		b.Run(in.name+"/scanner", func(b *testing.B) {
			b.SetBytes(int64(len(in.b)))
			for b.Loop() {
				if _, err := Canonicalize(in.b); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(in.name+"/reference", func(b *testing.B) {
			b.SetBytes(int64(len(in.b)))
			for b.Loop() {
				if _, err := refCanonicalize(in.b); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("call/decode", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeCallRequest(call); err != nil {
				b.Fatal(err)
			}
		}
	})
}
