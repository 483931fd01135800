package sandbox

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// uleb appends v as unsigned LEB128.
func uleb(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// module assembles a binary from (id, body) sections.
func module(sections ...[]byte) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for _, s := range sections {
		b = append(b, s[0])
		b = uleb(b, uint64(len(s)-1))
		b = append(b, s[1:]...)
	}
	return b
}

func section(id byte, parts ...[]byte) []byte {
	s := []byte{id}
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

func u(v uint64) []byte { return uleb(nil, v) }

// TestScanRefusesHostileCounts: each module is a few bytes claiming a count
// that wazero's decoder would allocate for before reading (v1.11.0: exports,
// types, names, locals, data, elements). scanModule must refuse them all, so
// Compile returns ErrInvalidModule instead of the process dying.
func TestScanRefusesHostileCounts(t *testing.T) {
	typeVoid := section(1, u(1), []byte{0x60, 0, 0})
	funcs1 := section(3, u(1), u(0))
	tests := []struct {
		name string
		wasm []byte
		want string
	}{
		{"export count", module(section(7, u(600_000_000), []byte("\x01a\x00\x00"))), "600000000 exports, limit 100000"},
		{"export count within limit but not bytes", module(section(7, u(99_999), []byte("\x01a\x00\x00"))), "99999 exports cannot fit in 4 bytes"},
		{"export name length", module(section(7, u(1), u(0xFFFFFFF0), []byte("ab"))), "unexpected end"},
		{"type count", module(section(1, u(1<<31), []byte{0x60, 0, 0})), "types, limit"},
		{"param count", module(section(1, u(1), []byte{0x60}, u(0xFFFFFFFF), []byte{0})), "4294967295 parameters, limit 1000"},
		{"import count", module(section(2, u(0xFFFFFFFF))), "imports, limit"},
		{"function count", module(section(3, u(900_000))), "cannot fit"},
		{"locals", module(typeVoid, funcs1, section(10, u(1), u(8), u(1), u(0xFFFFFFFF), []byte{0x7f, 0x0b})), "declares more than 50000 locals"},
		{"locals summed over declarations", module(typeVoid, funcs1, section(10, u(1), u(9), u(2), u(30_000), []byte{0x7f}, u(30_000), []byte{0x7f, 0x0b})), "more than 50000 locals"},
		{"data init length", module(section(11, u(1), u(1), u(0xFFFFFFFF), []byte("xy"))), "unexpected end"},
		{"data count", module(section(11, u(0x7FFFFFFF))), "data segments, limit"},
		{"element vector", module(section(9, u(1), u(1), []byte{0}, u(0xFFFFFFFF), []byte{0})), "element indices, limit"},
		{"table size", module(section(4, u(1), []byte{0x70, 0}, u(1<<27))), "134217728 initial entries, limit 1000000"},
		{"name section function names", module(section(0, u(4), []byte("name"), []byte{1}, u(5), u(0xFFFFFFF), []byte{0})), "268435455 function names, limit 1000000"},
		{"name section local names", module(section(0, u(4), []byte("name"), []byte{2}, u(7), u(1), u(0), u(0xFFFFFF), []byte{0})), "local names, limit 50000"},
		{"custom section name length", module(section(0, u(0xFFFFFFF), []byte("x"))), "custom section name is 268435455 bytes"},
		{"section size", module([]byte{7})[:8+1], "unexpected end"},
		{"section longer than module", append([]byte("\x00asm\x01\x00\x00\x00\x07"), u(0xFFFFFFF)...), "unexpected end"},
		{"unknown section", module(section(42)), "unknown section id 42"},
		{"const expr opcode", module(section(6, u(1), []byte{0x7f, 0, 0x10, 0x0b})), "opcode 0x10 in a constant expression"},
		{"bytes left over", module(section(3, u(1), u(0), []byte{0})), "1 bytes left over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := shared.Compile(context.Background(), tt.wasm)
			if !errors.Is(err, ErrInvalidModule) {
				t.Fatalf("Compile: %v", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %q does not contain %q", err, tt.want)
			}
		})
	}
}

// The scan accepts what the guests we ship and test use.
func TestScanAcceptsRealModules(t *testing.T) {
	for _, name := range []string{"echo", "probe", "roundtrip", "memorybomb"} {
		s, err := scanModule(goGuest(t, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(s.imports) == 0 {
			t.Errorf("%s: no imports found", name)
		}
	}
	for _, name := range []string{"faults", "limits", "hostloop", "fuzz", "empty"} {
		if _, err := scanModule(watGuest(t, name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
