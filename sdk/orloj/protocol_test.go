package orloj

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/orloj/orloj/abi"
)

// answer is one scripted reply of a raw host function.
type answer struct {
	st   abi.Status
	n    uint32
	body []byte // copied into the buffer, up to its length
}

// scripted returns a raw function that replies with the answers in order and
// counts its calls.
func scripted(t *testing.T, calls *int, answers ...answer) func([]byte) (abi.Status, uint32) {
	return func(buf []byte) (abi.Status, uint32) {
		if *calls >= len(answers) {
			t.Fatalf("raw function called %d times, scripted %d", *calls+1, len(answers))
		}
		a := answers[*calls]
		*calls++
		copy(buf, a.body)
		return a.st, a.n
	}
}

func TestExchange(t *testing.T) {
	big := bytes.Repeat([]byte("x"), respBufSize+1)
	tests := []struct {
		name       string
		first      []answer
		fetch      []answer
		wantSt     abi.Status
		wantBody   []byte
		wantErr    error
		wantFetchN int
	}{
		{
			name:     "fits",
			first:    []answer{{abi.StatusOK, 2, []byte("{}")}},
			wantSt:   abi.StatusOK,
			wantBody: []byte("{}"),
		},
		{
			name:     "error status keeps its body",
			first:    []answer{{abi.StatusTransient, 3, []byte("abc")}},
			wantSt:   abi.StatusTransient,
			wantBody: []byte("abc"),
		},
		{
			name:       "too small fetches once with the announced size",
			first:      []answer{{abi.StatusBufferTooSmall, uint32(len(big)), nil}},
			fetch:      []answer{{abi.StatusOK, uint32(len(big)), big}},
			wantSt:     abi.StatusOK,
			wantBody:   big,
			wantFetchN: 1,
		},
		{
			name:       "too small keeps the deferred status",
			first:      []answer{{abi.StatusBufferTooSmall, uint32(len(big)), nil}},
			fetch:      []answer{{abi.StatusToolError, uint32(len(big)), big}},
			wantSt:     abi.StatusToolError,
			wantBody:   big,
			wantFetchN: 1,
		},
		{
			name:    "host claims more than the buffer holds",
			first:   []answer{{abi.StatusOK, respBufSize + 1, nil}},
			wantErr: ErrFault,
		},
		{
			name:    "host announces more than the limit",
			first:   []answer{{abi.StatusBufferTooSmall, abi.MaxResponseBytes + 1, nil}},
			wantErr: ErrFault,
		},
		{
			name:       "still too small after fetch",
			first:      []answer{{abi.StatusBufferTooSmall, respBufSize + 10, nil}},
			fetch:      []answer{{abi.StatusBufferTooSmall, respBufSize + 20, nil}},
			wantErr:    ErrFault,
			wantFetchN: 1,
		},
		{
			name:       "fetch claims more than announced",
			first:      []answer{{abi.StatusBufferTooSmall, respBufSize + 10, nil}},
			fetch:      []answer{{abi.StatusOK, respBufSize + 11, nil}},
			wantErr:    ErrFault,
			wantFetchN: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var firstN, fetchN int
			st, body, err := exchange(scripted(t, &firstN, tt.first...), scripted(t, &fetchN, tt.fetch...))
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if firstN != 1 || fetchN != tt.wantFetchN {
				t.Errorf("first called %d times, fetch %d; want 1 and %d", firstN, fetchN, tt.wantFetchN)
			}
			if err != nil {
				return
			}
			if st != tt.wantSt || !bytes.Equal(body, tt.wantBody) {
				t.Errorf("got (%v, %d bytes), want (%v, %d bytes)", st, len(body), tt.wantSt, len(tt.wantBody))
			}
		})
	}
}

// The body exchange returns must not alias the shared buffer, or the next
// call would overwrite a result the agent still holds.
func TestExchangeBodyDoesNotAliasBuffer(t *testing.T) {
	reply := func(s string) func([]byte) (abi.Status, uint32) {
		return func(buf []byte) (abi.Status, uint32) { return abi.StatusOK, uint32(copy(buf, s)) }
	}
	_, first, err := exchange(reply("first"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := exchange(reply("XXXXX"), nil); err != nil {
		t.Fatal(err)
	}
	if string(first) != "first" {
		t.Errorf("first body became %q after a second exchange", first)
	}
}

// go:wasmimport needs literal names, so nothing but this test ties
// host_wasip1.go to the abi constants.
func TestWasmImportsMatchABI(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "host_wasip1.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, decl := range file.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok || fn.Doc == nil {
			continue
		}
		for _, c := range fn.Doc.List {
			rest, ok := strings.CutPrefix(c.Text, "//go:wasmimport ")
			if !ok {
				continue
			}
			module, name, _ := strings.Cut(rest, " ")
			if module != abi.ModuleName {
				t.Errorf("%s imports from module %q, want %q", fn.Name.Name, module, abi.ModuleName)
			}
			got[name] = true
		}
	}
	want := map[string]bool{
		abi.FuncInput: true, abi.FuncCall: true, abi.FuncResponse: true, abi.FuncOutput: true,
		abi.FuncLog: true, abi.FuncNow: true, abi.FuncEmit: true, abi.FuncCallBatch: true,
		abi.FuncWait: true,
	}
	if !maps.Equal(got, want) {
		t.Errorf("imports %v, want %v", slices.Sorted(maps.Keys(got)), slices.Sorted(maps.Keys(want)))
	}
}

func TestCutUTF8(t *testing.T) {
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"short", "abc", 5, "abc"},
		{"exact", "abc", 3, "abc"},
		{"ascii", "abcdef", 4, "abcd"},
		{"mid rune backs off", "aé", 2, "a"}, // é is 2 bytes
		{"rune boundary kept", "aéb", 3, "aé"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cutUTF8(tt.in, tt.max); got != tt.want {
				t.Errorf("cutUTF8(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

// encodeRequest appends its JSON by hand; it must say what json.Marshal of
// the same abi.CallRequest says, whatever the tool, key and params hold.
func TestEncodeRequestMatchesMarshal(t *testing.T) {
	for _, c := range []struct {
		tool, key string
		params    any
	}{
		{"http", "", json.RawMessage(`{"url":"https://x.example/a?b=1"}`)},
		{"model", "step-1", map[string]any{"prompt": "say \"hi\"\n\ttab \\ slash", "n": 2}},
		{"t", "k\x00\x1f\"\\é✓", []byte(`[1,2,3]`)},
		{"t", "", nil},
		{"t", "", json.RawMessage(nil)},
		{"we\"ird\\tool", "", "plain string"},
	} {
		got, err := encodeRequest(c.tool, c.params, []CallOption{WithKey(c.key)})
		if err != nil {
			t.Fatalf("encodeRequest(%q): %v", c.tool, err)
		}
		var dec abi.CallRequest
		if err := json.Unmarshal(got, &dec); err != nil {
			t.Fatalf("encodeRequest(%q) = %s: not JSON: %v", c.tool, got, err)
		}
		p, _ := marshal(c.params)
		if dec.Tool != c.tool || dec.Key != c.key || !jsonEqual(t, dec.Params, p) {
			t.Errorf("encodeRequest(%q, %q) = %s; decodes to %+v", c.tool, c.key, got, dec)
		}
	}
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
