package sandbox

import (
	"github.com/tetratelabs/wazero/experimental"
)

// memoryStats is what one attempt's allocator saw. It is written on the
// guest's goroutine (memory.grow runs there) and read after _start returns,
// on the same goroutine, so it needs no lock.
type memoryStats struct {
	limit        uint64 // bytes; grows beyond are refused
	peak         uint64 // largest size handed out
	refusedBytes uint64 // largest size refused because of limit; 0 if none
	err          error  // the OS refused to commit memory
	// restored: the memory was handed out from a snapshot's pool, already
	// holding the snapshot, so the restore need not copy it.
	restored bool
}

// refused reports whether the guest asked for more than its limit, which is
// what turns a later abort into OutcomeMemoryLimit.
func (s *memoryStats) refused() bool { return s != nil && s.refusedBytes > 0 }

func (s *memoryStats) refuse(size uint64) {
	if size > s.refusedBytes {
		s.refusedBytes = size
	}
}

// limitAllocator enforces a per-attempt memory limit. wazero's own
// WithMemoryLimitPages is a Runtime-wide setting applied when a module is
// compiled, and modules are compiled once and shared by every attempt, so the
// per-attempt limit lives in the allocator, which wazero asks for every
// memory.grow (experimental.WithMemoryAllocator is per instantiation).
//
// With a pool (an attempt restored from a snapshot), the memory comes from
// the pool when one is free, and goes back to it when the instance closes.
type limitAllocator struct {
	stats *memoryStats
	pool  *memoryPool
}

// Allocate implements experimental.MemoryAllocator. max is the module's
// declared maximum (or wazero's 4 GiB limit when it declares none, as Go
// guests do); the allocator never hands out more than stats.limit.
func (a limitAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	if a.pool != nil {
		if m := a.pool.take(a.stats); m != nil {
			return m
		}
		// A pooled memory serves attempts of any limit: reserve the
		// module's maximum (address space only).
		return newLinearMemory(max, a.stats, a.pool)
	}
	return newLinearMemory(min(max, a.stats.limit), a.stats, nil)
}
