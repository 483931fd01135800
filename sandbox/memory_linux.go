//go:build linux

package sandbox

import (
	"fmt"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapMemory backs a guest's linear memory with one anonymous mapping that
// reserves the whole limit up front as PROT_NONE and makes pages readable
// and writable as the guest grows into them.
//
// Why: wazero's default memory is a Go slice that memory.grow reallocates and
// copies; a guest that bombs memory leaves a trail of dead copies for the GC,
// and a 64 MiB-capped guest measured ~300 MB of host RSS. With the
// reservation the base address never moves, grow is one mprotect with no
// copy, untouched pages cost nothing, and Free hands everything back to the
// kernel at once (munmap) instead of waiting for a GC.
type mmapMemory struct {
	stats     *memoryStats
	buf       []byte // the whole reservation
	committed uint64 // bytes made PROT_READ|PROT_WRITE, a prefix of buf
}

func newLinearMemory(reserve uint64, stats *memoryStats) experimental.LinearMemory {
	m := &mmapMemory{stats: stats}
	// A zero-page memory still gets one page reserved, so buf is never nil
	// and Reallocate(0) returns an empty, non-nil slice.
	b, err := unix.Mmap(-1, 0, int(max(reserve, pageSize)),
		unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		// wazero has no way to fail here (it slices what Reallocate
		// returns), so fail loudly: Run recovers this as a host fault.
		// Reservations count against RLIMIT_AS (ulimit -v).
		panic(fmt.Errorf("sandbox: reserve %d bytes of address space for guest memory: %w", reserve, err))
	}
	// Huge pages: a fresh instance touches a few MiB (the Go runtime's heap
	// and the data segments), and faulting them in 4 KiB at a time was a
	// tenth of a task's CPU. Advice only; with THP off it does nothing.
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE)
	m.buf = b[:reserve]
	return m
}

// Reallocate implements experimental.LinearMemory. wazero calls it once with
// the initial size and then on every successful-so-far memory.grow; nil
// makes memory.grow return -1 to the guest.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if m.buf == nil {
		return nil // freed
	}
	if size > uint64(len(m.buf)) {
		m.stats.refuse(size)
		return nil
	}
	if size > m.committed {
		if err := unix.Mprotect(m.buf[m.committed:size], unix.PROT_READ|unix.PROT_WRITE); err != nil {
			m.stats.err = fmt.Errorf("sandbox: commit guest memory to %d bytes: %w", size, err)
			return nil
		}
		m.committed = size
	}
	if size > m.stats.peak {
		m.stats.peak = size
	}
	// Capacity is cut to size so nothing can append into uncommitted pages.
	return m.buf[:size:size]
}

// Free implements experimental.LinearMemory. wazero calls it when the
// instance closes, on the goroutine that ran the guest, once the guest can no
// longer execute.
func (m *mmapMemory) Free() {
	if m.buf == nil {
		return
	}
	b := m.buf[:cap(m.buf)]
	m.buf = nil
	_ = unix.Munmap(b) // cannot fail for a mapping we own, and nothing could be done
}
