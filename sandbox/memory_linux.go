//go:build linux

package sandbox

import (
	"fmt"
	"runtime"
	"sync"

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
	pool      *memoryPool
}

func newLinearMemory(reserve uint64, stats *memoryStats, pool *memoryPool) experimental.LinearMemory {
	m := &mmapMemory{stats: stats, pool: pool}
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
	if size > uint64(len(m.buf)) || size > m.stats.limit {
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
	if m.pool != nil && m.pool.put(m) {
		return
	}
	b := m.buf[:cap(m.buf)]
	m.buf = nil
	_ = unix.Munmap(b) // cannot fail for a mapping we own, and nothing could be done
}

// memoryPool keeps the linear memories of finished attempts of one snapshot,
// reset to the snapshot, for the next attempts to take as they are.
//
// Why: copying the snapshot into fresh memory is cheap, but faulting the
// fresh pages in is not (on a virtual machine a 4 KiB fault measured tens of
// microseconds, and even with huge pages a restore cost ~1 ms, most of it
// the kernel zeroing pages we then overwrite). A pooled memory is already
// mapped; resetting it (copy the snapshot's non-zero pages, zero the rest
// and up to maxPooledTail of what the attempt grew beyond the snapshot, hand
// back to the kernel anything bigger) runs when an attempt ends, off the
// next attempt's start. Isolation is the reset's: it rewrites every byte the
// attempt could have written, so the next attempt sees exactly the snapshot
// followed by zeros. Copy-on-write mapping of a
// memfd was measured too and lost: shmem gets no huge pages here, so every
// page a run touches costs a 4 KiB fault.
//
// The pool keeps as many memories as attempts of the snapshot have run at
// once (at least GOMAXPROCS, at most maxPooled), so a node's workers all find
// one and an idle snapshot holds no more than its busiest moment needed.
type memoryPool struct {
	snap   *snapshot
	mu     sync.Mutex
	free   []*mmapMemory
	out    int // memories handed out (pooled or fresh) and not yet put back
	limit  int // memories kept: the most ever out at once, within bounds
	closed bool
}

const (
	// maxPooled bounds the memories one snapshot keeps.
	maxPooled = 16
	// maxPooledTail is how much memory beyond the snapshot a pooled
	// memory keeps mapped (zeroed) for the next attempt.
	maxPooledTail = 8 << 20
)

func newMemoryPool(s *snapshot) *memoryPool {
	return &memoryPool{snap: s, limit: min(maxPooled, max(2, runtime.GOMAXPROCS(0)))}
}

// take hands out a pooled memory holding the snapshot, or nil (the caller
// allocates a fresh one, which comes back to the pool too).
func (p *memoryPool) take(stats *memoryStats) experimental.LinearMemory {
	p.mu.Lock()
	p.out++
	p.limit = min(maxPooled, max(p.limit, p.out))
	n := len(p.free)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	m := p.free[n-1]
	p.free = p.free[:n-1]
	p.mu.Unlock()
	m.stats = stats
	stats.restored = true
	return m
}

// put resets m to the snapshot and keeps it; false (the caller unmaps it)
// when the pool is full or closed, or the reset failed.
func (p *memoryPool) put(m *mmapMemory) bool {
	p.mu.Lock()
	p.out--
	full := p.closed || len(p.free) >= p.limit
	p.mu.Unlock()
	if full || !p.reset(m) {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.free) >= p.limit {
		return false
	}
	p.free = append(p.free, m)
	return true
}

func (p *memoryPool) reset(m *mmapMemory) bool {
	size := p.snap.size
	b := m.buf[:cap(m.buf)]
	if size > uint64(len(b)) {
		return false
	}
	switch {
	case m.committed > size+maxPooledTail:
		// A big attempt: give its memory back to the kernel.
		tail := b[size:m.committed]
		if unix.Madvise(tail, unix.MADV_DONTNEED) != nil || unix.Mprotect(tail, unix.PROT_NONE) != nil {
			return false
		}
		m.committed = size
	case m.committed > size:
		// What a run usually grows: keep it mapped, zeroed, so the next
		// attempt grows into it without page faults. madvise here cost
		// more than the whole rest of the reset.
		clear(b[size:m.committed])
	case m.committed < size:
		if unix.Mprotect(b[m.committed:size], unix.PROT_READ|unix.PROT_WRITE) != nil {
			return false
		}
		m.committed = size
	}
	var at uint64
	for _, pg := range p.snap.pages {
		clear(b[at:pg.off])
		copy(b[pg.off:], pg.data)
		at = pg.end()
	}
	clear(b[at:size])
	m.stats = nil
	return true
}

// drain unmaps the pooled memories; the pool keeps no more.
func (p *memoryPool) drain() {
	p.mu.Lock()
	free := p.free
	p.free, p.closed = nil, true
	p.mu.Unlock()
	for _, m := range free {
		m.pool = nil
		m.Free()
	}
}
