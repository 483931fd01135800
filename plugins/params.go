package plugins

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"

	"github.com/orloj/orloj/abi"
)

// decodeParams decodes a call's params into v, which must point to a struct.
// Unknown fields are refused rather than ignored: a guest that misspells
// "header" for "headers" should hear about it, not send a request without
// them, and the mistake is cheap to report before any effect happens. Every
// error carries abi.StatusInvalidArgument.
func decodeParams(params json.RawMessage, v any) error {
	trimmed := bytes.TrimSpace(params)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return abi.Errorf(abi.StatusInvalidArgument, "params must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return paramsError(err)
	}
	if dec.More() {
		return abi.Errorf(abi.StatusInvalidArgument, "decode params: data after the JSON object")
	}
	return nil
}

// paramsError describes a decoding error in the guest's terms (JSON types and
// field paths) rather than ours: encoding/json names Go types and structs,
// which mean nothing to an agent author.
func paramsError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "params"
		}
		return &callError{
			status: abi.Errorf(abi.StatusInvalidArgument, "%s: got %s, want %s", field, te.Value, jsonTypeName(te.Type)),
			cause:  err,
		}
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return &callError{status: abi.Errorf(abi.StatusInvalidArgument, "params: %s", msg), cause: err}
}

func jsonTypeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer"
	case reflect.Float32, reflect.Float64:
		return "number"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	}
	return "JSON"
}

// marshalBody encodes a tool's result body. HTML escaping is off because
// results go to programs, not browsers, and escaping '<' as \u003c can make a
// body six times larger than what the tool received. The size is checked
// against abi.MaxResponseBytes here so no tool returns what the host cannot
// deliver.
func marshalBody(v any) (json.RawMessage, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, statusErrorf(abi.StatusToolError, err, "encode result")
	}
	b := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	if len(b) > abi.MaxResponseBytes {
		return nil, abi.Errorf(abi.StatusToolError, "result is %d bytes, limit %d", len(b), abi.MaxResponseBytes)
	}
	return b, nil
}
