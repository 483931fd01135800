package sandbox

import (
	"errors"
	"fmt"
)

// Structural limits checked before wazero sees a module. Most are the
// WebAssembly JS API's implementation limits (what every browser enforces),
// so any module that runs on the web passes; the table and total-locals
// limits are Orloj's own, far above what Go guests use (a 4 MB Go guest has
// one 6716-entry table and a few locals per function).
const (
	maxTypes             = 1_000_000
	maxFunctions         = 1_000_000
	maxImports           = 100_000
	maxExports           = 100_000
	maxGlobals           = 1_000_000
	maxDataSegments      = 1_000_000 // JS: 100,000, but Go emits one per symbol: 45k for 4 MB
	maxElemSegments      = 100_000
	maxTables            = 100
	maxTableSize         = 1_000_000 // initial entries; 8 MB of host memory per instance
	maxParams            = 1_000
	maxResults           = 1_000
	maxFunctionBodyBytes = 7_654_321
	maxLocalsPerFunction = 50_000
	maxLocalsTotal       = 1 << 24
	maxNameEntries       = 1 << 22
	maxCustomNameBytes   = 1 << 16
)

// moduleScan is what scanModule learned.
type moduleScan struct {
	imports []wasmImport
	// data is where the data section lies, header included ([0, 0) if
	// none); dataCount is whether a data count section is present.
	data      [2]int
	dataCount bool
	// exports is where the export section lies, header included ([0, 0)
	// if none), and exportNames what it exports.
	exports     [2]int
	exportNames []string
	// globals are the module's own globals, in index order after the
	// imported ones.
	globals []globalType
	// start is whether the module has a start section.
	start bool
}

// globalType is a global's value type byte and mutability.
type globalType struct {
	valType byte
	mutable bool
}

// scanModule walks a module's binary structure without decoding code, and
// returns its imports. It exists because wazero's decoder trusts the counts
// in the binary: a vector length, a name length or a local count is used to
// size an allocation before any element is read, so a 66-byte module
// claiming ~600 million exports makes CompileModule allocate tens of
// gigabytes and the Go runtime abort the whole process ("fatal error: out of
// memory", which no recover catches). Found by FuzzCompile; wazero v1.11.0
// and v1.12.0 both do this. Every count is checked here against the bytes
// that remain (and the limits above), so what wazero allocates stays
// proportional to the module's size.
func scanModule(b []byte) (*moduleScan, error) {
	r := &reader{b: b}
	if magic := r.bytes(4); string(magic) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary (bad magic number)")
	}
	if v := r.bytes(4); string(v) != "\x01\x00\x00\x00" {
		return nil, fmt.Errorf("unsupported WebAssembly binary version % x", v)
	}
	s := &moduleScan{}
	var locals uint64
	for r.err == nil && len(r.b) > 0 {
		at := len(b) - len(r.b)
		id := r.byte()
		size := r.u32()
		body := r.bytes(size)
		if r.err != nil {
			return nil, fmt.Errorf("section %d: %w", id, r.err)
		}
		sr := &reader{b: body}
		var err error
		switch id {
		case 0:
			err = scanCustom(sr)
		case 1:
			scanTypes(sr)
		case 2:
			s.imports, err = scanImports(sr)
		case 3:
			n := sr.count("functions", maxFunctions, 1)
			for i := uint32(0); i < n && sr.err == nil; i++ {
				sr.u32()
			}
		case 4:
			n := sr.count("tables", maxTables, 3)
			for i := uint32(0); i < n && sr.err == nil; i++ {
				sr.byte() // reference type
				if min := sr.limits(); min > maxTableSize {
					sr.setErr(fmt.Errorf("table %d has %d initial entries, limit %d", i, min, maxTableSize))
				}
			}
		case 5:
			n := sr.count("memories", 1, 2)
			for i := uint32(0); i < n && sr.err == nil; i++ {
				sr.limits()
			}
		case 6:
			n := sr.count("globals", maxGlobals, 4)
			s.globals = make([]globalType, 0, n)
			for i := uint32(0); i < n && sr.err == nil; i++ {
				var g globalType
				g.valType = sr.byte()
				g.mutable = sr.byte() == 1
				sr.constExpr()
				s.globals = append(s.globals, g)
			}
		case 7:
			n := sr.count("exports", maxExports, 3)
			s.exportNames = make([]string, 0, n)
			for i := uint32(0); i < n && sr.err == nil; i++ {
				s.exportNames = append(s.exportNames, sr.name())
				sr.byte() // kind
				sr.u32()  // index
			}
			s.exports = [2]int{at, len(b) - len(r.b)}
		case 8, 12: // start, data count: one u32
			sr.u32()
			s.dataCount = s.dataCount || id == 12
			s.start = s.start || id == 8
		case 9:
			scanElements(sr)
		case 10:
			locals, err = scanCode(sr, locals)
		case 11:
			scanData(sr)
			s.data = [2]int{at, len(b) - len(r.b)}
		case 13: // tags: attribute and type index each
			n := sr.count("tags", maxTypes, 2)
			for i := uint32(0); i < n && sr.err == nil; i++ {
				sr.byte()
				sr.u32()
			}
		default:
			err = fmt.Errorf("unknown section id %d", id)
		}
		if err == nil {
			err = sr.err
		}
		if err == nil && len(sr.b) != 0 && id != 0 {
			err = fmt.Errorf("%d bytes left over", len(sr.b))
		}
		if err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
	}
	return s, r.err
}

func scanTypes(r *reader) {
	n := r.count("types", maxTypes, 3)
	for i := uint32(0); i < n && r.err == nil; i++ {
		if form := r.byte(); form != 0x60 && r.err == nil {
			r.setErr(fmt.Errorf("type %d: form 0x%02x is not a function type", i, form))
			return
		}
		r.bytes(r.count("parameters", maxParams, 1))
		r.bytes(r.count("results", maxResults, 1))
	}
}

func scanImports(r *reader) ([]wasmImport, error) {
	n := r.count("imports", maxImports, 4)
	if r.err != nil {
		return nil, r.err
	}
	imports := make([]wasmImport, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		var im wasmImport
		im.module = r.name()
		im.name = r.name()
		im.kind = importKind(r.byte())
		switch im.kind {
		case kindFunc:
			r.u32() // type index
		case kindTable:
			r.byte() // reference type
			r.limits()
		case kindMemory:
			r.limits()
		case kindGlobal:
			r.byte() // value type
			r.byte() // mutability
		case kindTag:
			r.byte() // attribute
			r.u32()  // type index
		default:
			r.setErr(fmt.Errorf("import %d: unknown kind 0x%02x", i, byte(im.kind)))
		}
		imports = append(imports, im)
	}
	return imports, r.err
}

// scanElements walks element segments, whose eight encodings differ in
// which of table index, offset, element kind and vector of indices or
// expressions they carry.
func scanElements(r *reader) {
	n := r.count("element segments", maxElemSegments, 2)
	for i := uint32(0); i < n && r.err == nil; i++ {
		flags := r.u32()
		if flags > 7 {
			r.setErr(fmt.Errorf("element segment %d: flags %d", i, flags))
			return
		}
		if flags&0b010 != 0 && flags&0b001 == 0 { // 2, 6: explicit table index
			r.u32()
		}
		if flags&0b001 == 0 { // active: offset expression
			r.constExpr()
		}
		if flags&0b011 != 0 { // 1, 2, 3, 5, 6, 7: element kind or reference type
			r.byte()
		}
		if flags&0b100 == 0 { // vector of function indices
			m := r.count("element indices", maxFunctions, 1)
			for j := uint32(0); j < m && r.err == nil; j++ {
				r.u32()
			}
		} else { // vector of expressions
			m := r.count("element expressions", maxFunctions, 2)
			for j := uint32(0); j < m && r.err == nil; j++ {
				r.constExpr()
			}
		}
	}
}

func scanData(r *reader) {
	n := r.count("data segments", maxDataSegments, 2)
	for i := uint32(0); i < n && r.err == nil; i++ {
		switch flags := r.u32(); flags {
		case 0:
			r.constExpr()
		case 1:
		case 2:
			r.u32() // memory index
			r.constExpr()
		default:
			r.setErr(fmt.Errorf("data segment %d: flags %d", i, flags))
			return
		}
		r.bytes(r.u32()) // init bytes; bytes() checks the length against what is left
	}
}

// scanCode checks each function body's size and its local declarations,
// which wazero sums and allocates (then fills one byte per local) before
// reading the body. total carries the module-wide sum across calls.
func scanCode(r *reader, total uint64) (uint64, error) {
	n := r.count("function bodies", maxFunctions, 2)
	for i := uint32(0); i < n && r.err == nil; i++ {
		size := r.u32()
		if size > maxFunctionBodyBytes {
			return total, fmt.Errorf("function body %d is %d bytes, limit %d", i, size, maxFunctionBodyBytes)
		}
		br := &reader{b: r.bytes(size)}
		if r.err != nil {
			break
		}
		decls := br.count("local declarations", maxLocalsPerFunction, 2)
		var sum uint64
		for j := uint32(0); j < decls && br.err == nil; j++ {
			sum += uint64(br.u32())
			br.byte() // value type
			if sum > maxLocalsPerFunction {
				return total, fmt.Errorf("function body %d declares more than %d locals", i, maxLocalsPerFunction)
			}
		}
		if br.err != nil {
			return total, fmt.Errorf("function body %d: %w", i, br.err)
		}
		if total += sum; total > maxLocalsTotal {
			return total, fmt.Errorf("functions declare more than %d locals in all", maxLocalsTotal)
		}
	}
	return total, r.err
}

// scanCustom checks a custom section's name and, for the "name" section
// (which wazero decodes), the counts in its function and local names.
func scanCustom(r *reader) error {
	nameLen := r.u32()
	if r.err == nil && nameLen > maxCustomNameBytes {
		return fmt.Errorf("custom section name is %d bytes, limit %d", nameLen, maxCustomNameBytes)
	}
	if string(r.bytes(nameLen)) != "name" || r.err != nil {
		r.b = nil // other custom sections: wazero only skips or copies them
		return r.err
	}
	entries := 0
	for len(r.b) > 0 && r.err == nil {
		id := r.byte()
		sub := &reader{b: r.bytes(r.u32())}
		switch id {
		case 0: // module name
			sub.name()
		case 1: // function names
			n := sub.count("function names", maxFunctions, 2)
			for i := uint32(0); i < n && sub.err == nil; i++ {
				sub.u32()
				sub.name()
			}
		case 2: // local names
			n := sub.count("local name maps", maxFunctions, 2)
			for i := uint32(0); i < n && sub.err == nil; i++ {
				sub.u32()
				m := sub.count("local names", maxLocalsPerFunction, 2)
				if sub.err != nil {
					break
				}
				if entries += int(m); entries > maxNameEntries {
					return fmt.Errorf("name section: more than %d local names", maxNameEntries)
				}
				for j := uint32(0); j < m && sub.err == nil; j++ {
					sub.u32()
					sub.name()
				}
			}
		default:
			sub.b = nil
		}
		if sub.err != nil {
			return fmt.Errorf("name section, subsection %d: %w", id, sub.err)
		}
		if len(sub.b) != 0 {
			return fmt.Errorf("name section, subsection %d: %d bytes left over", id, len(sub.b))
		}
	}
	return r.err
}

// constExpr skips a constant expression: the instructions allowed in
// global initializers and segment offsets, up to end (0x0b).
func (r *reader) constExpr() {
	for r.err == nil {
		switch op := r.byte(); op {
		case 0x0b: // end
			return
		case 0x41: // i32.const
			r.sleb(35)
		case 0x42: // i64.const
			r.sleb(70)
		case 0x43: // f32.const
			r.bytes(4)
		case 0x44: // f64.const
			r.bytes(8)
		case 0x23, 0xd2: // global.get, ref.func
			r.u32()
		case 0xd0: // ref.null
			r.byte()
		case 0xfd: // v128.const
			if sub := r.u32(); sub != 12 && r.err == nil {
				r.setErr(fmt.Errorf("SIMD instruction %d in a constant expression", sub))
				return
			}
			r.bytes(16)
		case 0x6a, 0x6b, 0x6c, 0x7c, 0x7d, 0x7e: // extended-const add, sub, mul
		default:
			if r.err == nil {
				r.setErr(fmt.Errorf("opcode 0x%02x in a constant expression", op))
			}
			return
		}
	}
}
