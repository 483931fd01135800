// Package sandbox runs Orloj agents: WebAssembly modules whose only door out
// is the orloj_v1 host ABI (package abi) plus a closed-off WASI.
//
// It owns the wazero runtime and its on-disk compilation cache, module
// validation (only orloj_v1 and wasi_snapshot_preview1 imports, each with the
// right signature; _start or orloj_run, and memory, exported), one fresh
// instance per attempt with a memory cap (enforced by an mmap-reserving
// allocator on Linux), a deadline that interrupts even a tight loop,
// deterministic randomness seeded from the task ID, bounded stdout/stderr
// capture, the classification of how an attempt ended (Outcome), and the
// orloj_v1 host functions.
//
// A module is a WASI command (_start, run from scratch in every attempt) or
// a reactor (orloj_run): a reactor is initialized once, at Compile, and every
// attempt restores that snapshot into a fresh instance (snapshot.go).
//
// The host functions validate every guest pointer before they do anything,
// then call out through one small interface, Dispatcher. The sandbox knows
// nothing of ledgers, Raft or tools: whoever wires it up (package host)
// decides what a call means. MemDispatcher is an in-memory Dispatcher for
// tests and local runs.
//
// Time: WASI clocks are wazero's fake, deterministic ones (the wall clock
// starts at 2022-01-01 and ticks 1 ms per reading; sleeps return at once). An
// agent that needs the real time asks orloj_v1.now, which the Dispatcher
// records, so a replay sees the same value.
package sandbox
