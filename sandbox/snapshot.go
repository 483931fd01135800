package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/sys"

	"github.com/orloj/orloj/abi"
)

// Pre-initialization (the Wizer technique, done inside the runtime).
//
// A reactor's initialization (for Go: the runtime's start-up and every
// package initializer, ~1 ms of guest CPU and a few MiB of memory written)
// runs once per agent version and argv/env, in an instance of its own. What
// it leaves behind is kept: the linear memory (its non-zero pages) and the
// mutable globals, plus what the guest wrote to stdout/stderr and how far it
// read the clocks and the random stream. Every attempt then instantiates the
// module afresh (no data segments: they are in the snapshot), grows its
// memory to the snapshot's size, copies the snapshot in, sets the globals and
// calls orloj_run. Attempts share nothing but the read-only snapshot.
//
// Initialization is isolated from any task: it runs before a task exists.
// Its orloj_v1 imports are refused (input, now, call... belong to an
// attempt), and a module whose initialization calls one is not snapshotted:
// each of its attempts initializes in its own instance, as a command would.
// WASI needs no such care because the sandbox makes it deterministic: the
// clocks are fake and continue in each attempt from the reading the
// snapshot stopped at; random_get during initialization reads a stream
// seeded from the module's digest, and an attempt's stream (seeded from its
// task) skips as many bytes; args and environ are part of the snapshot's
// key; stdio is the same empty stdin and captured stdout/stderr.

const (
	// preinitTimeout bounds one initialization. Go's takes milliseconds; a
	// module that takes longer is run without a snapshot, each attempt
	// initializing under its own deadline.
	preinitTimeout = 10 * time.Second
	// preinitMemoryLimit caps memory during initialization; a module that
	// needs more is run without a snapshot, under each attempt's limit.
	preinitMemoryLimit = DefaultMemoryLimit
	// maxSnapshotsPerModule bounds the snapshots one module keeps (one per
	// distinct argv/env; the host uses one). Beyond it, attempts with new
	// argv/env initialize in their own instance.
	maxSnapshotsPerModule = 8
)

// Why a reactor has no snapshot for some argv/env.
var (
	// errInitCallsHost: initialization called an orloj_v1 function.
	errInitCallsHost = errors.New("initialization called the orloj_v1 host, which only an attempt may do")
	// errInitFailed: initialization trapped or exited; it would in every
	// attempt too, so Compile refuses the module.
	errInitFailed = errors.New("initialization failed")
)

// snapshot is a reactor's initialized state. It is read-only once made and
// shared by every attempt that restores it.
type snapshot struct {
	size      uint64    // bytes of linear memory
	pages     []segment // the non-zero parts of memory, page-aligned
	globals   []uint64  // by reactorPlan.globals
	stdout    []byte
	stderr    []byte
	wallReads int64 // WASI clock readings made during initialization
	nanoReads int64
	randBytes int64 // bytes of random_get read during initialization
	// pool keeps finished attempts' memories reset to this snapshot
	// (Linux; nil elsewhere).
	pool *memoryPool
}

// restore brings a fresh instance of the rewritten module (zeroed memory of
// the declared minimum) to the snapshot's state.
//
// copyPages is false when the memory was handed out holding the snapshot
// already (from the pool).
func (s *snapshot) restore(mod api.Module, plan *reactorPlan, copyPages bool) error {
	mem := mod.Memory()
	if have := uint64(mem.Size()); have < s.size {
		if _, ok := mem.Grow(uint32((s.size - have) / pageSize)); !ok {
			return fmt.Errorf("sandbox: restore the initialized state: cannot grow memory to %s", formatBytes(s.size))
		}
	}
	buf, ok := mem.Read(0, uint32(s.size))
	if !ok {
		return fmt.Errorf("sandbox: restore the initialized state: memory is not %s", formatBytes(s.size))
	}
	if copyPages {
		for _, p := range s.pages {
			copy(buf[p.off:], p.data)
		}
	}
	for i, name := range plan.globals {
		g, ok := mod.ExportedGlobal(name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("sandbox: restore the initialized state: global %s is not exported", name)
		}
		g.Set(s.globals[i])
	}
	return nil
}

// nonZeroPages returns the runs of 4 KiB pages of mem that hold a non-zero
// byte, copied: fresh memory is zero, so only these need restoring.
func nonZeroPages(mem []byte) []segment {
	const page = 4 << 10
	var runs []segment
	for off := 0; off < len(mem); off += page {
		p := mem[off:min(off+page, len(mem))]
		if allZero(p) {
			continue
		}
		if n := len(runs); n > 0 && runs[n-1].end() == uint64(off) {
			runs[n-1].data = append(runs[n-1].data, p...)
			continue
		}
		runs = append(runs, segment{off: uint64(off), data: append([]byte(nil), p...)})
	}
	return runs
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// guestClock is the WASI clock pair a reactor's instances see: wazero's fake
// clocks (the wall clock starts at 2022-01-01 and each reading of either
// advances 1 ms), counting readings so that an attempt's clocks continue
// from where initialization stopped, exactly as if it had initialized
// itself. Only the instance's own goroutine reads it.
type guestClock struct{ wall, nano int64 }

const fakeEpochNanos = 1640995200000 * int64(time.Millisecond)

func (c *guestClock) walltime() (sec int64, nsec int32) {
	t := fakeEpochNanos + c.wall*int64(time.Millisecond)
	c.wall++
	return t / 1e9, int32(t % 1e9)
}

func (c *guestClock) nanotime() int64 {
	t := c.nano * int64(time.Millisecond)
	c.nano++
	return t
}

// withClock sets c as the instance's WASI clocks, with wazero's fake clock
// resolutions.
func withClock(mc wazero.ModuleConfig, c *guestClock) wazero.ModuleConfig {
	return mc.WithWalltime(c.walltime, sys.ClockResolution(time.Microsecond)).
		WithNanotime(c.nanotime, sys.ClockResolution(1))
}

// countingReader counts what random_get read.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// attemptRandSource is an attempt's random stream: the task's, past the
// bytes initialization read, so the guest's run reads what it would have had
// it initialized itself.
func attemptRandSource(taskID string, skip int64) io.Reader {
	src := newRandSource(taskID)
	if skip > 0 {
		_, _ = io.CopyN(io.Discard, src, skip) // a keystream cannot fail
	}
	return src
}

// initDispatcher refuses every orloj_v1 call made during initialization.
type initDispatcher struct{}

func (initDispatcher) Input(context.Context) ([]byte, error) { return nil, errInitCallsHost }
func (initDispatcher) Call(context.Context, abi.CallRequest) ([]byte, error) {
	return nil, errInitCallsHost
}
func (initDispatcher) Output(context.Context, []byte) error            { return errInitCallsHost }
func (initDispatcher) Log(context.Context, abi.LogLevel, []byte) error { return errInitCallsHost }
func (initDispatcher) Now(context.Context) (time.Time, error)          { return time.Time{}, errInitCallsHost }
func (initDispatcher) Emit(context.Context, abi.Effect) error          { return errInitCallsHost }

// snapshotKey identifies what initialization can read that differs between
// runs: argv and the environment (sorted "k=v"). Neither may hold NUL
// (RunConfig.Validate), so the encoding is unambiguous.
func snapshotKey(argv, environ []string) string {
	return strings.Join(argv, "\x00") + "\x00\x01" + strings.Join(environ, "\x00")
}

// snapshotEntry lets concurrent attempts wait for one initialization.
type snapshotEntry struct {
	done chan struct{}
	snap *snapshot // nil: attempts initialize in their own instance
	err  error     // why snap is nil
}

// snapshotFor returns m's snapshot for argv/env, taking it the first time.
// nil means attempts initialize themselves (the module cannot be
// snapshotted, the cap is reached, or ctx ended while waiting).
func (r *Runtime) snapshotFor(ctx context.Context, m *Module, argv, environ []string) (*snapshot, error) {
	if m.plan == nil {
		return nil, nil
	}
	key := snapshotKey(argv, environ)
	m.snapMu.Lock()
	e, ok := m.snapshots[key]
	if !ok {
		if len(m.snapshots) >= maxSnapshotsPerModule {
			m.snapMu.Unlock()
			return nil, nil
		}
		e = &snapshotEntry{done: make(chan struct{})}
		m.snapshots[key] = e
		m.snapMu.Unlock()
		e.snap, e.err = r.takeSnapshot(m, argv, environ)
		if e.err != nil && r.closing.Err() != nil {
			// Interrupted by Close, not the module's doing: forget it.
			m.snapMu.Lock()
			delete(m.snapshots, key)
			m.snapMu.Unlock()
		}
		close(e.done)
		return e.snap, e.err
	}
	m.snapMu.Unlock()
	select {
	case <-e.done:
		return e.snap, e.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// takeSnapshot initializes a fresh instance of m with argv/env and records
// its state. A trap or exit wraps errInitFailed; an orloj_v1 call,
// exceeding preinitTimeout or preinitMemoryLimit, and the like return other
// errors, for which attempts initialize themselves.
func (r *Runtime) takeSnapshot(m *Module, argv, environ []string) (_ *snapshot, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("sandbox: host panic during initialization: %v", p)
		}
	}()
	ctx, cancel := context.WithTimeout(r.closing, preinitTimeout)
	defer cancel()
	stats := &memoryStats{limit: preinitMemoryLimit}
	a := &attempt{d: initDispatcher{}}
	callCtx := ctx
	if !r.opts.wazeroMemory {
		callCtx = experimental.WithMemoryAllocator(callCtx, limitAllocator{stats: stats})
	}
	callCtx = context.WithValue(callCtx, attemptKey{}, a)

	stdout, stderr := newCapture(DefaultOutputCap), newCapture(DefaultOutputCap)
	clock := &guestClock{}
	random := &countingReader{r: newRandSource("orloj-preinit:" + m.digest)}
	mc := withClock(moduleConfig(argv, environ, stdout, stderr), clock).WithRandSource(random).WithStartFunctions()

	mod, err := r.rt.InstantiateModule(callCtx, m.compiled, mc)
	if err == nil {
		defer mod.Close(context.Background())
		err = initialize(callCtx, mod, m.plan)
	}
	if err != nil {
		res := classify(runState{err: err, runCtx: ctx, fault: a.fault, memory: stats,
			limit: preinitMemoryLimit, timeout: preinitTimeout})
		switch {
		case res.Outcome == OutcomeHostFault && errors.Is(res.Err, errInitCallsHost):
			return nil, errInitCallsHost
		case res.Outcome == OutcomeTrap, res.Outcome == OutcomeGuestError:
			msg := firstLine(res.Err.Error())
			if out := strings.TrimSpace(string(stderr.Bytes())); out != "" {
				// A Go panic's first line is its message.
				msg += "; stderr: " + cutUTF8(firstLine(out), 512)
			}
			return nil, fmt.Errorf("%w: %s", errInitFailed, msg)
		case res.Outcome == OutcomeSuccess:
			// proc_exit(0) during initialization: nothing is left to run.
			return nil, errors.New("initialization exited")
		}
		return nil, fmt.Errorf("initialization: %s: %w", res.Outcome, res.Err)
	}
	if stats.err != nil {
		return nil, stats.err
	}
	mem := mod.Memory()
	buf, _ := mem.Read(0, mem.Size())
	s := &snapshot{
		size:      uint64(len(buf)),
		pages:     nonZeroPages(buf),
		globals:   make([]uint64, len(m.plan.globals)),
		stdout:    stdout.Bytes(),
		stderr:    stderr.Bytes(),
		wallReads: clock.wall,
		nanoReads: clock.nano,
		randBytes: random.n,
	}
	s.pool = newMemoryPool(s)
	for i, name := range m.plan.globals {
		g := mod.ExportedGlobal(name)
		if g == nil {
			return nil, fmt.Errorf("sandbox: global %s is not exported", name)
		}
		s.globals[i] = g.Get()
	}
	return s, nil
}

// drainPools releases the memories kept for m's attempts.
func (m *Module) drainPools() {
	m.snapMu.Lock()
	defer m.snapMu.Unlock()
	for _, e := range m.snapshots {
		select {
		case <-e.done:
			if e.snap != nil {
				e.snap.pool.drain()
			}
		default:
		}
	}
}
