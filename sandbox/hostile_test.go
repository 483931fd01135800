package sandbox

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

// Hostile guests: each runs a real module and checks the classified outcome,
// that the host is unharmed, and that goroutines return to their baseline.

func TestTightLoopStopsAtDeadline(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "loop"))
	const timeout = 200 * time.Millisecond
	res := runGuest(t, m, RunConfig{Timeout: timeout})
	wantOutcome(t, res, OutcomeDeadline)
	if !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Errorf("err %v does not wrap context.DeadlineExceeded", res.Err)
	}
	// The deadline clock starts before instantiation, Duration a little
	// after, so Duration may fall just short of the timeout.
	if lo, hi := timeout-50*time.Millisecond, timeout+100*time.Millisecond; res.Duration < lo || res.Duration > hi {
		t.Errorf("duration %v, want within [%v, %v]", res.Duration, lo, hi)
	}
	wantContains(t, "err", res.Err.Error(), "deadline exceeded")
}

func TestDeepRecursionStops(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "recursion"))
	// wazero grows the guest's call stack on the host (allocate and copy,
	// doubling, up to 400 MB) and cannot be interrupted while it copies,
	// so a deadline can land late by one copy: ~250 ms in a cold process
	// here, several times that under the race detector. The timeout leaves
	// room for the trap; the bound below still holds the deadline to 100 ms.
	timeout := 2 * time.Second
	if raceEnabled {
		timeout = 10 * time.Second
	}
	res := runGuest(t, m, RunConfig{Timeout: timeout})
	switch res.Outcome {
	case OutcomeTrap:
		wantContains(t, "err", res.Err.Error(), "stack overflow")
	case OutcomeDeadline:
	default:
		wantOutcome(t, res, OutcomeTrap)
	}
	if res.Duration > timeout+100*time.Millisecond {
		t.Errorf("duration %v, want at most %v", res.Duration, timeout+100*time.Millisecond)
	}
	t.Logf("%v after %v", res.Outcome, res.Duration)
}

func TestCanceledContextInterruptsLoop(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "loop"))
	base := goroutineBaseline()
	ctx, cancel := context.WithCancel(context.Background())
	// Whenever the cancel lands (before _start or inside the loop) the
	// outcome must be the same.
	timer := time.AfterFunc(20*time.Millisecond, cancel)
	defer timer.Stop()
	begin := time.Now()
	res := shared.Run(ctx, m, RunConfig{Timeout: 10 * time.Second, Dispatcher: NewMemDispatcher(nil, nil)})
	awaitGoroutines(t, base)
	wantOutcome(t, res, OutcomeCanceled)
	if !errors.Is(res.Err, context.Canceled) {
		t.Errorf("err %v does not wrap context.Canceled", res.Err)
	}
	if took := time.Since(begin); took > time.Second {
		t.Errorf("cancel took %v to stop the loop", took)
	}

	// Already canceled: stopped before the first instruction.
	res = shared.Run(ctx, m, RunConfig{Dispatcher: NewMemDispatcher(nil, nil)})
	wantOutcome(t, res, OutcomeCanceled)
}

func TestUnreachableTraps(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "unreachable"))
	res := runGuest(t, m, RunConfig{})
	wantOutcome(t, res, OutcomeTrap)
	msg := res.Err.Error()
	if first := firstLine(msg); first != "sandbox: guest trapped: wasm error: unreachable" {
		t.Errorf("first line %q", first)
	}
	wantContains(t, "err", msg, "wasm stack trace")
	var trap *TrapError
	if !errors.As(res.Err, &trap) {
		t.Errorf("err %T is not a *TrapError", res.Err)
	}
}

func TestProcExitCode(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "exit3"))
	res := runGuest(t, m, RunConfig{})
	wantOutcome(t, res, OutcomeGuestError)
	if res.ExitCode != 3 {
		t.Errorf("exit code %d, want 3", res.ExitCode)
	}
	wantContains(t, "err", res.Err.Error(), "exited with code 3")
}

// A guest may pass wazero's own "deadline exceeded" exit code to proc_exit;
// only a context that really ended makes a deadline.
func TestSpoofedDeadlineExitIsGuestError(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "spoof_deadline"))
	res := runGuest(t, m, RunConfig{})
	wantOutcome(t, res, OutcomeGuestError)
	if res.ExitCode != 0xefffffff {
		t.Errorf("exit code %#x", res.ExitCode)
	}
}

func TestGrowBeyondLimit(t *testing.T) {
	const limit = 8 << 20
	t.Run("trap after refused grow", func(t *testing.T) {
		m := mustCompile(t, shared, watGuest(t, "grow_bomb"))
		res := runGuest(t, m, RunConfig{MemoryLimit: limit})
		wantOutcome(t, res, OutcomeMemoryLimit)
		if !errors.Is(res.Err, ErrMemoryLimit) {
			t.Errorf("err %v does not wrap ErrMemoryLimit", res.Err)
		}
		wantContains(t, "err", res.Err.Error(), "memory limit reached", "limit 8 MiB")
	})
	t.Run("guest copes with refused grow", func(t *testing.T) {
		m := mustCompile(t, shared, watGuest(t, "grow_handled"))
		wantOutcome(t, runGuest(t, m, RunConfig{MemoryLimit: limit}), OutcomeSuccess)
	})
	t.Run("initial memory over limit", func(t *testing.T) {
		m := mustCompile(t, shared, watGuest(t, "big_min_memory"))
		if m.MinMemory() != 32<<20 {
			t.Fatalf("MinMemory %d", m.MinMemory())
		}
		res := runGuest(t, m, RunConfig{MemoryLimit: limit})
		wantOutcome(t, res, OutcomeMemoryLimit)
		wantContains(t, "err", res.Err.Error(), "declares 32 MiB of initial memory, limit 8 MiB")
		wantOutcome(t, runGuest(t, m, RunConfig{MemoryLimit: 32 << 20}), OutcomeSuccess)
	})
}

// TestMemoryBomb runs a Go guest that allocates until the host refuses to
// grow its memory. It must end as a memory limit, and the host's RSS must
// not grow by more than the cap plus 32 MiB.
func TestMemoryBomb(t *testing.T) {
	const limit = 64 << 20
	m := mustCompile(t, shared, goGuest(t, "memorybomb"))
	settleHeap()
	before := readProcStatus(t)
	resetPeakRSS(t)
	res := runGuest(t, m, RunConfig{MemoryLimit: limit, Timeout: 20 * time.Second})
	after := readProcStatus(t)
	wantOutcome(t, res, OutcomeMemoryLimit)
	if res.ExitCode != 2 {
		t.Errorf("exit code %d, want the Go runtime's 2", res.ExitCode)
	}
	wantContains(t, "stderr", string(res.Stderr), "out of memory")
	wantContains(t, "stdout", string(res.Stdout), "allocated MiB: 49")
	if res.PeakMemory > limit || res.PeakMemory < limit-8<<20 {
		t.Errorf("peak memory %d MiB, want just under the %d MiB cap", res.PeakMemory>>20, limit>>20)
	}
	growth := int64(after.hwm) - int64(before.rss)
	t.Logf("VmRSS before %d MiB, VmHWM after %d MiB: growth %d MiB for a %d MiB cap (%v)",
		before.rss>>20, after.hwm>>20, growth>>20, limit>>20, res.Duration)
	if raceEnabled {
		// The race detector shadows every heap byte and skews RSS; the
		// outcome above is still checked.
		t.Skip("RSS bound not checked under -race")
	}
	if !after.peakReset {
		t.Log("could not reset VmHWM (no /proc/self/clear_refs); bound is against the process peak")
	}
	if growth > limit+32<<20 {
		t.Errorf("host RSS grew %d MiB, bound %d MiB", growth>>20, (limit+32<<20)>>20)
	}
}

// countingDispatcher wraps a MemDispatcher and counts every method call, so
// tests can prove a call never reached the dispatcher.
type countingDispatcher struct {
	*MemDispatcher
	inputs, calls, outputs, logs, nows, emits atomic.Int32
}

func (c *countingDispatcher) Input(ctx context.Context) ([]byte, error) {
	c.inputs.Add(1)
	return c.MemDispatcher.Input(ctx)
}
func (c *countingDispatcher) Call(ctx context.Context, req abi.CallRequest) ([]byte, error) {
	c.calls.Add(1)
	return c.MemDispatcher.Call(ctx, req)
}
func (c *countingDispatcher) Output(ctx context.Context, b []byte) error {
	c.outputs.Add(1)
	return c.MemDispatcher.Output(ctx, b)
}
func (c *countingDispatcher) Log(ctx context.Context, l abi.LogLevel, b []byte) error {
	c.logs.Add(1)
	return c.MemDispatcher.Log(ctx, l, b)
}
func (c *countingDispatcher) Now(ctx context.Context) (time.Time, error) {
	c.nows.Add(1)
	return c.MemDispatcher.Now(ctx)
}
func (c *countingDispatcher) Emit(ctx context.Context, e abi.Effect) error {
	c.emits.Add(1)
	return c.MemDispatcher.Emit(ctx, e)
}

// TestOutOfBoundsPointers calls every host function with out-of-bounds and
// overflowing (ptr, len) pairs (see testdata/faults.wat). Each must return
// StatusFault to the guest, which reports the statuses as its output, and
// none may reach the dispatcher.
func TestOutOfBoundsPointers(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "faults"))
	tool := func(context.Context, json.RawMessage) (json.RawMessage, error) {
		t.Error("tool invoked by a faulted call")
		return nil, nil
	}
	d := &countingDispatcher{MemDispatcher: NewMemDispatcher([]byte(`{}`), map[string]ToolFunc{"t": tool})}
	res := runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	out := d.TaskOutput()
	if len(out) != 34 {
		t.Fatalf("output %d bytes, want 34: %q", len(out), out)
	}
	for i, st := range out[:31] {
		if abi.Status(st) != abi.StatusFault {
			t.Errorf("probe %d: status %v, want fault", i, abi.Status(st))
		}
	}
	for i, want := range map[int]abi.Status{31: abi.StatusOK, 32: abi.StatusOK, 33: abi.StatusNotFound} {
		if got := abi.Status(out[i]); got != want {
			t.Errorf("probe %d: status %v, want %v", i, got, want)
		}
	}
	if n := d.inputs.Load() + d.calls.Load() + d.emits.Load(); n != 0 {
		t.Errorf("faulted calls reached the dispatcher: %d input, %d call, %d emit", d.inputs.Load(), d.calls.Load(), d.emits.Load())
	}
	// Only the valid edge probes and the final output got through.
	if d.nows.Load() != 1 || d.logs.Load() != 1 || d.outputs.Load() != 1 {
		t.Errorf("now %d, log %d, output %d; want 1 each", d.nows.Load(), d.logs.Load(), d.outputs.Load())
	}
}

// TestOverLimitRequests: requests over the abi limits are refused with
// InvalidArgument without being read (testdata/limits.wat).
func TestOverLimitRequests(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "limits"))
	d := &countingDispatcher{MemDispatcher: NewMemDispatcher(nil, nil)}
	res := runGuest(t, m, RunConfig{Dispatcher: d})
	wantOutcome(t, res, OutcomeSuccess)
	out := d.TaskOutput()
	if len(out) < 16 {
		t.Fatalf("output %q", out)
	}
	want := []abi.Status{abi.StatusInvalidArgument, abi.StatusInvalidArgument, abi.StatusInvalidArgument, abi.StatusOK, abi.StatusInvalidArgument}
	for i, w := range want {
		if got := abi.Status(out[i]); got != w {
			t.Errorf("probe %d: status %v, want %v", i, got, w)
		}
	}
	var body abi.ErrorBody
	if err := json.Unmarshal(out[16:], &body); err != nil {
		t.Fatalf("error body %q: %v", out[16:], err)
	}
	if body.Status != "invalid_argument" || !strings.Contains(body.Message, "limit 1048576") {
		t.Errorf("error body %+v", body)
	}
	if d.calls.Load() != 0 || d.emits.Load() != 0 {
		t.Errorf("over-limit requests reached the dispatcher")
	}
	logs := d.Logs()
	if len(logs) != 1 || len(logs[0].Line) != abi.MaxLogBytes || logs[0].Level != abi.LogInfo {
		t.Errorf("logs: %d lines, first %d bytes; want one line cut to %d", len(logs), len(logs[0].Line), abi.MaxLogBytes)
	}
}

func TestCompileRefuses(t *testing.T) {
	tests := []struct {
		name  string
		wasm  []byte
		wants []string
	}{
		{"evil import", watGuest(t, "evil_import"), []string{"module imports evil.steal, which Orloj does not provide"}},
		{"unknown host function", watGuest(t, "unknown_host"), []string{"module imports orloj_v1.teleport, which Orloj does not provide"}},
		{"wrong signature", watGuest(t, "bad_signature"), []string{"module imports orloj_v1.now as (i64) -> (i32); Orloj provides (i32) -> (i32)"}},
		{"unknown WASI function", watGuest(t, "wasi_unknown"), []string{"module imports wasi_snapshot_preview1.sock_connect, which Orloj does not provide"}},
		{"imported memory", watGuest(t, "import_memory"), []string{"module imports memory orloj_v1.memory, which Orloj does not provide"}},
		{"no _start", watGuest(t, "no_start"), []string{"does not export function _start"}},
		{"no memory export", watGuest(t, "no_memory"), []string{`does not export its memory as "memory"`}},
		{"malformed", watGuest(t, "malformed"), []string{"module does not compile"}},
		{"tail call", watGuest(t, "tail_call"), []string{"return_call invalid as its feature is not accepted", "the sandbox accepts WebAssembly 1.0"}},
		{"not wasm", []byte("#!/bin/sh\nrm -rf /\n"), []string{"not a WebAssembly binary"}},
		{"empty", nil, []string{"not a WebAssembly binary"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := shared.Compile(context.Background(), tt.wasm)
			if err == nil {
				t.Fatalf("Compile accepted it (digest %s)", m.Digest())
			}
			if !errors.Is(err, ErrInvalidModule) {
				t.Errorf("err %v does not wrap ErrInvalidModule", err)
			}
			wantContains(t, "err", err.Error(), tt.wants...)
		})
	}
	t.Run("too large", func(t *testing.T) {
		r, err := New(context.Background(), Config{MaxModuleBytes: 40})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(context.Background())
		_, err = r.Compile(context.Background(), watGuest(t, "exit3"))
		if !errors.Is(err, ErrInvalidModule) {
			t.Fatalf("err %v", err)
		}
		wantContains(t, "err", err.Error(), "module is 96 bytes, limit 40")
	})
}

func TestGuestCannotOpenFiles(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "probe"))
	res := runGuest(t, m, RunConfig{Args: []string{"open"}})
	wantOutcome(t, res, OutcomeGuestError)
	wantContains(t, "stderr", string(res.Stderr), "open failed: open /etc/passwd: Bad file number")
}

func TestGuestCannotDial(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "probe"))
	res := runGuest(t, m, RunConfig{Args: []string{"dial"}})
	wantOutcome(t, res, OutcomeGuestError)
	wantContains(t, "stderr", string(res.Stderr), "dial failed: dial tcp 127.0.0.1:80:", "connect: Connection refused")
}

func TestGuestSeesOnlyDeclaredArgsAndEnv(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "probe"))
	t.Setenv("ORLOJ_HOST_SECRET", "s3cret") // must not leak into the guest
	res := runGuest(t, m, RunConfig{Name: "pipeline", Args: []string{"env"}, Env: map[string]string{"B": "2", "A": "1"}})
	wantOutcome(t, res, OutcomeSuccess)
	if got, want := string(res.Stdout), "args=pipeline,env\nenv=A=1\nenv=B=2\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	res = runGuest(t, m, RunConfig{Args: []string{"env"}})
	if got, want := string(res.Stdout), "args=agent,env\n"; got != want {
		t.Errorf("default argv[0]: stdout %q, want %q", got, want)
	}
}

func TestRandomIsSeededByTask(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "probe"))
	rnd := func(task string) string {
		res := runGuest(t, m, RunConfig{TaskID: task, Args: []string{"rand"}})
		wantOutcome(t, res, OutcomeSuccess)
		return string(res.Stdout)
	}
	a1, a2, b := rnd("task-a"), rnd("task-a"), rnd("task-b")
	if a1 != a2 {
		t.Errorf("same task, different random bytes: %q vs %q", a1, a2)
	}
	if a1 == b {
		t.Errorf("different tasks, same random bytes: %q", a1)
	}
}

// The guest sees wazero's fake clocks: the wall clock starts at 2022-01-01,
// and sleeping returns at once while the Go runtime still sees time pass.
func TestGuestClockIsFake(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "probe"))
	res := runGuest(t, m, RunConfig{Args: []string{"time"}})
	wantOutcome(t, res, OutcomeSuccess)
	if got, want := string(res.Stdout), "1640995200000000000 true\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if res.Duration > time.Second {
		t.Errorf("a 50ms guest sleep took %v of wall time", res.Duration)
	}
}

func TestStdoutIsBounded(t *testing.T) {
	m := mustCompile(t, shared, goGuest(t, "probe"))
	res := runGuest(t, m, RunConfig{Args: []string{"stdout", "3000000"}, OutputCap: 1000})
	wantOutcome(t, res, OutcomeSuccess)
	want := strings.Repeat("x", 500) + "\n[... 2999000 bytes truncated ...]\n" + strings.Repeat("x", 500)
	if string(res.Stdout) != want {
		t.Errorf("stdout %d bytes: %q", len(res.Stdout), clip(res.Stdout))
	}
}

// faultyDispatcher fails in the ways a Dispatcher can: plain errors (host
// faults), panics, statuses it may not return, and blocking until the
// attempt's context ends.
type faultyDispatcher struct {
	*countingDispatcher
	nowErr   error
	nowPanic any
	block    chan struct{} // Input closes it when entered, then waits for ctx
}

func (f *faultyDispatcher) Now(ctx context.Context) (time.Time, error) {
	f.nows.Add(1)
	if f.nowPanic != nil {
		panic(f.nowPanic)
	}
	return time.Unix(0, 42), f.nowErr
}

func (f *faultyDispatcher) Input(ctx context.Context) ([]byte, error) {
	if f.block != nil {
		close(f.block)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return f.countingDispatcher.Input(ctx)
}

// hostloopInput asks testdata/hostloop.wat for n calls in mode (0 now, 1 log,
// 2 call).
func hostloopInput(n, mode uint32) []byte {
	b := make([]byte, 8)
	binary.LittleEndian.PutUint32(b, n)
	binary.LittleEndian.PutUint32(b[4:], mode)
	return b
}

func newFaulty(input []byte) *faultyDispatcher {
	return &faultyDispatcher{countingDispatcher: &countingDispatcher{MemDispatcher: NewMemDispatcher(input, nil)}}
}

func TestDispatcherErrors(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "hostloop"))
	t.Run("error without status is a host fault", func(t *testing.T) {
		d := newFaulty(hostloopInput(5, 0))
		d.nowErr = errors.New("ledger unavailable")
		res := runGuest(t, m, RunConfig{Dispatcher: d})
		wantOutcome(t, res, OutcomeHostFault)
		if !errors.Is(res.Err, d.nowErr) {
			t.Errorf("err %v does not wrap the dispatcher's error", res.Err)
		}
		if first := firstLine(res.Err.Error()); first != "sandbox: host fault in orloj_v1.now: ledger unavailable" {
			t.Errorf("first line %q", first)
		}
		if n := d.nows.Load(); n != 1 {
			t.Errorf("guest went on after the fault: now called %d times", n)
		}
	})
	t.Run("panic is a host fault", func(t *testing.T) {
		d := newFaulty(hostloopInput(5, 0))
		d.nowPanic = "boom"
		res := runGuest(t, m, RunConfig{Dispatcher: d})
		wantOutcome(t, res, OutcomeHostFault)
		wantContains(t, "err", res.Err.Error(), "host fault in orloj_v1.now: panic: boom")
		// The message becomes the task's error, which the API shows: the
		// stack goes to the node's log through HostStack instead.
		if msg := res.Err.Error(); msg != "sandbox: host fault in orloj_v1.now: panic: boom" {
			t.Errorf("err carries more than the panic: %q", msg)
		}
		if !strings.Contains(string(res.HostStack), "goroutine ") || !strings.Contains(string(res.HostStack), ".go:") {
			t.Errorf("HostStack is not a stack: %q", res.HostStack)
		}
	})
	t.Run("runtime error panic is a host fault", func(t *testing.T) {
		d := newFaulty(hostloopInput(5, 0))
		var nilMap map[string]int
		d.nowPanic = func() (p any) {
			defer func() { p = recover() }()
			nilMap["x"] = 1
			return nil
		}()
		res := runGuest(t, m, RunConfig{Dispatcher: d})
		wantOutcome(t, res, OutcomeHostFault)
		if msg := res.Err.Error(); strings.Contains(msg, "\n") || strings.Contains(msg, ".go:") || len(res.HostStack) == 0 {
			t.Errorf("err %q carries a stack, or HostStack is empty (%d bytes)", msg, len(res.HostStack))
		}
		var rtErr runtime.Error
		if !errors.As(d.nowPanic.(error), &rtErr) {
			t.Fatalf("test setup: %v", d.nowPanic)
		}
	})
	t.Run("sandbox-only status is a host fault", func(t *testing.T) {
		for _, st := range []abi.Status{abi.StatusBufferTooSmall, abi.StatusFault, abi.Status(99)} {
			d := newFaulty(hostloopInput(5, 0))
			d.nowErr = st
			res := runGuest(t, m, RunConfig{Dispatcher: d})
			wantOutcome(t, res, OutcomeHostFault)
			wantContains(t, "err", res.Err.Error(), "which only the sandbox may return")
		}
	})
	t.Run("status reaches the guest", func(t *testing.T) {
		d := newFaulty(hostloopInput(5, 0))
		d.nowErr = abi.Errorf(abi.StatusBudgetExceeded, "no more calls")
		res := runGuest(t, m, RunConfig{Dispatcher: d})
		wantOutcome(t, res, OutcomeGuestError)
		if want := uint32(100 + abi.StatusBudgetExceeded); res.ExitCode != want {
			t.Errorf("exit code %d, want %d", res.ExitCode, want)
		}
	})
	t.Run("deadline while blocked in the dispatcher", func(t *testing.T) {
		d := newFaulty(nil)
		d.block = make(chan struct{})
		res := runGuest(t, m, RunConfig{Dispatcher: d, Timeout: 100 * time.Millisecond})
		wantOutcome(t, res, OutcomeDeadline)
	})
}

func TestCloseInterruptsRuns(t *testing.T) {
	ctx := context.Background()
	r, err := New(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := mustCompile(t, r, watGuest(t, "hostloop"))
	d := newFaulty(nil)
	d.block = make(chan struct{})
	done := make(chan Result)
	go func() { done <- r.Run(ctx, m, RunConfig{Dispatcher: d, Timeout: time.Minute}) }()
	<-d.block // the guest is inside a host call
	if err := r.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	res := <-done
	wantOutcome(t, res, OutcomeCanceled)
	if !errors.Is(res.Err, ErrClosed) {
		t.Errorf("err %v does not wrap ErrClosed", res.Err)
	}
	if _, err := r.Compile(ctx, watGuest(t, "empty")); !errors.Is(err, ErrClosed) {
		t.Errorf("Compile after Close: %v", err)
	}
	if res := r.Run(ctx, m, RunConfig{Dispatcher: d}); res.Outcome != OutcomeCanceled || !errors.Is(res.Err, ErrClosed) {
		t.Errorf("Run after Close: %v %v", res.Outcome, res.Err)
	}
	if err := r.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	m := mustCompile(t, shared, watGuest(t, "empty"))
	if res := shared.Run(context.Background(), nil, RunConfig{Dispatcher: NewMemDispatcher(nil, nil)}); res.Outcome != OutcomeInvalidModule {
		t.Errorf("nil module: %v", res.Outcome)
	}
	if res := shared.Run(context.Background(), m, RunConfig{}); res.Outcome != OutcomeHostFault || !strings.Contains(res.Err.Error(), "RunConfig.Dispatcher") {
		t.Errorf("nil dispatcher: %v %v", res.Outcome, res.Err)
	}
	other, err := New(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(context.Background())
	if res := other.Run(context.Background(), m, RunConfig{Dispatcher: NewMemDispatcher(nil, nil)}); res.Outcome != OutcomeInvalidModule {
		t.Errorf("module from another runtime: %v", res.Outcome)
	}
}

func TestCompileOncePerDigest(t *testing.T) {
	wasm := watGuest(t, "empty")
	m1 := mustCompile(t, shared, wasm)
	m2 := mustCompile(t, shared, bytes.Clone(wasm))
	if m1 != m2 {
		t.Error("same bytes compiled twice")
	}
	if m1.Digest() != "" && len(m1.Digest()) != 64 {
		t.Errorf("digest %q", m1.Digest())
	}
}
