//go:build orloj_bench_plaintext

package daemon

import "github.com/orloj/orloj/cluster"

func init() { plaintextHook = cluster.InsecurePlaintextForBenchmarks }

// InsecurePlaintextForBenchmarks turns mTLS off on the daemon's cluster
// port, so a benchmark can measure what TLS costs. It exists only in builds
// with the orloj_bench_plaintext tag, which no release uses.
func InsecurePlaintextForBenchmarks(c *Config) { c.plaintext = true }
