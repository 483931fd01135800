package orloj_test

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/orloj/orloj"

// TestImportDirection enforces the package shape of docs/DESIGN: imports point
// downward only (cmd/orlojd → daemon → host/api → host → {sandbox, cluster, plugins} → abi), so a
// package never reaches, even transitively, what it must not know about.
func TestImportDirection(t *testing.T) {
	deps := listDeps(t)
	if len(deps) == 0 {
		t.Fatal("go list returned no packages")
	}
	type rule struct {
		pkg       string // package path prefix under the module
		forbidden []string
		stdOnly   bool // only the standard library and the allowed module packages
		allowed   []string
	}
	rules := []rule{
		{pkg: "abi", stdOnly: true},
		{pkg: "sdk", stdOnly: true, allowed: []string{"abi", "sdk"}},
		{pkg: "examples", stdOnly: true, allowed: []string{"abi", "sdk", "examples"}},
		{pkg: "sandbox", forbidden: []string{module + "/cluster", module + "/host", module + "/plugins", module + "/cmd"}},
		{pkg: "cluster", forbidden: []string{"github.com/tetratelabs/wazero", module + "/sandbox", module + "/host", module + "/plugins", module + "/cmd"}},
		{pkg: "plugins", forbidden: []string{module + "/sandbox", module + "/cluster", module + "/host", module + "/cmd"}},
		{pkg: "telemetry", forbidden: []string{module + "/sandbox", module + "/cluster", module + "/host", module + "/plugins", module + "/daemon", module + "/cmd"}},
		{pkg: "host", forbidden: []string{module + "/daemon", module + "/cmd"}},
		{pkg: "daemon", forbidden: []string{module + "/cmd"}},
	}
	checked := map[string]bool{}
	for pkg, pkgDeps := range deps {
		rel, ok := strings.CutPrefix(pkg, module+"/")
		if !ok {
			continue
		}
		for _, r := range rules {
			if rel != r.pkg && !strings.HasPrefix(rel, r.pkg+"/") {
				continue
			}
			checked[r.pkg] = true
			for _, d := range pkgDeps {
				for _, f := range r.forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s imports %s (directly or not); %s must not depend on it", pkg, d, r.pkg)
					}
				}
				if r.stdOnly && !isStd(d) && !allowedIn(d, r.allowed) {
					t.Errorf("%s imports %s; %s may import only the standard library%s", pkg, d, r.pkg, listed(r.allowed))
				}
			}
		}
	}
	for _, must := range []string{"abi", "sandbox", "sdk", "host", "daemon", "telemetry"} {
		if !checked[must] {
			t.Errorf("no package under %s was checked; is the rule stale?", must)
		}
	}
}

func listDeps(t *testing.T) map[string][]string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, "./...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			deps[f[0]] = f[1:]
		}
	}
	return deps
}

// isStd reports whether an import path is in the standard library: its first
// element has no dot (the go command's own rule).
func isStd(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

func allowedIn(dep string, allowed []string) bool {
	for _, a := range allowed {
		p := module + "/" + a
		if dep == p || strings.HasPrefix(dep, p+"/") {
			return true
		}
	}
	return false
}

func listed(allowed []string) string {
	if len(allowed) == 0 {
		return ""
	}
	return " and " + strings.Join(allowed, ", ")
}
