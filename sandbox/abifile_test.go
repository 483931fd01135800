package sandbox

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/orloj/orloj/abi"
)

var updateABI = flag.Bool("update-abi", false, "rewrite abi/*.wat from the host's table of functions")

// TestABIFilesMatchHost keeps the published import declarations
// (abi/orloj_v1.wat, abi/orloj_tool_v1.wat) equal to the functions the host
// module exports, so a guest library written from them links. Run with
// -update-abi to rewrite them after changing hostFuncs.
func TestABIFilesMatchHost(t *testing.T) {
	t.Parallel()
	for _, f := range []struct {
		path, module, doc string
		keep              func(string) bool
	}{
		{"../abi/orloj_v1.wat", abi.ModuleName, "docs/abi.md", func(string) bool { return true }},
		{"../abi/orloj_tool_v1.wat", abi.ToolModuleName, "docs/plugins.md", func(n string) bool { return slices.Contains(abi.ToolFuncs, n) }},
	} {
		want := renderImports(f.module, f.doc, f.keep)
		if *updateABI {
			if err := os.WriteFile(f.path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatalf("%v (go test ./sandbox -run TestABIFilesMatchHost -update-abi writes it)", err)
		}
		if string(got) != want {
			t.Errorf("%s differs from the host's functions; want:\n%s\n(go test ./sandbox -run TestABIFilesMatchHost -update-abi rewrites it)", f.path, want)
		}
	}
}

func renderImports(module, doc string, keep func(string) bool) string {
	var b strings.Builder
	fmt.Fprintf(&b, ";; %s: every host function a module may import from %q, with its\n", module, module)
	fmt.Fprintf(&b, ";; signature. Every parameter and result is an i32; the result is a\n")
	fmt.Fprintf(&b, ";; status (%s). Pointers and lengths are unsigned byte offsets into the\n", doc)
	fmt.Fprintf(&b, ";; module's exported memory. A module imports only what it uses.\n")
	fmt.Fprintf(&b, "(module\n")
	for _, h := range hostFuncs {
		if !keep(h.name) {
			continue
		}
		fmt.Fprintf(&b, "  (import %q %q (func $%s", module, h.name, h.name)
		for _, p := range h.params {
			fmt.Fprintf(&b, " (param $%s i32)", p)
		}
		fmt.Fprintf(&b, " (result i32)))\n")
	}
	fmt.Fprintf(&b, ")\n")
	return b.String()
}
