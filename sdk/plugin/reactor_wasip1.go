//go:build wasip1

package plugin

import (
	_ "unsafe" // go:linkname
)

// Reactor builds, as for agents (sdk/orloj): built with -buildmode=c-shared,
// a plugin is pre-initialized once per version and every call starts from
// that state. Built with -buildmode=c-shared, a Go agent is a WASI
// reactor: _initialize starts the Go runtime and runs every package
// initializer, then returns to the host without calling main. The host keeps
// that initialized state and, for every attempt, restores it into a fresh
// instance and calls orloj_run, which runs the agent's main, so the same
// `func main() { orloj.Main(run) }` serves both builds and an attempt pays
// for none of the start-up. In a command build (the default) the export
// exists too but the host never calls it: it runs _start.

// mainMain is the agent's func main. The runtime reaches it the same way
// (runtime.main_main); in c-shared mode nothing else calls it.
//
//go:linkname mainMain main.main
func mainMain()

// orlojRun is the reactor's entry point (abi.ExportRun). main returning is
// success; Main's os.Exit on failure ends the attempt through proc_exit, as
// in a command module.
//
//go:wasmexport orloj_run
func orlojRun() {
	mainMain()
}
