// Package chaos is Orloj's fault harness: its tests start real orlojd
// processes on loopback, drive a workload through the API and inject
// SIGKILLs, SIGSTOPs and network partitions (through netproxy), then check
// that nothing was lost, no effect happened twice, the lease history is
// linearizable (lincheck) and every replica ends in the same state.
//
// `make test` runs a short version; `make chaos` the long one.
package chaos
