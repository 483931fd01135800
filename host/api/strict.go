package api

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/orloj/orloj/abi"
)

// decodeStrict decodes one JSON object into v, a pointer to a request
// type, refusing what encoding/json would silently accept and change:
//
//   - what abi.CheckJSON refuses (invalid UTF-8, lone-surrogate escapes,
//     duplicate member names at any depth, data after the object), the same
//     rules guests' messages obey;
//   - a member name that is not a field of the type, at any depth, and
//     above all one that differs from a field only in case ("AGENT"), which
//     encoding/json would match to the field;
//   - a value of the wrong type.
//
// Values whose type decodes itself (json.RawMessage, such as a task's
// input) are checked by the first rule only. Every refusal names the field.
func decodeStrict(body []byte, v any) error {
	if err := abi.CheckJSON(body); err != nil {
		var je *abi.JSONError
		if errors.As(err, &je) && je.Path != "" {
			return badRequest("request body: field %q: %s", je.Path, je.Reason)
		}
		return badRequest("request body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := checkFieldNames(dec, reflect.TypeOf(v), ""); err != nil {
		return err
	}
	dec = json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%s", describeJSONError(err))
	}
	return nil
}

var (
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// opaque reports whether values of t are left to t's own decoding (or, for
// interfaces, take any JSON), so member names inside them are not fields.
func opaque(t reflect.Type) bool {
	if t.Kind() == reflect.Interface {
		return true
	}
	p := reflect.PointerTo(t)
	return t.Implements(jsonUnmarshaler) || p.Implements(jsonUnmarshaler) ||
		t.Implements(textUnmarshaler) || p.Implements(textUnmarshaler)
}

// checkFieldNames walks the next JSON value alongside t. The text is known
// to be well-formed (abi.CheckJSON passed), so a token error cannot happen;
// a value whose shape does not fit t is skipped for Decode to describe.
func checkFieldNames(dec *json.Decoder, t reflect.Type, at string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	tok, err := dec.Token()
	if err != nil {
		return badRequest("request body: %s", describeJSONError(err))
	}
	d, isDelim := tok.(json.Delim)
	if !isDelim {
		return nil
	}
	switch {
	case opaque(t):
		return skipRest(dec, d)
	case d == '{' && t.Kind() == reflect.Struct:
		fs := fieldsOf(t)
		for dec.More() {
			ktok, err := dec.Token()
			if err != nil {
				return badRequest("request body: %s", describeJSONError(err))
			}
			key, _ := ktok.(string)
			ft, ok := fs.types[key]
			if !ok {
				return fs.refuse(at, key)
			}
			if err := checkFieldNames(dec, ft, joinField(at, key)); err != nil {
				return err
			}
		}
	case d == '{' && t.Kind() == reflect.Map:
		for dec.More() {
			ktok, err := dec.Token()
			if err != nil {
				return badRequest("request body: %s", describeJSONError(err))
			}
			key, _ := ktok.(string)
			if err := checkFieldNames(dec, t.Elem(), joinField(at, key)); err != nil {
				return err
			}
		}
	case d == '[' && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array):
		for i := 0; dec.More(); i++ {
			if err := checkFieldNames(dec, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); err != nil {
				return err
			}
		}
	default:
		return skipRest(dec, d)
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// skipRest consumes the rest of a value whose opening delimiter was read.
func skipRest(dec *json.Decoder, open json.Delim) error {
	if open != '{' && open != '[' {
		return nil
	}
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return badRequest("request body: %s", describeJSONError(err))
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func joinField(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// fieldSet is the JSON member names of a struct type, as encoding/json
// reads them (tags, embedded structs).
type fieldSet struct {
	types map[string]reflect.Type
	names []string // sorted, for messages
}

var fieldSets sync.Map // reflect.Type → *fieldSet

func fieldsOf(t reflect.Type) *fieldSet {
	if fs, ok := fieldSets.Load(t); ok {
		return fs.(*fieldSet)
	}
	fs := &fieldSet{types: map[string]reflect.Type{}}
	addFields(fs, t)
	for n := range fs.types {
		fs.names = append(fs.names, n)
	}
	sort.Strings(fs.names)
	fieldSets.Store(t, fs)
	return fs
}

func addFields(fs *fieldSet, t reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			et := f.Type
			if et.Kind() == reflect.Pointer {
				et = et.Elem()
			}
			if et.Kind() == reflect.Struct {
				addFields(fs, et)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs.types[name] = f.Type
	}
}

// refuse answers a member name that is no field: one that differs from a
// field only in case gets the right spelling.
func (fs *fieldSet) refuse(at, key string) error {
	for _, n := range fs.names {
		if strings.EqualFold(n, key) {
			return badRequest("request body: field %q is spelled %q; field names are case-sensitive", joinField(at, key), joinField(at, n))
		}
	}
	if len(fs.names) == 0 {
		return badRequest("request body: unknown field %q; this object takes no fields", joinField(at, key))
	}
	return badRequest("request body: unknown field %q; this object takes %s", joinField(at, key), strings.Join(fs.names, ", "))
}
