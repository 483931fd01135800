package plugins

import (
	"context"
	"encoding/json"
)

// InvokeFunc performs a call; it is the body of a stub tool.
type InvokeFunc func(ctx context.Context, call Call) (Result, error)

// ReconcileFunc answers Reconciler.Reconcile for a stub tool.
type ReconcileFunc func(ctx context.Context, call Call) (res Result, applied bool, err error)

// anySchema accepts any params: a stub stands in for a tool whose schema the
// test does not care about.
var anySchema = json.RawMessage(`{}`)

// Stub is a tool whose behaviour is a function, for tests and `orlojd run`.
type Stub struct {
	name string
	sem  Semantics
	fn   InvokeFunc
}

// NewStub returns a tool called name that answers every call with fn, or with
// a null body when fn is nil. A stub made with Reconcile semantics is refused
// by the Registry, as any tool that cannot reconcile is; use NewReconcileStub.
func NewStub(name string, sem Semantics, fn InvokeFunc) *Stub {
	return &Stub{name: name, sem: sem, fn: fn}
}

func (s *Stub) Name() string            { return s.name }
func (s *Stub) Schema() json.RawMessage { return anySchema }
func (s *Stub) Semantics() Semantics    { return s.sem }
func (s *Stub) Invoke(ctx context.Context, call Call) (Result, error) {
	if s.fn == nil {
		return Result{Body: json.RawMessage("null")}, nil
	}
	return s.fn(ctx, call)
}

// ReconcileStub is a Stub with Semantics Reconcile, for testing how the host
// resolves calls that are in doubt.
type ReconcileStub struct {
	Stub
	reconcile ReconcileFunc
}

// NewReconcileStub returns a Reconcile tool called name that invokes with fn
// and reconciles with rec. A nil rec reports every call as not applied.
func NewReconcileStub(name string, fn InvokeFunc, rec ReconcileFunc) *ReconcileStub {
	return &ReconcileStub{Stub: Stub{name: name, sem: Reconcile, fn: fn}, reconcile: rec}
}

func (s *ReconcileStub) Reconcile(ctx context.Context, call Call) (Result, bool, error) {
	if s.reconcile == nil {
		return Result{}, false, nil
	}
	return s.reconcile(ctx, call)
}
