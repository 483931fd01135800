//go:build orloj_bench_plaintext

package cluster

// InsecurePlaintextForBenchmarks turns mTLS off on the cluster port, so a
// benchmark can measure what TLS costs. It exists only in builds with the
// orloj_bench_plaintext tag, which no release uses.
func InsecurePlaintextForBenchmarks(c *Config) { c.plaintext = true }
