package host

import (
	"context"
	"errors"
	"fmt"
	"reflect"

	"github.com/orloj/orloj/cluster"
)

// Cluster is what the host needs from the replicated state: propose a
// command, read the local replica. *cluster.Node implements it.
type Cluster interface {
	Apply(ctx context.Context, cmd cluster.Command) (any, error)
	FSM() *cluster.FSM
}

// ErrNilDependency is returned by a constructor handed a nil dependency: a
// wiring mistake caught where it is made, not at the first call that needs it.
var ErrNilDependency = errors.New("nil dependency")

// requireDeps names the first nil among deps. A typed nil (a nil *Forwarder in
// a Cluster) counts as nil: that is the mistake an interface would hide.
func requireDeps(who string, deps ...namedDep) error {
	for _, d := range deps {
		if isNil(d.v) {
			return fmt.Errorf("%s: %s is nil: %w", who, d.name, ErrNilDependency)
		}
	}
	return nil
}

type namedDep struct {
	name string
	v    any
}

func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Interface, reflect.Chan:
		return rv.IsNil()
	}
	return false
}
