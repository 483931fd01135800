package host

import (
	"context"

	"github.com/orloj/orloj/cluster"
)

// Cluster is what the host needs from the replicated state: propose a
// command, read the local replica. *cluster.Node implements it.
type Cluster interface {
	Apply(ctx context.Context, cmd cluster.Command) (any, error)
	FSM() *cluster.FSM
}
