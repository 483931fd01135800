//go:build orloj_bench_plaintext

package chaos_test

import "github.com/orloj/orloj/daemon"

func init() { plaintext = daemon.InsecurePlaintextForBenchmarks }
