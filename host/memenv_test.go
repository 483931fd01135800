package host

import (
	"testing"
	"time"

	"github.com/orloj/orloj/cluster/clustertest"
	"github.com/orloj/orloj/plugins"
)

// newMemEnv is a node without workers, in memory (package clustertest): for
// tests that need the cluster's state and Apply path, but no disk, no TCP
// and no restart. It has no data dir or address: e.open does not apply.
func newMemEnv(t *testing.T, reg *plugins.Registry) *env {
	t.Helper()
	e := &env{t: t, tools: reg, log: testLogger(t), ttl: 2 * time.Second}
	e.node = clustertest.NewNode(t)
	e.exec = NewExecutor(e.node, runtime(t), e.tools, time.Now, e.log)
	t.Cleanup(e.close)
	return e
}
