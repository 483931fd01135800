package abi

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
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds nesting so hostile input cannot exhaust the host's stack.
const maxDepth = 512

// Canonicalize returns the RFC 8785 (JSON Canonicalization Scheme) form of a
// JSON text: no insignificant whitespace, object members sorted by their
// UTF-16 code units, numbers in ECMAScript shortest form, strings with minimal
// escaping. What CheckJSON refuses is an error here too. Call IDs hash this
// form.
func Canonicalize(in []byte) ([]byte, error) {
	var out bytes.Buffer
	if err := walkJSON(in, &out); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return out.Bytes(), nil
}

// CheckJSON refuses what I-JSON (RFC 7493) refuses and encoding/json would
// accept, silently changing it: invalid UTF-8 (read as U+FFFD), escapes of
// lone surrogates such as \ud800 (also read as U+FFFD, so "K\ud800" and
// "K\ufffd" would be one key), duplicate member names at any depth (the
// last one wins), numbers beyond a double, nesting deeper than 512 and data
// after the value. Errors are *JSONError, naming where.
func CheckJSON(in []byte) error {
	return walkJSON(in, nil)
}

// JSONError is a JSON text refused by CheckJSON or Canonicalize.
type JSONError struct {
	// Path names the member or element refused, as `retry.base` or
	// `input.items[2]`; "" is the text as a whole.
	Path string
	// Reason says what is wrong with it, without the path.
	Reason string

	// segs is the path innermost first, gathered while the walk unwinds,
	// so a walk that succeeds builds no paths at all.
	segs []pathSeg
}

func (e *JSONError) Error() string {
	if e.Path == "" {
		return e.Reason
	}
	return fmt.Sprintf("at %s: %s", e.Path, e.Reason)
}

type pathSeg struct {
	key   string
	index int // -1 for a member
}

// within records that err happened inside seg.
func within(err error, seg pathSeg) error {
	if je, ok := err.(*JSONError); ok {
		je.segs = append(je.segs, seg)
	}
	return err
}

func renderPath(segs []pathSeg) string {
	var b strings.Builder
	for i := len(segs) - 1; i >= 0; i-- {
		switch sg := segs[i]; {
		case sg.index >= 0:
			fmt.Fprintf(&b, "[%d]", sg.index)
		case !plainKey(sg.key):
			fmt.Fprintf(&b, "[%q]", sg.key)
		case b.Len() == 0:
			b.WriteString(sg.key)
		default:
			b.WriteByte('.')
			b.WriteString(sg.key)
		}
	}
	return b.String()
}

func plainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func refuse(format string, args ...any) error {
	return &JSONError{Reason: fmt.Sprintf(format, args...)}
}

// walker reads one JSON text token by token; with out set it writes the
// canonical form, without it it only checks.
type walker struct {
	in  []byte
	dec *json.Decoder
	out *bytes.Buffer
}

func walkJSON(in []byte, out *bytes.Buffer) error {
	dec := json.NewDecoder(bytes.NewReader(in))
	dec.UseNumber()
	w := &walker{in: in, dec: dec, out: out}
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
func (w *walker) token() (json.Token, error) {
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
		if bad := invalidUTF8(raw); bad >= 0 {
			return nil, refuse("invalid UTF-8 (byte %d)", start+int64(bad))
		}
		if esc := loneSurrogate(raw); esc != "" {
			return nil, refuse("the escape %s is a lone surrogate and names no character", esc)
		}
	}
	return tok, nil
}

// invalidUTF8 returns the offset of the first byte in b that is not UTF-8,
// or -1.
func invalidUTF8(b []byte) int {
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
func loneSurrogate(raw []byte) string {
	for i := 0; i+1 < len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] != 'u' {
			i++ // \" \\ \n ...: the escaped byte is not an escape
			continue
		}
		r, ok := hex4(raw, i+2)
		if !ok {
			return "" // the decoder refuses it
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return string(raw[i : i+6])
		case r >= 0xD800 && r <= 0xDBFF:
			if i+11 < len(raw) && raw[i+6] == '\\' && raw[i+7] == 'u' {
				if lo, ok := hex4(raw, i+8); ok && lo >= 0xDC00 && lo <= 0xDFFF {
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

func hex4(b []byte, i int) (rune, bool) {
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

func (w *walker) value(depth int) error {
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
			writeString(w.out, v)
		}
	case json.Number:
		s, err := formatNumber(string(v))
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

func (w *walker) array(depth int) error {
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

type member struct {
	key   string
	utf16 []uint16
	value []byte
}

func (w *walker) object(depth int) error {
	out := w.out
	var members []member
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
		members = append(members, member{key: key, utf16: utf16.Encode([]rune(key)), value: val.Bytes()})
	}
	if _, err := w.token(); err != nil { // '}'
		return err
	}
	if out == nil {
		return nil
	}
	slices.SortFunc(members, func(a, b member) int { return slices.Compare(a.utf16, b.utf16) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		writeString(out, m.key)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

// writeString escapes as ECMAScript JSON.stringify does: only '"', '\\' and
// control characters, with the short escapes where they exist.
func writeString(out *bytes.Buffer, s string) {
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
func formatNumber(lit string) (string, error) {
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
