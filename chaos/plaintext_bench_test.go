//go:build orloj_bench_plaintext

package chaos_test

import "github.com/orloj/orloj/host"

func init() { plaintext = host.InsecurePlaintextForBenchmarks }
