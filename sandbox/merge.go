package sandbox

import (
	"bytes"
	"sort"
)

// maxMergeGap is the largest run of unset bytes merged into a segment. Go's
// linker leaves gaps of at most a few hundred bytes between the symbols of
// one region, and megabytes between regions.
const maxMergeGap = 1 << 10

// mergeDataSegments rewrites a module's data section so that active data
// segments lying close together become one, with the gaps between them
// zero-filled. Go's linker emits one segment per symbol (about 40,000 for a
// small agent), and wazero decodes and copies each one at every
// instantiation: merged, a Go agent has two or three. The result is equivalent
// because instantiation starts from zeroed memory and the segments do not
// overlap. Modules that could tell the difference are returned unchanged:
// passive segments or a data count section (segment indices may be named by
// memory.init and data.drop), an offset that is not an i32.const, a memory
// other than 0, overlapping segments, or anything that does not parse.
// merged reports whether the module was rewritten.
//
// scan is scanModule's result for wasm, which locates the sections.
func mergeDataSegments(wasm []byte, scan *moduleScan) (out []byte, merged bool) {
	start, end := scan.data[0], scan.data[1]
	if scan.dataCount || start == end {
		return wasm, false
	}
	segs, ok := activeSegments(wasm[start:end])
	if !ok || len(segs) < 2 {
		return wasm, false
	}
	sort.SliceStable(segs, func(i, j int) bool { return segs[i].off < segs[j].off })
	var runs []segment
	for i, s := range segs {
		if i > 0 && s.off < segs[i-1].end() {
			return wasm, false // overlap: order of application would matter
		}
		if n := len(runs); n > 0 && s.off-runs[n-1].end() <= maxMergeGap {
			last := &runs[n-1]
			last.data = append(last.data, make([]byte, s.off-last.end())...)
			last.data = append(last.data, s.data...)
			continue
		}
		runs = append(runs, segment{off: s.off, data: append([]byte(nil), s.data...)})
	}
	if len(runs) == len(segs) {
		return wasm, false
	}
	var body []byte
	body = appendULEB(body, uint64(len(runs)))
	for _, s := range runs {
		body = append(body, 0x00, 0x41) // active, memory 0; i32.const
		body = appendSLEB(body, int64(int32(uint32(s.off))))
		body = append(body, 0x0b)
		body = appendULEB(body, uint64(len(s.data)))
		body = append(body, s.data...)
	}
	var b bytes.Buffer
	b.Grow(len(wasm) - (end - start) + len(body) + 6)
	b.Write(wasm[:start])
	b.WriteByte(11)
	b.Write(appendULEB(nil, uint64(len(body))))
	b.Write(body)
	b.Write(wasm[end:])
	return b.Bytes(), true
}

// segment is an active data segment of memory 0.
type segment struct {
	off  uint64
	data []byte
}

func (s segment) end() uint64 { return s.off + uint64(len(s.data)) }

// activeSegments parses a data section (header included) whose segments are
// all active, on memory 0, at an i32.const offset; ok is false otherwise.
func activeSegments(section []byte) ([]segment, bool) {
	r := &reader{b: section}
	r.byte()
	r.u32()
	n := r.count("data segments", maxDataSegments, 2)
	segs := make([]segment, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		switch flags := r.u32(); flags {
		case 0:
		case 2:
			if r.u32() != 0 {
				return nil, false
			}
		default:
			return nil, false
		}
		if r.byte() != 0x41 {
			return nil, false
		}
		off := r.sleb32()
		if r.byte() != 0x0b {
			return nil, false
		}
		data := r.bytes(r.u32())
		segs = append(segs, segment{off: uint64(uint32(off)), data: data})
	}
	if r.err != nil || len(r.b) != 0 {
		return nil, false
	}
	return segs, true
}

// sleb32 reads a signed LEB128 i32.
func (r *reader) sleb32() int32 {
	var v int64
	var shift uint
	for {
		if shift >= 35 {
			r.setErr(errTruncated)
			return 0
		}
		c := r.byte()
		if r.err != nil {
			return 0
		}
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if c&0x40 != 0 && shift < 64 {
				v |= -1 << shift
			}
			return int32(v)
		}
	}
}

func appendULEB(b []byte, v uint64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func appendSLEB(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}
