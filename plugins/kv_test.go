package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/plugins"
)

// kvCall invokes the kv tool for task with params and returns the body.
func kvCall(t *testing.T, kv *plugins.KVTool, task, params string) string {
	t.Helper()
	res, err := kv.Invoke(t.Context(), plugins.Call{ID: "id-" + params, TaskID: task, Attempt: 1, Params: json.RawMessage(params)})
	if err != nil {
		t.Fatalf("task %s: kv %s: %v", task, params, err)
	}
	if res.Usage != nil {
		t.Errorf("kv result has usage %+v", res.Usage)
	}
	return string(res.Body)
}

func TestKVStagedUntilCommit(t *testing.T) {
	t.Parallel()
	mem := plugins.NewMemKV()
	kv := plugins.NewKV(mem)

	if got := kvCall(t, kv, "a", `{"op":"get","key":"invoice/7"}`); got != `{"found":false,"value":null}` {
		t.Fatalf("get of a missing key = %s", got)
	}
	if got := kvCall(t, kv, "a", `{"key":"invoice/7","op":"put","value":{"total":42}}`); got != `{"staged":true}` {
		t.Fatalf("put = %s", got)
	}
	if got := kvCall(t, kv, "a", `{"op":"get","key":"invoice/7"}`); got != `{"found":true,"value":{"total":42}}` {
		t.Errorf("own task: get = %s; want its staged write", got)
	}
	if got := kvCall(t, kv, "b", `{"op":"get","key":"invoice/7"}`); got != `{"found":false,"value":null}` {
		t.Errorf("other task before commit: get = %s; want not found", got)
	}
	mem.Commit("a")
	if got := kvCall(t, kv, "b", `{"op":"get","key":"invoice/7"}`); got != `{"found":true,"value":{"total":42}}` {
		t.Errorf("other task after commit: get = %s", got)
	}
}

func TestKVDelete(t *testing.T) {
	t.Parallel()
	mem := plugins.NewMemKV()
	kv := plugins.NewKV(mem)
	kvCall(t, kv, "a", `{"op":"put","key":"k","value":"v"}`)
	mem.Commit("a")

	if got := kvCall(t, kv, "b", `{"op":"delete","key":"k"}`); got != `{"staged":true}` {
		t.Fatalf("delete = %s", got)
	}
	if got := kvCall(t, kv, "b", `{"op":"get","key":"k"}`); got != `{"found":false,"value":null}` {
		t.Errorf("own task after staged delete: get = %s", got)
	}
	if got := kvCall(t, kv, "c", `{"op":"get","key":"k"}`); got != `{"found":true,"value":"v"}` {
		t.Errorf("other task before commit: get = %s; the delete must not show yet", got)
	}
	mem.Commit("b")
	if got := kvCall(t, kv, "c", `{"op":"get","key":"k"}`); got != `{"found":false,"value":null}` {
		t.Errorf("after commit: get = %s", got)
	}
}

func TestKVDiscard(t *testing.T) {
	t.Parallel()
	mem := plugins.NewMemKV()
	kv := plugins.NewKV(mem)
	kvCall(t, kv, "a", `{"op":"put","key":"k","value":1}`)
	mem.Commit("a")
	kvCall(t, kv, "b", `{"op":"put","key":"k","value":2}`)
	kvCall(t, kv, "b", `{"op":"put","key":"other","value":null}`)
	if got := kvCall(t, kv, "b", `{"op":"get","key":"other"}`); got != `{"found":true,"value":null}` {
		t.Errorf("null value: get = %s; want found", got)
	}
	mem.Discard("b")
	mem.Commit("b") // nothing left to commit
	if got := kvCall(t, kv, "c", `{"op":"get","key":"k"}`); got != `{"found":true,"value":1}` {
		t.Errorf("after discard: get = %s; want the committed value", got)
	}
	if got := kvCall(t, kv, "b", `{"op":"get","key":"other"}`); got != `{"found":false,"value":null}` {
		t.Errorf("after discard: own get = %s", got)
	}
}

func TestKVReinvokeIsIdempotent(t *testing.T) {
	t.Parallel()
	// The host re-invokes an in-doubt idempotent call with the same ID; a
	// second identical put must leave the same state as one.
	mem := plugins.NewMemKV()
	kv := plugins.NewKV(mem)
	for range 2 {
		kvCall(t, kv, "a", `{"op":"put","key":"n","value":1}`)
	}
	mem.Commit("a")
	if got := kvCall(t, kv, "b", `{"op":"get","key":"n"}`); got != `{"found":true,"value":1}` {
		t.Errorf("get = %s", got)
	}
}

func TestKVBadParams(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, params string
		want         string
	}{
		{"not an object", `"get"`, "object"},
		{"unknown op", `{"op":"incr","key":"k"}`, "incr"},
		{"missing op", `{"key":"k"}`, "op"},
		{"empty key", `{"op":"get","key":""}`, "key"},
		{"key too long", `{"op":"get","key":"` + strings.Repeat("k", plugins.MaxKVKeyBytes+1) + `"}`, "key"},
		{"put without value", `{"op":"put","key":"k"}`, "value is required"},
		{"get with value", `{"op":"get","key":"k","value":1}`, "takes no value"},
		{"delete with value", `{"op":"delete","key":"k","value":1}`, "takes no value"},
		{"unknown field", `{"op":"get","key":"k","ttl":5}`, "ttl"},
		{"key not a string", `{"op":"get","key":5}`, "key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			mem := plugins.NewMemKV()
			_, err := plugins.NewKV(mem).Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(tc.params)})
			wantStatus(t, err, abi.StatusInvalidArgument, tc.want)
		})
	}
	t.Run("no task ID", func(t *testing.T) {
		t.Parallel()
		_, err := plugins.NewKV(plugins.NewMemKV()).Invoke(t.Context(), plugins.Call{ID: "c", Params: json.RawMessage(`{"op":"get","key":"k"}`)})
		wantStatus(t, err, abi.StatusInvalidArgument, "task")
	})
	t.Run("key of exactly the limit", func(t *testing.T) {
		t.Parallel()
		kvCall(t, plugins.NewKV(plugins.NewMemKV()), "t", `{"op":"put","key":"`+strings.Repeat("é", plugins.MaxKVKeyBytes/2)+`","value":1}`)
	})
}

// failingKV is a backend that fails every call with err.
type failingKV struct{ err error }

func (f failingKV) Get(context.Context, string, string) (json.RawMessage, bool, error) {
	return nil, false, f.err
}
func (f failingKV) Stage(context.Context, string, plugins.KVWrite) error { return f.err }

func TestKVBackendErrors(t *testing.T) {
	t.Parallel()
	lost := errors.New("leadership lost")
	cases := []struct {
		name    string
		backend error
		want    abi.Status
	}{
		{"error without status is transient", lost, abi.StatusTransient},
		{"status is kept", abi.Errorf(abi.StatusToolError, "store is read-only"), abi.StatusToolError},
		{"bare status is kept", abi.StatusBudgetExceeded, abi.StatusBudgetExceeded},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			kv := plugins.NewKV(failingKV{tc.backend})
			for _, p := range []string{`{"op":"get","key":"k"}`, `{"op":"put","key":"k","value":1}`, `{"op":"delete","key":"k"}`} {
				_, err := kv.Invoke(t.Context(), plugins.Call{ID: "c", TaskID: "t", Params: json.RawMessage(p)})
				wantStatus(t, err, tc.want, `"k"`)
				if !errors.Is(err, tc.backend) {
					t.Errorf("%s: err %v does not wrap the backend's error", p, err)
				}
			}
		})
	}
}

func TestKVTool(t *testing.T) {
	t.Parallel()
	kv := plugins.NewKV(plugins.NewMemKV())
	if kv.Name() != "kv" || kv.Semantics() != plugins.Idempotent || !json.Valid(kv.Schema()) {
		t.Errorf("name %q semantics %q", kv.Name(), kv.Semantics())
	}
}
