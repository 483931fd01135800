package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestPprofThroughServe: --pprof-addr serves the profiler on loopback
// through a started orlojd serve, and is refused on any other address.
func TestPprofThroughServe(t *testing.T) {
	t.Parallel()
	for _, addr := range []string{"0.0.0.0:0", "192.0.2.1:6060", "example.com:6060", "nonsense"} {
		if stop, err := servePprof(addr, hclog.NewNullLogger()); err == nil {
			stop()
			t.Errorf("servePprof(%q) accepted a non-loopback address", addr)
		}
	}
	addr := freePort(t)
	n := startNode(t, withArgs("--pprof-addr", addr))
	n.waitLog("serving the profiler", 30*time.Second)
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "serve") {
		t.Fatalf("pprof cmdline: %s %q", resp.Status, b)
	}
}
