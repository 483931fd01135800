package sandbox

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

// Benchmarks. Run with
//
//	go test -run '^$' -bench . -benchtime 2s ./sandbox/
//
// Figures to compare with DESIGN.md: compile cold vs file cache, run of a
// Go echo guest, one empty host call, one tool call round trip, RSS per
// live instance.

func BenchmarkCompile(b *testing.B) {
	wasm := goGuest(b, "echo")
	ctx := context.Background()
	compileOnce := func(b *testing.B, dir string) {
		b.StopTimer()
		r, err := New(ctx, Config{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := r.Compile(ctx, wasm); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		r.Close(ctx)
		b.StartTimer()
	}
	b.Run("cold", func(b *testing.B) {
		b.SetBytes(int64(len(wasm)))
		for b.Loop() {
			compileOnce(b, "") // in memory only: every Runtime starts cold
		}
	})
	b.Run("file_cache", func(b *testing.B) {
		dir := b.TempDir()
		r, err := New(ctx, Config{CacheDir: dir})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Compile(ctx, wasm); err != nil { // warm the cache
			b.Fatal(err)
		}
		r.Close(ctx)
		b.SetBytes(int64(len(wasm)))
		b.ResetTimer()
		for b.Loop() {
			compileOnce(b, dir)
		}
	})
}

// BenchmarkRunEcho: instantiate + run + exit of a Go command module that
// copies its input to its output. Reports p50 and p99 as well as the mean.
func BenchmarkRunEcho(b *testing.B) {
	m := mustCompile(b, shared, goGuest(b, "echo"))
	input := []byte(`{"text":"hello"}`)
	ctx := context.Background()
	var durs []time.Duration
	for b.Loop() {
		start := time.Now()
		res := shared.Run(ctx, m, RunConfig{Dispatcher: NewMemDispatcher(input, nil)})
		durs = append(durs, time.Since(start))
		if res.Outcome != OutcomeSuccess {
			b.Fatal(res.Err)
		}
	}
	reportPercentiles(b, durs)
}

func reportPercentiles(b *testing.B, durs []time.Duration) {
	slices.Sort(durs)
	if len(durs) == 0 {
		return
	}
	b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
}

// nopDispatcher answers every call at once, to measure the host-call path
// itself (bounds checks, context lookup, memory writes) without recording.
type nopDispatcher struct{ input []byte }

func (d nopDispatcher) Input(context.Context) ([]byte, error) { return d.input, nil }
func (nopDispatcher) Call(context.Context, abi.CallRequest) ([]byte, error) {
	return []byte(`{"a":1}`), nil
}
func (nopDispatcher) Output(context.Context, []byte) error            { return nil }
func (nopDispatcher) Log(context.Context, abi.LogLevel, []byte) error { return nil }
func (nopDispatcher) Now(context.Context) (time.Time, error)          { return time.Unix(0, 1), nil }
func (nopDispatcher) Emit(context.Context, abi.Effect) error          { return nil }

// benchHostLoop runs testdata/hostloop.wat making b.N calls in one attempt,
// so ns/op is the cost of one guest->host call (the ~50 µs instantiation is
// amortized away).
func benchHostLoop(b *testing.B, mode uint32, d func(input []byte) Dispatcher) {
	m := mustCompile(b, shared, watGuest(b, "hostloop"))
	b.ResetTimer()
	res := shared.Run(context.Background(), m, RunConfig{Dispatcher: d(hostloopInput(uint32(b.N), mode)), Timeout: 10 * time.Minute})
	if res.Outcome != OutcomeSuccess {
		b.Fatal(res.Outcome, res.Err)
	}
}

func BenchmarkHostCall(b *testing.B) {
	nop := func(in []byte) Dispatcher { return nopDispatcher{in} }
	mem := func(in []byte) Dispatcher { return NewMemDispatcher(in, nil) }
	b.Run("now/nop", func(b *testing.B) { benchHostLoop(b, 0, nop) })
	b.Run("log_empty/nop", func(b *testing.B) { benchHostLoop(b, 1, nop) })
	b.Run("now/mem", func(b *testing.B) { benchHostLoop(b, 0, mem) })
}

// BenchmarkToolCall: one call of an in-memory tool, request decode and
// canonicalization, MemDispatcher recording and the response copy included.
func BenchmarkToolCall(b *testing.B) {
	echo := map[string]ToolFunc{"echo": func(_ context.Context, p json.RawMessage) (json.RawMessage, error) { return p, nil }}
	b.Run("mem", func(b *testing.B) {
		benchHostLoop(b, 2, func(in []byte) Dispatcher { return NewMemDispatcher(in, echo) })
	})
	b.Run("nop", func(b *testing.B) {
		benchHostLoop(b, 2, func(in []byte) Dispatcher { return nopDispatcher{in} })
	})
}

// parkedDispatcher holds every instance inside its first host call (input)
// until released, so the instances stay alive together.
type parkedDispatcher struct {
	nopDispatcher
	entered chan<- struct{}
	release <-chan struct{}
}

func (p parkedDispatcher) Input(ctx context.Context) ([]byte, error) {
	p.entered <- struct{}{}
	<-p.release
	return []byte(`{}`), nil
}

// BenchmarkRSSPerInstance parks 32 Go echo guests inside a host call at once
// and reports the host's RSS growth per live instance.
func BenchmarkRSSPerInstance(b *testing.B) {
	if _, err := os.Stat("/proc/self/status"); err != nil {
		b.Skip("needs /proc")
	}
	const n = 32
	m := mustCompile(b, shared, goGuest(b, "echo"))
	ctx := context.Background()
	var perInstance float64
	for b.Loop() {
		settleHeap()
		before := readProcStatus(b)
		entered, release := make(chan struct{}), make(chan struct{})
		done := make(chan Result)
		for range n {
			go func() {
				done <- shared.Run(ctx, m, RunConfig{Dispatcher: parkedDispatcher{entered: entered, release: release}})
			}()
		}
		for range n {
			<-entered
		}
		during := readProcStatus(b)
		close(release)
		for range n {
			if res := <-done; res.Outcome != OutcomeSuccess {
				b.Fatal(res.Err)
			}
		}
		perInstance = float64(int64(during.rss)-int64(before.rss)) / n / (1 << 20)
	}
	b.ReportMetric(perInstance, "MiB/instance")
}

// startDispatcher records when the guest first asks for its input, then
// refuses it, so the agent stops at once: the time to that call is the
// attempt's start (instantiation, and for a command the Go runtime's
// start-up and package initializers).
type startDispatcher struct {
	nopDispatcher
	begin time.Time
	start time.Duration
}

func (d *startDispatcher) Input(context.Context) ([]byte, error) {
	d.start = time.Since(d.begin)
	return nil, abi.Errorf(abi.StatusInvalidArgument, "benchmark: stop here")
}

// BenchmarkAttemptStart: the time from Run to the agent's first host call,
// for examples/agents/docpipeline built as a command (runtime start-up in
// every attempt) and as a reactor (restored from the snapshot Compile took).
// ns/op is the whole attempt (it ends at that call); start-p50-µs is the
// start alone.
func BenchmarkAttemptStart(b *testing.B) {
	for _, c := range []struct {
		name  string
		flags []string
	}{{"command", nil}, {"reactor", []string{"-buildmode=c-shared"}}} {
		b.Run(c.name, func(b *testing.B) {
			m := mustCompile(b, shared, buildGo(b, "docpipeline."+c.name, "../examples/agents/docpipeline", c.flags...))
			ctx := context.Background()
			var starts []time.Duration
			for b.Loop() {
				d := &startDispatcher{begin: time.Now()}
				res := shared.Run(ctx, m, RunConfig{TaskID: "bench", Dispatcher: d})
				if res.Outcome != OutcomeGuestError || d.start == 0 {
					b.Fatalf("outcome %v (%v); input reached after %v", res.Outcome, res.Err, d.start)
				}
				starts = append(starts, d.start)
			}
			slices.Sort(starts)
			b.ReportMetric(float64(starts[len(starts)/2].Nanoseconds())/1e3, "start-p50-µs")
			b.ReportMetric(float64(starts[len(starts)*99/100].Nanoseconds())/1e3, "start-p99-µs")
		})
		// Four attempts at once per core, as a node's workers run them
		// (for a reactor, each finds a pooled memory).
		b.Run(c.name+"/par4", func(b *testing.B) {
			m := mustCompile(b, shared, buildGo(b, "docpipeline."+c.name, "../examples/agents/docpipeline", c.flags...))
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					d := &startDispatcher{begin: time.Now()}
					if res := shared.Run(context.Background(), m, RunConfig{TaskID: "bench", Dispatcher: d}); res.Outcome != OutcomeGuestError {
						b.Errorf("outcome %v (%v)", res.Outcome, res.Err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSixCalls runs the end-to-end harness's agent (six HTTP-shaped
// calls, JSON in and out) as a reactor against an instant in-memory tool:
// ns/op is what the sandbox and the guest cost per task, with no ledger,
// Raft or network.
func BenchmarkSixCalls(b *testing.B) {
	m := mustCompile(b, shared, buildGo(b, "sixcalls.reactor", "../chaos/testdata/sixcalls", "-buildmode=c-shared"))
	ok := map[string]ToolFunc{"http": func(context.Context, json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"status":200,"body":"ok"}`), nil
	}}
	in := []byte(`{"url":"http://127.0.0.1:1","job":"j-1"}`)
	for b.Loop() {
		res := shared.Run(context.Background(), m, RunConfig{TaskID: "bench", Dispatcher: NewMemDispatcher(in, ok)})
		if res.Outcome != OutcomeSuccess {
			b.Fatal(res.Outcome, res.Err)
		}
	}
}
