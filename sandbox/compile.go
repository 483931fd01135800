package sandbox

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

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
// or the wrong signature); no _start or memory export.
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
	// Fewer, larger data segments instantiate faster (see mergeDataSegments);
	// the module's identity stays the digest of what was uploaded.
	wasm, _ = mergeDataSegments(wasm, scan)
	compiled, err := r.rt.CompileModule(ctx, wasm)
	if err != nil {
		return nil, fmt.Errorf("%w: module does not compile: %v", ErrInvalidModule, err)
	}
	if err := checkSignatures(compiled, r.providers); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	if err := checkExports(compiled); err != nil {
		_ = compiled.Close(ctx)
		return nil, err
	}
	m := &Module{rt: r, compiled: compiled, digest: digest, name: compiled.Name()}
	if m.name == "" {
		m.name = "agent"
	}
	m.minMemory = uint64(compiled.ExportedMemories()[abi.ExportMemory].Min()) * pageSize
	return m, nil
}
