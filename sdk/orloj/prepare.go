package orloj

import (
	"encoding/json"
	"reflect"

	"github.com/orloj/orloj/abi"
)

// Prepare readies encoding/json for the types of the given values: it
// encodes a sample of each (every slice and map given one element, every
// pointer a target) and decodes the result back into the type, so the
// package's per-type caches hold the type's encoder and fields.
//
// Why: encoding/json learns a type by reflection the first time it sees it,
// and in WebAssembly that is slow: for an agent of six small calls it was
// half of an attempt's guest time. In a reactor build, whatever the package
// initializers do is done once per agent version and copied into every
// attempt, so an agent that calls Prepare from an initializer pays for the
// learning once:
//
//	var _ = orloj.Prepare(input{}, httpRequest{}, httpResponse{})
//
// In a command build it costs what the first use of each type costs anyway.
// Prepare has no effect on what an agent does and calls no host function;
// it returns true so it can initialize a blank package-level variable.
func Prepare(values ...any) bool {
	for _, v := range values {
		if v == nil {
			continue
		}
		t := reflect.TypeOf(v)
		sample := reflect.New(t)
		fill(sample.Elem(), map[reflect.Type]bool{})
		b, err := json.Marshal(sample.Interface())
		if err != nil {
			continue // a type encoding/json refuses; the agent will learn why when it uses it
		}
		_ = json.Unmarshal(b, reflect.New(t).Interface())
	}
	return true
}

// fill gives v one element wherever the encoding would otherwise stop short
// of a nested type (nil slices, maps and pointers). Each struct type is
// filled where it first appears and left zero after, which ends recursive
// types and keeps the sample as small as the set of types.
func fill(v reflect.Value, seen map[reflect.Type]bool) {
	if !v.CanSet() {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), seen)
	case reflect.Struct:
		if seen[v.Type()] {
			return
		}
		seen[v.Type()] = true
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seen)
			}
		}
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return // []byte encodes as a string
		}
		s := reflect.MakeSlice(v.Type(), 1, 1)
		fill(s.Index(0), seen)
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i), seen)
		}
	case reflect.Map:
		kt := v.Type().Key()
		if kt.Kind() != reflect.String {
			return // other keys need values encoding/json can name; leave them
		}
		m := reflect.MakeMapWithSize(v.Type(), 1)
		e := reflect.New(v.Type().Elem()).Elem()
		fill(e, seen)
		m.SetMapIndex(reflect.New(kt).Elem(), e)
		v.Set(m)
	}
}

// The SDK's own types and the shapes every agent passes through it.
var _ = Prepare(abi.ErrorBody{}, map[string]any{}, []any{}, json.RawMessage(nil))
