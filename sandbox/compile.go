package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/tetratelabs/wazero"

	"github.com/orloj/orloj/abi"
)

// Module is a validated, compiled guest, shared by every attempt that runs
// it. It is owned by the Runtime that compiled it and lives as long as it.
type Module struct {
	rt        *Runtime
	compiled  wazero.CompiledModule
	digest    string
	name      string
	minMemory uint64 // bytes of initial linear memory the module declares
	kind      ModuleKind
	// plan is set for a reactor rewritten for snapshots (prepareReactor);
	// nil for commands and for reactors that initialize in every attempt.
	plan *reactorPlan

	snapMu    sync.Mutex
	snapshots map[string]*snapshotEntry // by snapshotKey
	// preinitErr is why the snapshot for the default argv/env (taken by
	// Compile) is missing; nil when it was taken.
	preinitErr error
}

// Kind says whether attempts run _start (a command) or orloj_run (a
// reactor).
func (m *Module) Kind() ModuleKind { return m.kind }

// Preinitialized reports whether attempts of this reactor start from a
// snapshot of its initialized state, and if not, why: nil for a snapshotted
// reactor. For a command it returns ErrNotReactor. The snapshot checked is
// the one for argv [Name()] and an empty environment, which Compile takes;
// other argv/env get their own at their first Run.
func (m *Module) Preinitialized() error {
	switch {
	case m.kind != ModuleReactor:
		return ErrNotReactor
	case m.plan == nil:
		return errors.New("the module cannot be rewritten for snapshots (a start section, a data count section, passive data segments or an export named " + globalExportPrefix + "*)")
	}
	return m.preinitErr
}

// Digest returns the hex SHA-256 of the module's bytes: its identity in the
// compile cache and, to callers, the agent version.
func (m *Module) Digest() string { return m.digest }

// Name returns the module name from the wasm name section, or "agent": the
// guest's argv[0] unless RunConfig.Name says otherwise.
func (m *Module) Name() string { return m.name }

// MinMemory returns the initial linear memory the module declares, in bytes;
// a run whose MemoryLimit is lower fails with OutcomeMemoryLimit.
func (m *Module) MinMemory() uint64 { return m.minMemory }

// compileEntry lets concurrent Compiles of the same bytes wait for one
// compilation instead of each paying for it.
type compileEntry struct {
	done chan struct{}
	mod  *Module
	err  error
}

// Compile validates and compiles a guest module, once per SHA-256 digest:
// later calls with the same bytes return the same *Module. Every refusal
// wraps ErrInvalidModule and names its reason: too large; not WebAssembly or
// does not compile; imports something Orloj does not provide (any module
// other than orloj_v1 and wasi_snapshot_preview1, a name they do not export,
// or the wrong signature); neither _start nor orloj_run exported, or no
// memory export; a reactor whose initialization traps or exits.
//
// A reactor (see ModuleKind) is initialized here, once, and the initialized
// state kept for its attempts (see snapshot.go), so Compile takes the
// initialization's time too (milliseconds for Go).
func (r *Runtime) Compile(ctx context.Context, wasm []byte) (*Module, error) {
	if int64(len(wasm)) > r.cfg.MaxModuleBytes {
		return nil, fmt.Errorf("%w: module is %d bytes, limit %d (Config.MaxModuleBytes)", ErrInvalidModule, len(wasm), r.cfg.MaxModuleBytes)
	}
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	if e, ok := r.modules[digest]; ok {
		r.mu.Unlock()
		select {
		case <-e.done:
			return e.mod, e.err
		case <-ctx.Done():
			return nil, fmt.Errorf("sandbox: compile %s: %w", digest[:12], ctx.Err())
		}
	}
	e := &compileEntry{done: make(chan struct{})}
	r.modules[digest] = e
	r.mu.Unlock()

	e.mod, e.err = r.compile(ctx, wasm, digest)
	if e.err != nil {
		// Refusals are not cached: bad uploads must not pile up in memory,
		// and a compile that failed for a transient reason may succeed.
		r.mu.Lock()
		delete(r.modules, digest)
		r.mu.Unlock()
	}
	close(e.done)
	return e.mod, e.err
}

func (r *Runtime) compile(ctx context.Context, wasm []byte, digest string) (*Module, error) {
	scan, err := scanModule(wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: module does not compile: %v", ErrInvalidModule, err)
	}
	if err := checkImports(scan.imports, r.providers); err != nil {
		return nil, err
	}
	// The module's identity stays the digest of what was uploaded, whatever
	// the rewrites below make of it.
	kind := kindOf(scan.exportNames)
	var plan *reactorPlan
	if kind == ModuleReactor {
		var out []byte
		var ok bool
		if out, plan, ok = prepareReactor(wasm, scan); ok {
			wasm = out
		}
	}
	if plan == nil {
		// Fewer, larger data segments instantiate faster (see
		// mergeDataSegments).
		wasm, _ = mergeDataSegments(wasm, scan)
	}
	compiled, err := r.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: module does not compile: %s", ErrInvalidModule, explainCompileError(err))
	}
	if err := checkSignatures(compiled, r.providers); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	if err := checkExports(compiled, kind); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	m := &Module{rt: r, compiled: compiled, digest: digest, name: compiled.Name(), kind: kind, plan: plan,
		snapshots: make(map[string]*snapshotEntry)}
	if m.name == "" {
		m.name = "agent"
	}
	m.minMemory = uint64(compiled.ExportedMemories()[abi.ExportMemory].Min()) * pageSize
	if plan != nil {
		// Initialize now, so that a module whose initialization fails is
		// refused at upload rather than failing every attempt.
		_, m.preinitErr = r.snapshotFor(ctx, m, []string{m.name}, nil)
		if errors.Is(m.preinitErr, errInitFailed) {
			_ = compiled.Close(ctx)
			return nil, fmt.Errorf("%w: %v", ErrInvalidModule, m.preinitErr)
		}
	}
	return m, nil
}

// acceptedFeatures is what a refused feature's message lists (docs/abi.md,
// Module).
const acceptedFeatures = "WebAssembly 1.0 with mutable globals, sign extension, non-trapping float-to-int, multi-value, bulk memory and SIMD"

// explainCompileError makes wazero's refusal of a disabled feature say
// what the sandbox accepts. wazero names a feature it does not implement
// at all (tail calls) as "", which told a guest author nothing.
func explainCompileError(err error) string {
	msg := err.Error()
	if !strings.Contains(msg, "is disabled") || !strings.Contains(msg, "feature") {
		return msg
	}
	msg = strings.Replace(msg, `as feature "" is disabled`, "as its feature is not accepted", 1)
	return msg + " (the sandbox accepts " + acceptedFeatures + "; see docs/abi.md, Wasm features by toolchain)"
}
