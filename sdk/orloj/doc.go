// Package orloj is the Go SDK for Orloj agents: it owns the guest side of the
// orloj_v1 ABI (package abi), turning the host functions and their memory
// protocol into ordinary Go calls, and a fake host that runs the same calls in
// a plain `go test`.
//
// An agent is a package main that hands its logic to Main:
//
//	func main() { orloj.Main(run) }
//
//	func run() error {
//		var in struct{ URL string `json:"url"` }
//		if err := orloj.DecodeInput(&in); err != nil {
//			return err
//		}
//		res, err := orloj.Call("http", map[string]any{"method": "GET", "url": in.URL})
//		if err != nil {
//			return err // a transient failure exits 75 and the task is retried
//		}
//		return orloj.Output(res)
//	}
//
// # Two builds, one API
//
// Built with GOOS=wasip1 GOARCH=wasm, the package imports the orloj_v1 host
// functions and the agent is a module for the Orloj sandbox. Built as a
// reactor (-buildmode=c-shared), the Go runtime and the package initializers
// run once per agent version and every attempt starts from that state; the
// package exports orloj_run, which calls main, so main is the same in both
// builds. Built without it, the agent is a WASI command that starts from
// scratch in every attempt:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o agent.wasm ./myagent
//
// In a reactor, package-level variables are initialized once and then copied
// into each attempt: keep anything that must differ per task (the input, the
// time, crypto/rand bytes) out of initializers and read it in run. A package
// initializer that calls the host (Input, Now, Call, ...) still works, but
// costs the agent its pre-initialization. Work that is the same for every
// task belongs in initializers for the same reason: Prepare, called from one,
// has encoding/json learn the agent's types once instead of in every attempt.
//
// Built for any other target, the same functions talk to a Fake, an in-process
// host that tests install to script tool results and to inspect what the agent
// did (calls, output, logs, effects). The fake validates requests with the
// host's own decoder (abi.DecodeCallRequest) and the bytes cross the same
// buffer protocol, including the buffer-too-small path, so an agent meets the
// same errors under test as in production. Without an installed Fake a native
// build has no host, and every call returns an error saying so.
//
// # Replay
//
// The host records every tool call and, when a task is retried, answers
// unchanged calls from its ledger instead of repeating them. A call's identity
// is its tool, its canonical params and how many identical calls came before
// it (or the key given with WithKey), so an agent must issue its calls in a
// deterministic order and take the time from Now, never from time.Now.
// Calls from several goroutines are serialised, but their order is then up to
// the scheduler; keep tool calls on one goroutine.
//
// # Errors
//
// Errors from the host carry an abi.Status: branch on them with errors.Is and
// the Err* constants (errors.Is(err, orloj.ErrTransient)), or errors.As into
// *Error for the message. Main maps a returned error to the exit code the host
// understands: ErrTransient asks for a retry, anything else fails the task.
package orloj
