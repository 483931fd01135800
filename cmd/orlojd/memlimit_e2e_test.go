package main

import (
	"strings"
	"testing"
)

// TestGoMemoryLimitThroughServe: serve sets the Go runtime's soft memory
// limit to 192 MiB unless told otherwise, takes GOMEMLIMIT when it is set,
// and lets --go-memory-limit (or its variable) win over both; 0 is none.
func TestGoMemoryLimitThroughServe(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		opts []nodeOpt
		want string // in the log; "" for no line
	}{
		{"default", nil, "go memory limit: bytes=201326592 source=default"},
		{"GOMEMLIMIT", []nodeOpt{withEnv("GOMEMLIMIT=300MiB")}, "go memory limit: bytes=314572800 source=GOMEMLIMIT"},
		{"flag over GOMEMLIMIT", []nodeOpt{withEnv("GOMEMLIMIT=300MiB"), withArgs("--go-memory-limit", "256MiB")}, "go memory limit: bytes=268435456 source=go-memory-limit"},
		{"variable", []nodeOpt{withEnv("ORLOJ_GO_MEMORY_LIMIT=160MiB")}, "go memory limit: bytes=167772160 source=go-memory-limit"},
		{"none", []nodeOpt{withArgs("--go-memory-limit", "0")}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			n := startNode(t, c.opts...)
			log := n.log.String()
			if c.want == "" {
				if strings.Contains(log, "go memory limit") {
					t.Fatalf("with --go-memory-limit 0 the log still names a limit:\n%s", log)
				}
				return
			}
			if !strings.Contains(log, c.want) {
				t.Fatalf("log does not say %q:\n%s", c.want, log)
			}
		})
	}
}
