package sandbox

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// shared is the Runtime most tests use: one per test binary, as in the
// daemon, so each module compiles once (Compile caches by digest).
var shared *Runtime

func TestMain(m *testing.M) {
	flag.Parse()
	ctx := context.Background()
	cacheDir, err := os.MkdirTemp("", "orloj-sandbox-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	shared, err = New(ctx, Config{CacheDir: cacheDir})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := shared.Close(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "close shared runtime:", err)
		code = 1
	}
	os.RemoveAll(cacheDir)
	if guestDir != "" {
		os.RemoveAll(guestDir)
	}
	os.Exit(code)
}

// watGuest returns a committed testdata/NAME.wasm (assembled from NAME.wat
// by testdata/gen.sh).
func watGuest(tb testing.TB, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".wasm"))
	if err != nil {
		tb.Fatalf("read guest %s: %v (regenerate with testdata/gen.sh)", name, err)
	}
	return b
}

var (
	guestOnce sync.Once
	guestDir  string
	guestErr  error
)

// goGuest returns the Go guest testdata/goguests/NAME built for wasip1. All
// of them are built by one `go build` the first time any is needed.
func goGuest(tb testing.TB, name string) []byte {
	tb.Helper()
	guestOnce.Do(func() {
		guestDir, guestErr = os.MkdirTemp("", "orloj-goguests-")
		if guestErr != nil {
			return
		}
		cmd := exec.Command("go", "build", "-trimpath", "-o", guestDir+string(os.PathSeparator), "./testdata/goguests/...")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			guestErr = fmt.Errorf("build Go guests: %v\n%s", err, out)
		}
	})
	if guestErr != nil {
		tb.Fatal(guestErr)
	}
	b, err := os.ReadFile(filepath.Join(guestDir, name))
	if err != nil {
		tb.Fatalf("Go guest %s: %v", name, err)
	}
	return b
}

func mustCompile(tb testing.TB, r *Runtime, wasm []byte) *Module {
	tb.Helper()
	m, err := r.Compile(context.Background(), wasm)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return m
}

// goroutineBaseline and awaitGoroutines check that a Run leaves nothing
// behind: the count must come back to the baseline. The poll is bounded and
// waits only as long as unwinding really takes.
func goroutineBaseline() int { return runtime.NumGoroutine() }

func awaitGoroutines(tb testing.TB, base int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Fatalf("goroutines: %d, baseline %d; stacks:\n%s", n, base, buf)
		}
		runtime.Gosched()
		time.Sleep(time.Millisecond)
	}
}

// runGuest runs m with rc on the shared runtime and checks that goroutines
// return to their baseline afterwards.
func runGuest(tb testing.TB, m *Module, rc RunConfig) Result {
	tb.Helper()
	if rc.Dispatcher == nil {
		rc.Dispatcher = NewMemDispatcher([]byte(`{}`), nil)
	}
	base := goroutineBaseline()
	res := m.rt.Run(context.Background(), m, rc)
	awaitGoroutines(tb, base)
	return res
}

func wantOutcome(tb testing.TB, res Result, want Outcome) {
	tb.Helper()
	if res.Outcome != want {
		tb.Fatalf("outcome %v, want %v\nerr: %v\nstdout: %s\nstderr: %s", res.Outcome, want, res.Err, clip(res.Stdout), clip(res.Stderr))
	}
	if (res.Err == nil) != (want == OutcomeSuccess) {
		tb.Fatalf("outcome %v with err %v", res.Outcome, res.Err)
	}
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:1000]) + "\n...\n" + string(b[len(b)-1000:])
	}
	return string(b)
}

func wantContains(tb testing.TB, what, got string, wants ...string) {
	tb.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			tb.Fatalf("%s does not contain %q:\n%s", what, w, got)
		}
	}
}
