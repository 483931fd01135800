package abi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
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
	out, _, err := walkJSON(in, true)
	if err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return out, nil
}

// CheckJSON refuses what I-JSON (RFC 7493) refuses and encoding/json would
// accept, silently changing it: invalid UTF-8 (read as U+FFFD), escapes of
// lone surrogates such as \ud800 (also read as U+FFFD, so "K\ud800" and
// "K\ufffd" would be one key), duplicate member names at any depth (the
// last one wins), numbers beyond a double, nesting deeper than 512 and data
// after the value. Errors are *JSONError, naming where.
func CheckJSON(in []byte) error {
	_, _, err := walkJSON(in, false)
	return err
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

// scanner reads one JSON text byte by byte; with emit set it appends the
// canonical form to out, without it it only checks.
//
// Why not encoding/json's Decoder.Token: every guest call's request is
// canonicalized, and the token decoder, which allocates per token and builds
// an error message to find the end of each value, was three quarters of a
// call's host-side cost (docs/BENCHMARKS.md, "Canonical JSON in one pass").
// The scanner accepts exactly what the token decoder did and writes the same
// bytes; canonical_ref_test.go holds the old walker and the tests that
// compare the two.
type scanner struct {
	in   []byte
	pos  int
	emit bool
	out  []byte
	// members is a stack of the open objects' members; each object
	// appends its own and cuts back to where it began when it closes.
	members []member
	// top is the members of the text when it is an object, with their
	// spans in out once sorted (see canonicalObject).
	top []member
	buf []byte // scratch: a string's decoded bytes, a reordered object

	stack [16]member // members' first backing array: most texts need no other
}

// member is one object member, as written to out: key, then ':' at colon,
// then its value up to end.
type member struct {
	key               string
	start, colon, end int
}

// scanners keeps scanners with their scratch space between texts: a
// scanner is as big as its member stack, and every guest call walks one.
var scanners = sync.Pool{New: func() any { return new(scanner) }}

// walkJSON scans in; with emit it returns the canonical form, and the
// members of the text when it is an object (nil otherwise).
func walkJSON(in []byte, emit bool) (out []byte, top []member, err error) {
	s := scanners.Get().(*scanner)
	defer func() {
		// Drop what refers to the caller's text or to what is returned.
		s.in, s.out, s.top, s.members = nil, nil, nil, s.members[:0]
		// A large text's scratch is not kept.
		if cap(s.buf) > 64<<10 {
			s.buf = nil
		}
		if cap(s.members) > 4*len(s.stack) {
			s.members = s.stack[:0]
		}
		scanners.Put(s)
	}()
	s.in, s.pos, s.emit = in, 0, emit
	if s.members == nil {
		s.members = s.stack[:0]
	}
	if emit {
		s.out = make([]byte, 0, len(in)+16)
	}
	err = s.value(0)
	if err == nil {
		s.skipSpace()
		if s.pos < len(s.in) {
			err = refuse("data after the value")
		}
	}
	if err != nil {
		if je, ok := err.(*JSONError); ok {
			je.Path = renderPath(je.segs)
		}
		return nil, nil, err
	}
	return s.out, s.top, nil
}

// put writes c when the scanner writes.
func (s *scanner) put(c byte) {
	if s.emit {
		s.out = append(s.out, c)
	}
}

// more skips whitespace and refuses the end of the input.
func (s *scanner) more() error {
	s.skipSpace()
	if s.pos >= len(s.in) {
		return refuse("unexpected end of input")
	}
	return nil
}

func (s *scanner) skipSpace() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// syntax refuses the byte at s.pos; the offset named is the count of bytes
// before it, as encoding/json's SyntaxError gives it.
func (s *scanner) syntax(context string) error {
	if s.pos >= len(s.in) {
		return refuse("unexpected end of input")
	}
	return refuse("invalid character %s %s (byte %d)", quoteChar(s.in[s.pos]), context, s.pos)
}

// quoteChar names a byte as encoding/json's messages do.
func quoteChar(c byte) string {
	switch {
	case c == '\'':
		return `'\''`
	case c == '"':
		return `'"'`
	case c < 0x20 || c >= 0x7f:
		return strconv.Quote(string(rune(c)))
	}
	return "'" + string(rune(c)) + "'"
}

func (s *scanner) value(depth int) error {
	if depth > maxDepth {
		return refuse("nesting deeper than %d", maxDepth)
	}
	s.skipSpace()
	if s.pos >= len(s.in) {
		return refuse("unexpected end of input")
	}
	switch c := s.in[s.pos]; {
	case c == '{':
		return s.object(depth)
	case c == '[':
		return s.array(depth)
	case c == '"':
		return s.stringValue()
	case c == '-' || c >= '0' && c <= '9':
		return s.number()
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return s.syntax("looking for beginning of value")
}

func (s *scanner) literal(word string) error {
	for i := 1; i < len(word); i++ {
		s.pos++
		if s.pos >= len(s.in) {
			return refuse("unexpected end of input")
		}
		if s.in[s.pos] != word[i] {
			return s.syntax(fmt.Sprintf("in literal %s (expecting %s)", word, quoteChar(word[i])))
		}
	}
	s.pos++
	if s.emit {
		s.out = append(s.out, word...)
	}
	return nil
}

// number reads a number as RFC 8259 spells it and writes its ECMAScript
// form. Integers of up to 15 digits are exact doubles already written as
// ECMAScript would (but -0), so they skip the float round trip.
func (s *scanner) number() error {
	start := s.pos
	in := s.in
	if in[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(in) && in[s.pos] >= '0' && in[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.pos >= len(in) {
		return refuse("unexpected end of input")
	}
	var intDigits int
	switch c := in[s.pos]; {
	case c == '0':
		s.pos++
		intDigits = 1
	case c >= '1' && c <= '9':
		intDigits = digits()
	default:
		return s.syntax("in numeric literal")
	}
	plain := true
	if s.pos < len(in) && in[s.pos] == '.' {
		plain = false
		s.pos++
		if digits() == 0 {
			return s.syntax("after decimal point in numeric literal")
		}
	}
	if s.pos < len(in) && (in[s.pos] == 'e' || in[s.pos] == 'E') {
		plain = false
		s.pos++
		if s.pos < len(in) && (in[s.pos] == '+' || in[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.syntax("in exponent of numeric literal")
		}
	}
	lit := in[start:s.pos]
	if plain && intDigits <= 15 {
		if s.emit {
			if string(lit) == "-0" {
				s.out = append(s.out, '0')
			} else {
				s.out = append(s.out, lit...)
			}
		}
		return nil
	}
	var scratch [32]byte // a check writes nowhere
	dst := scratch[:0]
	if s.emit {
		dst = s.out
	}
	out, err := appendNumber(dst, string(lit))
	if err != nil {
		return refuse("%v", err)
	}
	if s.emit {
		s.out = out
	}
	return nil
}

// stringValue reads a string and writes it in canonical form.
func (s *scanner) stringValue() error {
	start := s.pos
	escaped, err := s.scanString()
	if err != nil {
		return err
	}
	if !s.emit {
		return nil
	}
	if !escaped {
		// No escapes and (scanString checked) no control characters:
		// the text is already canonical.
		s.out = append(s.out, s.in[start:s.pos]...)
		return nil
	}
	s.out = appendString(s.out, s.buf)
	return nil
}

// key reads an object member's name and returns it decoded.
func (s *scanner) key() (string, error) {
	start := s.pos
	escaped, err := s.scanString()
	if err != nil {
		return "", err
	}
	if !escaped {
		return string(s.in[start+1 : s.pos-1]), nil
	}
	return string(s.buf), nil
}

// scanString reads the string at s.pos (its opening quote) to just past its
// closing quote. When it holds escapes it reports so and leaves the decoded
// bytes in s.buf. It refuses control characters, bad escapes, invalid UTF-8
// and escapes of lone surrogates.
func (s *scanner) scanString() (escaped bool, err error) {
	in := s.in
	s.pos++ // '"'
	run := s.pos
	for {
		if s.pos >= len(in) {
			return false, refuse("unexpected end of input")
		}
		c := in[s.pos]
		switch {
		case c == '"':
			if escaped {
				s.buf = append(s.buf, in[run:s.pos]...)
			}
			s.pos++
			return escaped, nil
		case c == '\\':
			if !escaped {
				escaped = true
				s.buf = s.buf[:0]
			}
			s.buf = append(s.buf, in[run:s.pos]...)
			if err := s.escape(); err != nil {
				return false, err
			}
			run = s.pos
		case c < 0x20:
			return false, s.syntax("in string literal")
		case c < utf8.RuneSelf:
			s.pos++
		default:
			r, n := utf8.DecodeRune(in[s.pos:])
			if r == utf8.RuneError && n <= 1 {
				return false, refuse("invalid UTF-8 (byte %d)", s.pos)
			}
			s.pos += n
		}
	}
}

// escape decodes the escape at s.pos (its backslash) onto s.buf.
func (s *scanner) escape() error {
	in := s.in
	s.pos++
	if s.pos >= len(in) {
		return refuse("unexpected end of input")
	}
	var b byte
	switch in[s.pos] {
	case '"', '\\', '/':
		b = in[s.pos]
	case 'b':
		b = '\b'
	case 'f':
		b = '\f'
	case 'n':
		b = '\n'
	case 'r':
		b = '\r'
	case 't':
		b = '\t'
	case 'u':
		at := s.pos - 1
		r, err := s.hex4()
		if err != nil {
			return err
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return loneSurrogate(in[at : at+6])
		case r >= 0xD800 && r <= 0xDBFF:
			if s.pos+1 < len(in) && in[s.pos] == '\\' && in[s.pos+1] == 'u' {
				save := s.pos
				s.pos++
				lo, err := s.hex4()
				if err != nil {
					return err
				}
				if lo >= 0xDC00 && lo <= 0xDFFF {
					s.buf = utf8.AppendRune(s.buf, utf16.DecodeRune(r, lo))
					return nil
				}
				s.pos = save
			}
			return loneSurrogate(in[at : at+6])
		}
		s.buf = utf8.AppendRune(s.buf, r)
		return nil
	default:
		return s.syntax("in string escape code")
	}
	s.pos++
	s.buf = append(s.buf, b)
	return nil
}

func loneSurrogate(esc []byte) error {
	return refuse("the escape %s is a lone surrogate and names no character", esc)
}

// hex4 reads the four hex digits after the 'u' at s.pos, leaving s.pos just
// past them.
func (s *scanner) hex4() (rune, error) {
	var r rune
	for range 4 {
		s.pos++
		if s.pos >= len(s.in) {
			return 0, refuse("unexpected end of input")
		}
		switch c := s.in[s.pos]; {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, s.syntax(`in \u hexadecimal character escape`)
		}
	}
	s.pos++
	return r, nil
}

func (s *scanner) array(depth int) error {
	s.pos++ // '['
	s.put('[')
	s.skipSpace()
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		s.put(']')
		return nil
	}
	for i := 0; ; i++ {
		if err := s.value(depth + 1); err != nil {
			return within(err, pathSeg{index: i})
		}
		if err := s.more(); err != nil {
			return err
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
			s.put(',')
		case ']':
			s.pos++
			s.put(']')
			return nil
		default:
			return s.syntax("after array element")
		}
	}
}

// object reads an object and writes its members sorted by their names'
// UTF-16 code units. Members are written in the order read; only an object
// read out of order is rewritten, once, at its close.
func (s *scanner) object(depth int) error {
	s.pos++ // '{'
	open := len(s.out)
	s.put('{')
	base := len(s.members)
	err := s.objectMembers(depth, open, base)
	s.members = s.members[:base]
	return err
}

// objectMembers reads an object's members after its '{' (see object).
func (s *scanner) objectMembers(depth, open, base int) error {
	sorted := true
	s.skipSpace()
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		s.put('}')
		if depth == 0 {
			s.top = []member{}
		}
		return nil
	}
	var seen map[string]struct{} // for objects too big to search
	for {
		if err := s.more(); err != nil {
			return err
		}
		if s.in[s.pos] != '"' {
			return s.syntax("looking for beginning of object key string")
		}
		key, err := s.key()
		if err != nil {
			return err
		}
		mine := s.members[base:]
		if seen == nil && len(mine) >= 16 {
			seen = make(map[string]struct{}, 2*len(mine))
			for _, m := range mine {
				seen[m.key] = struct{}{}
			}
		}
		if seen != nil {
			if _, dup := seen[key]; dup {
				return refuse("duplicate member %q", key)
			}
			seen[key] = struct{}{}
		} else {
			for _, m := range mine {
				if m.key == key {
					return refuse("duplicate member %q", key)
				}
			}
		}
		if err := s.more(); err != nil {
			return err
		}
		if s.in[s.pos] != ':' {
			return s.syntax("after object key")
		}
		s.pos++
		m := member{key: key}
		if s.emit {
			if len(mine) > 0 {
				s.out = append(s.out, ',')
			}
			m.start = len(s.out)
			s.out = appendString(s.out, []byte(key))
			m.colon = len(s.out)
			s.out = append(s.out, ':')
		}
		if err := s.value(depth + 1); err != nil {
			return within(err, pathSeg{key: key, index: -1})
		}
		m.end = len(s.out)
		if len(mine) > 0 && compareUTF16(mine[len(mine)-1].key, key) > 0 {
			sorted = false
		}
		s.members = append(s.members, m)
		if err := s.more(); err != nil {
			return err
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
			continue
		case '}':
			s.pos++
		default:
			return s.syntax("after object key:value pair")
		}
		break
	}
	if !s.emit {
		return nil
	}
	mine := s.members[base:]
	if !sorted {
		slices.SortFunc(mine, func(a, b member) int { return compareUTF16(a.key, b.key) })
		body := s.out[open+1:]
		s.buf = append(s.buf[:0], body...)
		s.out = s.out[:open+1]
		for i := range mine {
			m := &mine[i]
			if i > 0 {
				s.out = append(s.out, ',')
			}
			at := len(s.out)
			s.out = append(s.out, s.buf[m.start-open-1:m.end-open-1]...)
			m.colon += at - m.start
			m.end += at - m.start
			m.start = at
		}
	}
	s.out = append(s.out, '}')
	if depth == 0 {
		s.top = slices.Clone(mine)
	}
	return nil
}

// compareUTF16 orders two valid UTF-8 strings by their UTF-16 code units,
// as RFC 8785 sorts member names. UTF-8 byte order is code point order,
// which differs from UTF-16 order only between a supplementary character
// (a surrogate pair, D800–DBFF first) and U+E000–U+FFFF.
func compareUTF16(a, b string) int {
	for a != "" && b != "" {
		if a[0] < utf8.RuneSelf && b[0] < utf8.RuneSelf {
			if a[0] != b[0] {
				return int(a[0]) - int(b[0])
			}
			a, b = a[1:], b[1:]
			continue
		}
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		if ra != rb {
			return int(utf16Key(ra)) - int(utf16Key(rb))
		}
		a, b = a[na:], b[nb:]
	}
	return len(a) - len(b)
}

// utf16Key maps a code point to a number ordered as its UTF-16 encoding is:
// a supplementary character's first unit is a high surrogate (D800–DBFF),
// so it sorts after U+D7FF and before U+E000.
func utf16Key(r rune) int {
	switch {
	case r >= 0x10000:
		return 0xD800 + int(r-0x10000)
	case r >= 0xE000:
		return int(r) + 0x100000
	}
	return int(r)
}

// appendString escapes s as ECMAScript JSON.stringify does: only '"', '\\'
// and control characters, with the short escapes where they exist.
func appendString(out, s []byte) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	run := 0
	for i, c := range s {
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out = append(out, s[run:i]...)
		run = i + 1
		switch c {
		case '"':
			out = append(out, `\"`...)
		case '\\':
			out = append(out, `\\`...)
		case '\b':
			out = append(out, `\b`...)
		case '\f':
			out = append(out, `\f`...)
		case '\n':
			out = append(out, `\n`...)
		case '\r':
			out = append(out, `\r`...)
		case '\t':
			out = append(out, `\t`...)
		default:
			out = append(out, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
		}
	}
	out = append(out, s[run:]...)
	return append(out, '"')
}

// appendNumber appends a JSON number as ECMAScript Number.prototype.toString
// renders the nearest IEEE-754 double (RFC 8785 section 3.2.2.3).
func appendNumber(out []byte, lit string) ([]byte, error) {
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return out, fmt.Errorf("number %s is not a finite IEEE-754 double", lit)
	}
	if f == 0 {
		return append(out, '0'), nil // also for -0
	}
	if f < 0 {
		out = append(out, '-')
		f = -f
	}
	// Shortest round-trip digits, as d.ddddde±XX.
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	ei := bytes.IndexByte(e, 'e')
	mant, expPart := e[:ei], e[ei+1:]
	var dbuf [24]byte
	digits := append(dbuf[:0], mant[0])
	if len(mant) > 2 {
		digits = append(digits, mant[2:]...)
	}
	exp, _ := strconv.Atoi(string(expPart))
	k, n := len(digits), exp+1 // value = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		out = append(out, digits...)
		for range n - k {
			out = append(out, '0')
		}
	case 0 < n && n <= 21:
		out = append(out, digits[:n]...)
		out = append(out, '.')
		out = append(out, digits[n:]...)
	case -6 < n && n <= 0:
		out = append(out, '0', '.')
		for range -n {
			out = append(out, '0')
		}
		out = append(out, digits...)
	default:
		out = append(out, digits[0])
		if k > 1 {
			out = append(out, '.')
			out = append(out, digits[1:]...)
		}
		out = append(out, 'e')
		if n-1 >= 0 {
			out = append(out, '+')
		}
		out = strconv.AppendInt(out, int64(n-1), 10)
	}
	return out, nil
}

// canonicalObject is Canonicalize for a text that should be an object: it
// also returns the object's members, sorted, each with its span in out;
// members is nil when the text is not an object.
func canonicalObject(in []byte) (out []byte, members []member, err error) {
	out, members, err = walkJSON(in, true)
	if err != nil {
		return nil, nil, fmt.Errorf("canonical json: %w", err)
	}
	return out, members, nil
}

// canonicalString decodes a string in canonical form; false if v is not a
// string.
func canonicalString(v []byte) (string, bool) {
	if len(v) < 2 || v[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(v, '\\') < 0 {
		return string(v[1 : len(v)-1]), true
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return "", false
	}
	return s, true
}

// kindOf names the kind of a canonical JSON value, for messages.
func kindOf(v []byte) string {
	switch {
	case len(v) == 0:
		return "nothing"
	case v[0] == '[':
		return "an array"
	case v[0] == '"':
		return "a string"
	case v[0] == 't' || v[0] == 'f':
		return "a boolean"
	case v[0] == 'n':
		return "null"
	}
	return "a number"
}
