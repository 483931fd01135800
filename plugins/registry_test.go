package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/orloj/orloj/plugins"
)

func TestRegistry(t *testing.T) {
	t.Parallel()
	r, err := plugins.NewRegistry(
		plugins.NewStub("zeta", plugins.ReadOnly, nil),
		plugins.NewKV(plugins.NewMemKV()),
		plugins.NewStub("alpha", plugins.Unsafe, nil),
	)
	if err != nil {
		t.Fatalf("NewRegistry: %v", err)
	}
	if got, want := r.Names(), []string{"alpha", "kv", "zeta"}; !slices.Equal(got, want) {
		t.Errorf("Names() = %v; want %v", got, want)
	}
	if tool, ok := r.Get("kv"); !ok || tool.Name() != "kv" {
		t.Errorf("Get(kv) = %v, %v", tool, ok)
	}
	if _, ok := r.Get("missing"); ok {
		t.Error("Get(missing) found a tool")
	}
}

func TestRegistryRefuses(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		tools []plugins.Tool
		is    error // errors.Is target, or nil to check only that it fails
	}{
		{"duplicate name", []plugins.Tool{plugins.NewStub("x", plugins.ReadOnly, nil), plugins.NewStub("x", plugins.Unsafe, nil)}, plugins.ErrDuplicateTool},
		{"nil tool", []plugins.Tool{nil}, nil},
		{"empty name", []plugins.Tool{plugins.NewStub("", plugins.ReadOnly, nil)}, nil},
		{"name a guest cannot call", []plugins.Tool{plugins.NewStub("two words", plugins.ReadOnly, nil)}, nil},
		{"unknown semantics", []plugins.Tool{plugins.NewStub("x", "at_most_once", nil)}, nil},
		{"reconcile without Reconciler", []plugins.Tool{plugins.NewStub("x", plugins.Reconcile, nil)}, nil},
		{"schema not JSON", []plugins.Tool{badSchema{plugins.NewStub("x", plugins.ReadOnly, nil)}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := plugins.NewRegistry(tc.tools...)
			if err == nil {
				t.Fatal("NewRegistry accepted the tools")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err = %v; want errors.Is %v", err, tc.is)
			}
		})
	}
}

type badSchema struct{ *plugins.Stub }

func (badSchema) Schema() json.RawMessage { return json.RawMessage(`{`) }

func TestRegistryDuplicateKeepsTheFirst(t *testing.T) {
	t.Parallel()
	r, _ := plugins.NewRegistry()
	first := plugins.NewStub("x", plugins.ReadOnly, nil)
	if err := r.Register(first); err != nil {
		t.Fatal(err)
	}
	err := r.Register(plugins.NewStub("x", plugins.Unsafe, nil))
	if !errors.Is(err, plugins.ErrDuplicateTool) {
		t.Fatalf("Register duplicate = %v", err)
	}
	if got, _ := r.Get("x"); got != first {
		t.Error("a refused duplicate replaced the registered tool")
	}
	if err := r.Register(plugins.NewReconcileStub("y", nil, nil)); err != nil {
		t.Errorf("Register reconcile stub: %v", err)
	}
}

func TestRegistryConcurrent(t *testing.T) {
	t.Parallel()
	r, _ := plugins.NewRegistry()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 25 {
				name := fmt.Sprintf("t%d-%d", i, j)
				if err := r.Register(plugins.NewStub(name, plugins.ReadOnly, nil)); err != nil {
					t.Error(err)
				}
				if _, ok := r.Get(name); !ok {
					t.Errorf("Get(%s) after Register", name)
				}
				_ = r.Names()
			}
		})
	}
	wg.Wait()
	if n := len(r.Names()); n != 200 {
		t.Errorf("%d tools; want 200", n)
	}
}

func TestStub(t *testing.T) {
	t.Parallel()
	var got plugins.Call
	s := plugins.NewStub("ocr", plugins.Idempotent, func(ctx context.Context, c plugins.Call) (plugins.Result, error) {
		got = c
		return plugins.Result{Body: json.RawMessage(`{"text":"hi"}`), Usage: &plugins.Usage{PromptTokens: 1}}, nil
	})
	call := plugins.Call{ID: "id", TaskID: "t", Attempt: 3, Params: json.RawMessage(`{}`)}
	res, err := s.Invoke(t.Context(), call)
	if err != nil || string(res.Body) != `{"text":"hi"}` || res.Usage.PromptTokens != 1 {
		t.Fatalf("Invoke = %s, %+v, %v", res.Body, res.Usage, err)
	}
	if got.ID != "id" || got.Attempt != 3 {
		t.Errorf("stub saw %+v", got)
	}
	if s.Name() != "ocr" || s.Semantics() != plugins.Idempotent || !json.Valid(s.Schema()) {
		t.Errorf("name %q semantics %q", s.Name(), s.Semantics())
	}
	res, err = plugins.NewStub("nil", plugins.ReadOnly, nil).Invoke(t.Context(), call)
	if err != nil || string(res.Body) != "null" {
		t.Errorf("nil stub = %s, %v; want null", res.Body, err)
	}
}

func TestReconcileStub(t *testing.T) {
	t.Parallel()
	s := plugins.NewReconcileStub("charge", nil, func(ctx context.Context, c plugins.Call) (plugins.Result, bool, error) {
		return plugins.Result{Body: json.RawMessage(`{"charged":"` + c.ID + `"}`)}, true, nil
	})
	var tool plugins.Tool = s
	rec, ok := tool.(plugins.Reconciler)
	if !ok || tool.Semantics() != plugins.Reconcile {
		t.Fatalf("reconcile stub: Reconciler %v, semantics %q", ok, tool.Semantics())
	}
	res, applied, err := rec.Reconcile(t.Context(), plugins.Call{ID: "c1"})
	if err != nil || !applied || string(res.Body) != `{"charged":"c1"}` {
		t.Errorf("Reconcile = %s, %v, %v", res.Body, applied, err)
	}
	_, applied, err = plugins.NewReconcileStub("r", nil, nil).Reconcile(t.Context(), plugins.Call{ID: "c1"})
	if err != nil || applied {
		t.Errorf("nil reconcile = %v, %v; want not applied", applied, err)
	}
}

func TestSemanticsValid(t *testing.T) {
	t.Parallel()
	for _, s := range []plugins.Semantics{plugins.ReadOnly, plugins.Idempotent, plugins.Reconcile, plugins.Unsafe} {
		if !s.Valid() {
			t.Errorf("%q not valid", s)
		}
	}
	for _, s := range []plugins.Semantics{"", "Unsafe", "exactly_once"} {
		if s.Valid() {
			t.Errorf("%q valid", s)
		}
	}
}
