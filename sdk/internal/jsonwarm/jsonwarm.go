// Package jsonwarm has encoding/json learn types ahead of their first use,
// for the SDKs' Prepare: see sdk/orloj.Prepare for why.
package jsonwarm

import (
	"encoding/json"
	"reflect"
)

// Prepare encodes a sample of each value's type (every slice and map given
// one element, every pointer a target) and decodes it back, so
// encoding/json's per-type caches hold the type.
func Prepare(values ...any) {
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
