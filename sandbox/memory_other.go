//go:build !linux

package sandbox

import "github.com/tetratelabs/wazero/experimental"

// sliceMemory is the portable fallback: a Go slice grown by reallocation and
// copy, as wazero's default does, plus the per-attempt limit. Linux uses
// mmapMemory, which reserves and commits instead of copying.
type sliceMemory struct {
	stats   *memoryStats
	reserve uint64
	buf     []byte
}

// memoryPool is Linux-only (memory_linux.go); elsewhere every attempt
// copies the snapshot into fresh memory.
type memoryPool struct{}

func newMemoryPool(*snapshot) *memoryPool                       { return nil }
func (*memoryPool) take(*memoryStats) experimental.LinearMemory { return nil }
func (*memoryPool) drain()                                      {}

func newLinearMemory(reserve uint64, stats *memoryStats, _ *memoryPool) experimental.LinearMemory {
	return &sliceMemory{stats: stats, reserve: reserve, buf: []byte{}}
}

func (m *sliceMemory) Reallocate(size uint64) []byte {
	if size > m.reserve {
		m.stats.refuse(size)
		return nil
	}
	if size > uint64(cap(m.buf)) {
		next := make([]byte, size, min(m.reserve, max(size, 2*uint64(cap(m.buf)))))
		copy(next, m.buf)
		m.buf = next
	}
	m.buf = m.buf[:size]
	if size > m.stats.peak {
		m.stats.peak = size
	}
	return m.buf
}

func (m *sliceMemory) Free() { m.buf = nil }
