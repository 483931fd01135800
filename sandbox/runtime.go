package sandbox

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/orloj/orloj/abi"
)

// Runtime is the process's wazero runtime: compile cache, the two host
// modules (orloj_v1 and WASI, instantiated once), and the attempts in flight.
// Create one per process with New; it is safe for concurrent use.
type Runtime struct {
	cfg       Config
	opts      runtimeOptions
	rt        wazero.Runtime
	cache     wazero.CompilationCache // nil without Config.CacheDir
	providers map[string]map[string]api.FunctionDefinition

	// closing is canceled by Close; every Run's context follows it, so
	// Close interrupts attempts in flight.
	closing  context.Context
	stopAll  context.CancelFunc
	mu       sync.Mutex
	modules  map[string]*compileEntry // by digest
	closed   bool                     // no new Compile or Run
	released bool                     // wazero runtime closed
	active   int                      // Runs in flight
	idle     chan struct{}            // closed when active drops to 0 after Close
}

// runtimeOptions are knobs for tests and benchmarks only.
type runtimeOptions struct {
	// wazeroMemory uses wazero's default linear memory (a Go slice grown by
	// copying) capped by memoryLimitPages for every run, instead of the
	// per-attempt mmap allocator; tests measure both.
	wazeroMemory     bool
	memoryLimitPages uint32
}

// New creates the Runtime: the compiler engine (the interpreter where the
// platform has no compiler) with WithCloseOnContextDone, so a deadline
// interrupts even a guest that never calls out; the compilation cache; and the
// orloj_v1 and wasi_snapshot_preview1 host modules.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	return newRuntime(ctx, cfg, runtimeOptions{})
}

func newRuntime(ctx context.Context, cfg Config, opts runtimeOptions) (_ *Runtime, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	rcfg := wazero.NewRuntimeConfig().
		WithCloseOnContextDone(true).
		// Without reference types there is no table.grow, so a guest's
		// tables stay at their initial size, which scanModule caps: table
		// entries live in host memory, outside the guest's memory limit.
		// Go guests do not use reference types.
		WithCoreFeatures(api.CoreFeaturesV2 &^ api.CoreFeatureReferenceTypes).
		// DWARF would only improve stack traces (Go guests carry none), at
		// the price of parsing attacker-supplied debug sections.
		WithDebugInfoEnabled(false)
	if opts.memoryLimitPages > 0 {
		rcfg = rcfg.WithMemoryLimitPages(opts.memoryLimitPages)
	}
	r := &Runtime{cfg: cfg, opts: opts, modules: make(map[string]*compileEntry)}
	if cfg.CacheDir != "" {
		if r.cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("sandbox: open compilation cache in Config.CacheDir %q: %w", cfg.CacheDir, err)
		}
		rcfg = rcfg.WithCompilationCache(r.cache)
	}
	r.rt = wazero.NewRuntimeWithConfig(ctx, rcfg)
	defer func() {
		if err != nil {
			_ = r.rt.Close(ctx)
			if r.cache != nil {
				_ = r.cache.Close(ctx)
			}
		}
	}()

	wasi, err := wasi_snapshot_preview1.NewBuilder(r.rt).Compile(ctx)
	if err != nil {
		return nil, fmt.Errorf("sandbox: compile %s: %w", abi.WASIModuleName, err)
	}
	if _, err := r.rt.InstantiateModule(ctx, wasi, wazero.NewModuleConfig()); err != nil {
		return nil, fmt.Errorf("sandbox: instantiate %s: %w", abi.WASIModuleName, err)
	}
	orloj, err := hostModule(r.rt).Compile(ctx)
	if err != nil {
		return nil, fmt.Errorf("sandbox: compile %s: %w", abi.ModuleName, err)
	}
	if _, err := r.rt.InstantiateModule(ctx, orloj, wazero.NewModuleConfig()); err != nil {
		return nil, fmt.Errorf("sandbox: instantiate %s: %w", abi.ModuleName, err)
	}
	tool, err := toolHostModule(r.rt).Compile(ctx)
	if err != nil {
		return nil, fmt.Errorf("sandbox: compile %s: %w", abi.ToolModuleName, err)
	}
	if _, err := r.rt.InstantiateModule(ctx, tool, wazero.NewModuleConfig()); err != nil {
		return nil, fmt.Errorf("sandbox: instantiate %s: %w", abi.ToolModuleName, err)
	}
	r.providers = map[string]map[string]api.FunctionDefinition{
		abi.ModuleName:     orloj.ExportedFunctions(),
		abi.ToolModuleName: tool.ExportedFunctions(),
		abi.WASIModuleName: wasi.ExportedFunctions(),
	}
	r.closing, r.stopAll = context.WithCancel(context.Background())
	return r, nil
}

// Close interrupts every attempt in flight (their Results say
// OutcomeCanceled), waits for them to unwind, then releases compiled code and
// the runtime. Guest memory is unmapped when an instance closes, so releasing
// while a guest still runs would pull memory from under it: Close waits, and
// if ctx ends first it returns an error and leaves the runtime open; call
// Close again to finish. Closing twice is fine.
func (r *Runtime) Close(ctx context.Context) error {
	r.mu.Lock()
	r.closed = true
	if r.idle == nil {
		r.idle = make(chan struct{})
		if r.active == 0 {
			close(r.idle)
		}
	}
	idle := r.idle
	r.mu.Unlock()
	r.stopAll()

	select {
	case <-idle:
	case <-ctx.Done():
		r.mu.Lock()
		n := r.active
		r.mu.Unlock()
		return fmt.Errorf("sandbox: close: %d attempts still running: %w", n, ctx.Err())
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.released {
		return nil
	}
	r.released = true
	for _, e := range r.modules {
		if e.mod != nil {
			e.mod.drainPools()
		}
	}
	err := r.rt.Close(ctx) // also closes every compiled module
	if r.cache != nil {
		err = errors.Join(err, r.cache.Close(ctx))
	}
	if err != nil {
		return fmt.Errorf("sandbox: close: %w", err)
	}
	return nil
}

// enter registers a Run, unless the Runtime is closing.
func (r *Runtime) enter() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.active++
	return true
}

func (r *Runtime) exit() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	if r.active == 0 && r.idle != nil {
		close(r.idle)
	}
}

// Run executes one attempt of m in a fresh instance and reports how it ended.
// It never panics: a panic of host code becomes OutcomeHostFault.
//
// The instance gets: argv = [name, rc.Args...]; exactly rc.Env; an empty
// stdin; stdout and stderr captured up to rc.OutputCap each; no preopened
// directories and no sockets; random bytes from sha256(rc.TaskID); wazero's
// fake clocks; linear memory capped at rc.MemoryLimit; and rc.Timeout, after
// which wazero closes the instance wherever it is. Cancelling ctx (e.g. the
// lease was lost) interrupts it the same way.
func (r *Runtime) Run(ctx context.Context, m *Module, rc RunConfig) (res Result) {
	begin := time.Now()
	defer func() {
		if p := recover(); p != nil {
			res = Result{
				Outcome:  OutcomeHostFault,
				Err:      fmt.Errorf("sandbox: host panic: %v\n%s", p, debug.Stack()),
				Duration: time.Since(begin),
			}
		}
	}()
	switch {
	case m == nil:
		return Result{Outcome: OutcomeInvalidModule, Err: fmt.Errorf("%w: nil *Module", ErrInvalidModule)}
	case m.rt != r:
		return Result{Outcome: OutcomeInvalidModule, Err: fmt.Errorf("%w: module %s was compiled by another Runtime", ErrInvalidModule, m.digest[:12])}
	}
	if err := rc.Validate(); err != nil {
		return Result{Outcome: OutcomeHostFault, Err: err}
	}
	rc = rc.withDefaults()
	if !r.enter() {
		return Result{Outcome: OutcomeCanceled, Err: ErrClosed}
	}
	defer r.exit()

	if m.minMemory > rc.MemoryLimit {
		// wazero would fail allocating the initial memory; refuse first.
		return Result{Outcome: OutcomeMemoryLimit, Err: fmt.Errorf(
			"sandbox: memory limit reached: the module declares %s of initial memory, limit %s: %w",
			formatBytes(m.minMemory), formatBytes(rc.MemoryLimit), ErrMemoryLimit)}
	}

	// Close and the caller's context both end the attempt; Close's cause
	// says why.
	closeCtx, cancelClose := context.WithCancelCause(ctx)
	defer cancelClose(nil)
	stop := context.AfterFunc(r.closing, func() { cancelClose(ErrClosed) })
	defer stop()
	runCtx, cancel := context.WithTimeout(closeCtx, rc.Timeout)
	defer cancel()

	name := rc.Name
	if name == "" {
		name = m.name
	}
	argv := append([]string{name}, rc.Args...)
	environ := make([]string, 0, len(rc.Env))
	for _, k := range slices.Sorted(maps.Keys(rc.Env)) { // sorted: same environ order every attempt
		environ = append(environ, k+"="+rc.Env[k])
	}
	var snap *snapshot
	if m.kind == ModuleReactor {
		snap, _ = r.snapshotFor(runCtx, m, argv, environ) // without one, the attempt initializes itself
		if snap != nil && snap.size > rc.MemoryLimit {
			return Result{Outcome: OutcomeMemoryLimit, Err: fmt.Errorf(
				"sandbox: memory limit reached: the module's initialized memory is %s, limit %s: %w",
				formatBytes(snap.size), formatBytes(rc.MemoryLimit), ErrMemoryLimit)}
		}
	}

	stats := &memoryStats{limit: rc.MemoryLimit}
	a := &attempt{d: rc.Dispatcher}
	callCtx := runCtx
	if !r.opts.wazeroMemory {
		alloc := limitAllocator{stats: stats}
		if snap != nil {
			alloc.pool = snap.pool
		}
		callCtx = experimental.WithMemoryAllocator(callCtx, alloc)
	}
	// Outermost, so host functions find it with one comparison.
	callCtx = context.WithValue(callCtx, attemptKey{}, a)

	stdout, stderr := newCapture(rc.OutputCap), newCapture(rc.OutputCap)
	mc := moduleConfig(argv, environ, stdout, stderr)

	var (
		mod      api.Module
		err      error
		duration time.Duration
	)
	start := time.Now()
	if m.kind == ModuleCommand {
		mod, err = r.rt.InstantiateModule(callCtx, m.compiled, mc.WithRandSource(newRandSource(rc.TaskID)))
	} else {
		mod, err = r.runReactor(callCtx, m, snap, mc, rc.TaskID, stats, stdout, stderr)
	}
	duration = time.Since(start)
	if mod != nil {
		// The entry point returned without proc_exit: the instance is
		// still open.
		_ = mod.Close(context.Background())
	}

	if stats.err != nil && err != nil {
		res = Result{Outcome: OutcomeHostFault, Err: fmt.Errorf("%w (the guest then failed: %s)", stats.err, firstLine(err.Error())), Duration: duration}
	} else {
		res = classify(runState{
			err: err, runCtx: runCtx, fault: a.fault, memory: stats,
			limit: rc.MemoryLimit, timeout: rc.Timeout, duration: duration,
		})
	}
	res.Stdout, res.Stderr = stdout.Bytes(), stderr.Bytes()
	res.PeakMemory = stats.peak
	return res
}

// moduleConfig is the WASI world of an instance: exactly argv and environ,
// an empty stdin, captured stdout and stderr, no directories. The instance
// is anonymous, since many instances of one module run at once.
func moduleConfig(argv, environ []string, stdout, stderr *capture) wazero.ModuleConfig {
	mc := wazero.NewModuleConfig().
		WithName("").
		WithArgs(argv...).
		WithStdin(strings.NewReader("")).
		WithStdout(stdout).
		WithStderr(stderr)
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		mc = mc.WithEnv(k, v)
	}
	return mc
}

// runReactor runs one attempt of a reactor: a fresh instance restored from
// snap or, without one, initialized in place; then orloj_run. What
// initialization wrote to stdout and stderr comes first in the attempt's.
func (r *Runtime) runReactor(ctx context.Context, m *Module, snap *snapshot, mc wazero.ModuleConfig, taskID string, stats *memoryStats, stdout, stderr *capture) (api.Module, error) {
	clock := &guestClock{}
	var skip int64
	if snap != nil {
		clock.wall, clock.nano, skip = snap.wallReads, snap.nanoReads, snap.randBytes
		_, _ = stdout.Write(snap.stdout)
		_, _ = stderr.Write(snap.stderr)
	}
	mc = withClock(mc, clock).WithRandSource(attemptRandSource(taskID, skip)).WithStartFunctions()
	mod, err := r.rt.InstantiateModule(ctx, m.compiled, mc)
	if err != nil {
		return mod, err
	}
	if snap != nil {
		err = snap.restore(mod, m.plan, !stats.restored)
	} else {
		err = initialize(ctx, mod, m.plan)
	}
	if err == nil {
		_, err = mod.ExportedFunction(abi.ExportRun).Call(ctx)
	}
	return mod, err
}
