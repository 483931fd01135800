package api

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/orloj/orloj/abi"
)

// requestTypes are the bodies the routes decode, indexed by the fuzzer's
// first argument.
var requestTypes = []reflect.Type{
	reflect.TypeFor[SubmitRequest](),
	reflect.TypeFor[ReasonRequest](),
	reflect.TypeFor[BulkRetryRequest](),
	reflect.TypeFor[BulkDiscardRequest](),
	reflect.TypeFor[JoinRequest](),
	reflect.TypeFor[MemberRequest](),
	reflect.TypeFor[RetryDLQRequest](),
}

// FuzzRequestBody checks decodeStrict against every request type: it never
// panics, refuses only with a 400, and what it accepts is valid UTF-8 with
// no lone surrogates or duplicate members (abi.CheckJSON), spells every
// field exactly, and decodes as encoding/json decodes it. The seeds in
// testdata/fuzz/FuzzRequestBody include the inputs that once got through.
func FuzzRequestBody(f *testing.F) {
	for _, s := range []string{
		`{"agent":"hello","version":"v1","input":{"n":1},"idempotency_key":"k","max_attempts":3,"retry":{"base":"1s","factor":2,"cap":"1m"}}`,
		`{"reason":"done"}`, `{"version":"v2"}`, `{"agent":"a","class":"permanent","version":"v1"}`,
		`{"id":"n2","raft_addr":"127.0.0.1:7071","api_addr":"127.0.0.1:7070","fresh":true,"voter":true}`,
		`null`, `[]`, `{"input":null}`, `{"retry":null}`, `{"retry":[1]}`, `{"input":{"a":{"b":[{"c":"\ud83d\ude00"}]}}}`,
	} {
		for i := range requestTypes {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		typ := requestTypes[int(kind)%len(requestTypes)]
		v := reflect.New(typ)
		err := decodeStrict(body, v.Interface())
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != 400 || ae.body.Code != CodeBadRequest || ae.body.Error == "" {
				t.Fatalf("%s: refusal %v is not a 400 with a message", typ.Name(), err)
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("%s: accepted invalid UTF-8: %q", typ.Name(), body)
		}
		if err := abi.CheckJSON(body); err != nil {
			t.Fatalf("%s: accepted %q, which abi.CheckJSON refuses: %v", typ.Name(), body, err)
		}
		if bad := misspelled(body, typ); bad != "" {
			t.Fatalf("%s: accepted %q, whose member %q is not a field", typ.Name(), body, bad)
		}
		lenient := reflect.New(typ)
		if err := json.Unmarshal(body, lenient.Interface()); err != nil {
			t.Fatalf("%s: accepted %q, which encoding/json refuses: %v", typ.Name(), body, err)
		}
		if !reflect.DeepEqual(v.Interface(), lenient.Interface()) {
			t.Fatalf("%s: %q decodes to %+v, encoding/json to %+v", typ.Name(), body, v.Elem(), lenient.Elem())
		}
	})
}

// misspelled returns a member of body, at a struct's place, that is not
// exactly one of its fields' JSON names; "" if there is none. It is the
// fuzzer's own oracle, written without decodeStrict's walk.
func misspelled(body []byte, t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || opaque(t) {
		return ""
	}
	var members map[string]json.RawMessage
	if json.Unmarshal(body, &members) != nil {
		return "" // not an object here; Decode refused or null left it empty
	}
	for k, raw := range members {
		var field *reflect.StructField
		for i := range t.NumField() {
			sf := t.Field(i)
			if name, _, _ := strings.Cut(sf.Tag.Get("json"), ","); name == k {
				field = &sf
			}
		}
		if field == nil {
			return k
		}
		if bad := misspelled(raw, field.Type); bad != "" {
			return k + "." + bad
		}
	}
	return ""
}
