package sandbox

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"testing"

	"github.com/orloj/orloj/abi"
)

// FuzzSpan checks the bounds check every host function relies on against
// arbitrary-precision arithmetic: in bounds exactly when n is 0 or
// ptr+n <= len(mem), never a wrapped range.
func FuzzSpan(f *testing.F) {
	for _, s := range [][3]uint32{
		{0, 0, 0}, {0, 1, 0}, {0, 0, 1}, {65536, 0xFFFFFFFF, 1}, {65536, 0x10, 0xFFFFFFFF},
		{65536, 0xFFFFFFF0, 0x20}, {65536, 65535, 1}, {65536, 65535, 2}, {65536, 65536, 0}, {65536, 65537, 0},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, size, ptr, n uint32) {
		size %= 1 << 20
		mem := make([]byte, size)
		got, ok := span(mem, ptr, n)
		end := new(big.Int).Add(big.NewInt(int64(ptr)), big.NewInt(int64(n)))
		want := n == 0 || end.Cmp(big.NewInt(int64(size))) <= 0
		if ok != want {
			t.Fatalf("span(len %d, %#x, %#x) ok=%v, want %v", size, ptr, n, ok, want)
		}
		if ok && (len(got) != int(n) || (n > 0 && (cap(got) != int(n) || &got[0] != &mem[ptr]))) {
			t.Fatalf("span(len %d, %#x, %#x) = len %d cap %d", size, ptr, n, len(got), cap(got))
		}
	})
}

// fuzzMemSize is testdata/fuzz.wat's memory: one page.
const fuzzMemSize = 1 << 16

type fuzzOp struct{ fn, a, b, c, d, e uint32 }

// faults reports whether op must return StatusFault: some (ptr, len) pair it
// passes lies outside the guest's memory.
func (op fuzzOp) faults() bool {
	in := func(p, n uint32) bool { return n == 0 || uint64(p)+uint64(n) <= fuzzMemSize }
	switch op.fn % 7 {
	case 0, 2: // input, response (buf_ptr, buf_cap, len_ptr)
		return !in(op.a, op.b) || !in(op.c, 4)
	case 1: // call (req_ptr, req_len, buf_ptr, buf_cap, len_ptr)
		return !in(op.a, op.b) || !in(op.c, op.d) || !in(op.e, 4)
	case 3, 6: // output, emit (ptr, len)
		return !in(op.a, op.b)
	case 4: // log (level, ptr, len)
		return !in(op.b, op.c)
	default: // now (out_ptr)
		return !in(op.a, 8)
	}
}

// FuzzHostCalls makes two host calls with arbitrary arguments from a real
// instance (testdata/fuzz.wat) and checks: the guest never traps or faults
// the host, every status is a defined one, out-of-bounds arguments give
// StatusFault, and a faulted call never reaches the dispatcher.
func FuzzHostCalls(f *testing.F) {
	for _, ops := range [][2]fuzzOp{
		{{1, 0x400, 15, 0x200, 4, 0x300}, {2, 0x200, 64, 0x300, 0, 0}}, // call too small, then response
		{{0, 0x200, 64, 0x300, 0, 0}, {5, 0xFFF8, 0, 0, 0, 0}},         // input, now at the edge
		{{3, 0xFFFFFFFF, 1, 0, 0, 0}, {4, 1, 0xFFFFFFF0, 0x20, 0, 0}},  // output, log out of bounds
		{{6, 0x400, 15, 0, 0, 0}, {1, 0x400, 15, 0x10, 0xFFFFFFFF, 0}}, // emit; call with a wrapping buffer
		{{4, 9, 0x400, 15, 0, 0}, {2, 0, 0, 0xFFFC, 0, 0}},             // bad level; response at the end
	} {
		f.Add(encodeOps(ops))
	}
	m := mustCompile(f, shared, watGuest(f, "fuzz"))
	echo := map[string]ToolFunc{"echo": func(_ context.Context, p json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"echo":` + string(p) + `}`), nil
	}}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 48 {
			in = append(in, make([]byte, 48-len(in))...)
		}
		in = in[:48]
		ops := decodeOps(in)
		d := &countingDispatcher{MemDispatcher: NewMemDispatcher(in, echo)}
		res := shared.Run(context.Background(), m, RunConfig{Dispatcher: d})
		if res.Outcome != OutcomeSuccess {
			t.Fatalf("ops %+v: %v: %v", ops, res.Outcome, res.Err)
		}
		out := d.TaskOutput()
		if len(out) != 8 {
			t.Fatalf("ops %+v: output %q", ops, out)
		}
		// Dispatcher calls each op may make, by function.
		var maxCalls [7]int32
		maxCalls[0] = 1 // the guest's own input call
		for i, op := range ops {
			st := abi.Status(binary.LittleEndian.Uint32(out[4*i:]))
			if st < abi.StatusOK || st > abi.StatusFault {
				t.Fatalf("op %d %+v: undefined status %d", i, op, st)
			}
			if op.faults() != (st == abi.StatusFault) {
				t.Fatalf("op %d %+v: status %v, fault expected: %v", i, op, st, op.faults())
			}
			if !op.faults() {
				maxCalls[op.fn%7]++
			}
		}
		got := [7]int32{d.inputs.Load(), d.calls.Load(), 0, d.outputs.Load() - 1, d.logs.Load(), d.nows.Load(), d.emits.Load()}
		for fn, n := range got {
			if n > maxCalls[fn] {
				t.Fatalf("ops %+v: function %d reached the dispatcher %d times, at most %d", ops, fn, n, maxCalls[fn])
			}
		}
	})
}

func encodeOps(ops [2]fuzzOp) []byte {
	b := make([]byte, 0, 48)
	for _, op := range ops {
		for _, v := range []uint32{op.fn, op.a, op.b, op.c, op.d, op.e} {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
	}
	return b
}

func decodeOps(b []byte) [2]fuzzOp {
	var ops [2]fuzzOp
	for i := range ops {
		v := func(j int) uint32 { return binary.LittleEndian.Uint32(b[24*i+4*j:]) }
		ops[i] = fuzzOp{v(0), v(1), v(2), v(3), v(4), v(5)}
	}
	return ops
}

// FuzzCompile feeds hostile bytes through the whole validation pipeline
// (scanModule, wazero's decoder and compiler, import and export checks). It
// must never panic or exhaust memory (the fuzzer reports a worker that dies),
// and on every module wazero accepts, scanModule must find the same function
// imports. Its corpus started from testdata/*.wasm; the regression inputs in
// testdata/fuzz/FuzzCompile are named after what they broke.
func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.wasm"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x02\x05\x01\x01a\x01b"))           // truncated import
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x02\x06\xff\xff\xff\xff\x0f\x00")) // absurd count
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x02\x80\x80\x80\x80\x80\x01"))     // overlong LEB128
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		scan, serr := scanModule(b)
		// The uncached path, so the fuzzer does not fill the shared cache.
		if m, err := shared.compile(ctx, b, "fuzz"); err == nil {
			m.compiled.Close(ctx)
		} else if !errors.Is(err, ErrInvalidModule) {
			t.Fatalf("Compile error %v does not wrap ErrInvalidModule", err)
		}
		if serr != nil {
			return
		}
		compiled, err := shared.rt.CompileModule(ctx, b)
		if err != nil {
			return
		}
		defer compiled.Close(ctx)
		var funcs []wasmImport
		for _, im := range scan.imports {
			if im.kind == kindFunc {
				funcs = append(funcs, im)
			}
		}
		defs := compiled.ImportedFunctions()
		if len(defs) != len(funcs) {
			t.Fatalf("scanned %d function imports, wazero %d", len(funcs), len(defs))
		}
		for i, def := range defs {
			mod, name, _ := def.Import()
			if mod != funcs[i].module || name != funcs[i].name {
				t.Fatalf("import %d: scanned %s.%s, wazero %s.%s", i, funcs[i].module, funcs[i].name, mod, name)
			}
		}
	})
}
