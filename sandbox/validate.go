package sandbox

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/orloj/orloj/abi"
)

// importKind is the external kind byte of a wasm import.
type importKind byte

const (
	kindFunc   importKind = 0
	kindTable  importKind = 1
	kindMemory importKind = 2
	kindGlobal importKind = 3
	kindTag    importKind = 4
)

func (k importKind) String() string {
	switch k {
	case kindFunc:
		return "function"
	case kindTable:
		return "table"
	case kindMemory:
		return "memory"
	case kindGlobal:
		return "global"
	case kindTag:
		return "tag"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

type wasmImport struct {
	module, name string
	kind         importKind
}

// reader decodes the wasm encodings scanModule needs. The first error
// sticks; later reads return zero values.
type reader struct {
	b   []byte
	err error
}

var errTruncated = errors.New("unexpected end of section")

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.setErr(errTruncated)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) bytes(n uint32) []byte {
	if r.err != nil || uint64(n) > uint64(len(r.b)) {
		r.setErr(errTruncated)
		return nil
	}
	s := r.b[:n]
	r.b = r.b[n:]
	return s
}

// leb reads an unsigned LEB128 of at most maxBits.
func (r *reader) leb(maxBits uint) uint64 {
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift >= maxBits {
			r.setErr(errors.New("LEB128 integer too long"))
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= uint64(c&0x7f) << shift
		if c&0x80 == 0 {
			return v
		}
	}
}

func (r *reader) u32() uint32 {
	v := r.leb(35)
	if v > 1<<32-1 {
		r.setErr(errors.New("integer does not fit in 32 bits"))
	}
	return uint32(v)
}

func (r *reader) name() string { return string(r.bytes(r.u32())) }

// limits reads a table or memory type's limits and returns the minimum.
func (r *reader) limits() uint64 {
	flags := r.byte()
	bits := uint(35)
	if flags&0x04 != 0 { // memory64
		bits = 70
	}
	lo := r.leb(bits)
	if flags&0x01 != 0 {
		r.leb(bits)
	}
	return lo
}

// sleb skips a signed LEB128 of at most maxBits.
func (r *reader) sleb(maxBits uint) {
	for shift := uint(0); ; shift += 7 {
		if shift >= maxBits {
			r.setErr(errors.New("LEB128 integer too long"))
			return
		}
		if c := r.byte(); r.err != nil || c&0x80 == 0 {
			return
		}
	}
}

// count reads a vector length and checks it against a limit and against the
// bytes left, given that each element takes at least minSize bytes: the
// check wazero's decoder skips before allocating the vector.
func (r *reader) count(what string, limit uint32, minSize int) uint32 {
	n := r.u32()
	switch {
	case r.err != nil:
	case n > limit:
		r.setErr(fmt.Errorf("%d %s, limit %d", n, what, limit))
	case uint64(n)*uint64(minSize) > uint64(len(r.b)):
		r.setErr(fmt.Errorf("%d %s cannot fit in %d bytes", n, what, len(r.b)))
	}
	return n
}

func (r *reader) setErr(err error) {
	if r.err == nil {
		r.err = err
	}
}

// checkImports refuses any import Orloj does not provide: every import must be
// a function of orloj_v1 or wasi_snapshot_preview1 that exists there (the
// providers map, from the instantiated host modules).
func checkImports(imports []wasmImport, providers map[string]map[string]api.FunctionDefinition) error {
	var problems []string
	for _, im := range imports {
		funcs, known := providers[im.module]
		_, exists := funcs[im.name]
		switch {
		case !known || (im.kind == kindFunc && !exists):
			problems = append(problems, fmt.Sprintf("module imports %s.%s, which Orloj does not provide", im.module, im.name))
		case im.kind != kindFunc:
			problems = append(problems, fmt.Sprintf("module imports %s %s.%s, which Orloj does not provide (only functions are)", im.kind, im.module, im.name))
		}
	}
	return joinProblems(problems)
}

// checkSignatures compares each imported function's type with what the host
// provides, so a mismatch is refused at upload rather than at instantiation.
func checkSignatures(compiled wazero.CompiledModule, providers map[string]map[string]api.FunctionDefinition) error {
	var problems []string
	for _, def := range compiled.ImportedFunctions() {
		module, name, _ := def.Import()
		want := providers[module][name] // checkImports made sure it exists
		if want == nil {
			continue
		}
		if !sameTypes(def.ParamTypes(), want.ParamTypes()) || !sameTypes(def.ResultTypes(), want.ResultTypes()) {
			problems = append(problems, fmt.Sprintf("module imports %s.%s as %s; Orloj provides %s",
				module, name, signature(def), signature(want)))
		}
	}
	return joinProblems(problems)
}

// checkExports requires what every attempt needs: an entry point taking and
// returning nothing (a WASI command's _start, or a reactor's orloj_run and
// optional _initialize), and the exported memory the ABI's pointers index.
func checkExports(compiled wazero.CompiledModule, kind ModuleKind) error {
	var problems []string
	funcs := compiled.ExportedFunctions()
	entries := []string{abi.ExportStart}
	if kind == ModuleReactor {
		entries = []string{abi.ExportRun, abi.ExportInitialize}
	}
	for i, name := range entries {
		fn, ok := funcs[name]
		switch {
		case !ok && i == 0:
			problems = append(problems, "module does not export function "+abi.ExportStart+" (it must be a WASI command module, or a reactor exporting "+abi.ExportRun+")")
		case ok && (len(fn.ParamTypes()) != 0 || len(fn.ResultTypes()) != 0):
			problems = append(problems, fmt.Sprintf("module exports %s as %s; it must be () -> ()", name, signature(fn)))
		}
	}
	if _, ok := compiled.ExportedMemories()[abi.ExportMemory]; !ok {
		problems = append(problems, "module does not export its memory as \""+abi.ExportMemory+"\"")
	}
	return joinProblems(problems)
}

func joinProblems(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrInvalidModule, strings.Join(problems, "; "))
}

func sameTypes(a, b []api.ValueType) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func signature(def api.FunctionDefinition) string {
	names := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return "(" + strings.Join(s, ", ") + ")"
	}
	return names(def.ParamTypes()) + " -> " + names(def.ResultTypes())
}
