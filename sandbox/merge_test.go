package sandbox

import (
	"bytes"
	"fmt"
	"testing"
)

// image applies a module's active data segments, in order, to zeroed
// memory: what instantiation does, written independently of the merger.
func image(t *testing.T, wasm []byte) []byte {
	t.Helper()
	segs, err := dataSegments(wasm)
	if err != nil {
		t.Fatal(err)
	}
	var mem []byte
	for _, s := range segs {
		if s.end() > uint64(len(mem)) {
			mem = append(mem, make([]byte, s.end()-uint64(len(mem)))...)
		}
		copy(mem[s.off:], s.data)
	}
	return mem
}

// A Go guest's ~40,000 data segments become a handful, and the memory they
// initialise is byte for byte the same.
func TestMergeDataSegmentsGoGuest(t *testing.T) {
	wasm := goGuest(t, "echo")
	merged, ok := merge(wasm)
	if !ok {
		t.Fatal("a Go guest was not merged")
	}
	before, _ := dataSegments(wasm)
	after, _ := dataSegments(merged)
	if len(before) < 1000 || len(after) > 10 {
		t.Fatalf("segments: %d before, %d after", len(before), len(after))
	}
	if !bytes.Equal(image(t, wasm), image(t, merged)) {
		t.Fatal("merged segments initialise memory differently")
	}
	t.Logf("%d segments → %d; module %d → %d bytes", len(before), len(after), len(wasm), len(merged))
}

// Modules where merging could change behaviour are left alone.
func TestMergeDataSegmentsRefuses(t *testing.T) {
	mod := func(dataCount bool, segs ...[]byte) []byte {
		b := []byte("\x00asm\x01\x00\x00\x00")
		b = append(b, 5, 3, 1, 0, 1) // one memory, min 1 page
		if dataCount {
			b = append(b, 12, 1, byte(len(segs)))
		}
		body := []byte{byte(len(segs))}
		for _, s := range segs {
			body = append(body, s...)
		}
		b = append(b, 11, byte(len(body)))
		return append(b, body...)
	}
	at := func(off byte, data ...byte) []byte { // active, i32.const off
		return append([]byte{0, 0x41, off, 0x0b, byte(len(data))}, data...)
	}
	passive := []byte{1, 2, 'h', 'i'}
	global := []byte{0, 0x23, 0, 0x0b, 1, 'x'} // offset from a global
	for _, c := range []struct {
		name string
		wasm []byte
		want bool
	}{
		{"adjacent", mod(false, at(0, 1, 2), at(2, 3)), true},
		{"gap, out of order", mod(false, at(10, 1), at(0, 2)), true},
		{"overlapping", mod(false, at(0, 1, 2), at(1, 3)), false},
		{"passive", mod(false, at(0, 1), passive), false},
		{"global offset", mod(false, at(0, 1), global), false},
		{"data count section", mod(true, at(0, 1), at(1, 2)), false},
		{"one segment", mod(false, at(0, 1)), false},
		{"truncated", mod(false, at(0, 1), at(1, 2))[:20], false},
	} {
		got, ok := merge(c.wasm)
		if ok != c.want {
			t.Errorf("%s: merged = %v, want %v", c.name, ok, c.want)
			continue
		}
		if !ok && !bytes.Equal(got, c.wasm) {
			t.Errorf("%s: refused but changed the module", c.name)
		}
		if ok && !bytes.Equal(image(t, got), image(t, c.wasm)) {
			t.Errorf("%s: memory differs after merging", c.name)
		}
	}
}

// dataSegments lists a module's active data segments in file order.
func dataSegments(wasm []byte) ([]segment, error) {
	scan, err := scanModule(wasm)
	if err != nil {
		return nil, err
	}
	segs, ok := activeSegments(wasm[scan.data[0]:scan.data[1]])
	if !ok {
		return nil, fmt.Errorf("data section has segments other than active ones at i32.const offsets")
	}
	return segs, nil
}

// merge scans wasm, then merges its data segments.
func merge(wasm []byte) ([]byte, bool) {
	scan, err := scanModule(wasm)
	if err != nil {
		return wasm, false
	}
	return mergeDataSegments(wasm, scan)
}
