//go:build linux

package sandbox

import (
	"context"
	"testing"
	"time"
)

func TestMmapMemory(t *testing.T) {
	stats := &memoryStats{limit: 4 * pageSize}
	mem := limitAllocator{stats: stats}.Allocate(pageSize, 1<<32).(*mmapMemory)
	if got := len(mem.buf); got != 4*pageSize {
		t.Fatalf("reserved %d bytes, want the limit %d", got, 4*pageSize)
	}
	b := mem.Reallocate(pageSize)
	if len(b) != pageSize || cap(b) != pageSize {
		t.Fatalf("len %d cap %d", len(b), cap(b))
	}
	b[pageSize-1] = 1 // committed: writable
	grown := mem.Reallocate(3 * pageSize)
	if &grown[0] != &b[0] {
		t.Error("grow moved the memory")
	}
	if grown[pageSize-1] != 1 {
		t.Error("grow lost contents")
	}
	grown[3*pageSize-1] = 2
	if stats.refused() {
		t.Error("refused within the limit")
	}
	if mem.Reallocate(5*pageSize) != nil {
		t.Fatal("grew beyond the limit")
	}
	if !stats.refused() || stats.refusedBytes != 5*pageSize || stats.peak != 3*pageSize {
		t.Errorf("stats %+v", *stats)
	}
	mem.Free()
	mem.Free() // twice is harmless
	if mem.Reallocate(pageSize) != nil {
		t.Error("Reallocate after Free")
	}

	// A module that declares a smaller maximum reserves only that.
	small := limitAllocator{stats: &memoryStats{limit: 1 << 30}}.Allocate(0, 2*pageSize).(*mmapMemory)
	defer small.Free()
	if len(small.buf) != 2*pageSize {
		t.Errorf("reserved %d, want the declared max %d", len(small.buf), 2*pageSize)
	}
	if b := small.Reallocate(0); b == nil || len(b) != 0 {
		t.Errorf("zero-size memory: %v", b)
	}
}

// TestMemoryBombRSSByAllocator measures host RSS while a Go guest capped at
// 64 MiB bombs memory, with wazero's default linear memory (a Go slice that
// memory.grow reallocates and copies) and with mmapMemory. The numbers are
// logged for the record; TestMemoryBomb enforces the bound for mmapMemory.
func TestMemoryBombRSSByAllocator(t *testing.T) {
	if testing.Short() {
		t.Skip("measurement")
	}
	if raceEnabled {
		t.Skip("the race detector's shadow memory skews RSS")
	}
	const limit = 64 << 20
	wasm := goGuest(t, "memorybomb")
	ctx := context.Background()
	measure := func(name string, opts runtimeOptions) {
		r, err := newRuntime(ctx, Config{}, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close(ctx)
		m := mustCompile(t, r, wasm)
		settleHeap()
		before := readProcStatus(t)
		resetPeakRSS(t)
		res := r.Run(ctx, m, RunConfig{MemoryLimit: limit, Timeout: 30 * time.Second, Dispatcher: NewMemDispatcher(nil, nil)})
		after := readProcStatus(t)
		if res.Outcome != OutcomeMemoryLimit && res.Outcome != OutcomeGuestError {
			t.Errorf("%s: outcome %v: %v", name, res.Outcome, res.Err)
		}
		t.Logf("%-22s outcome %-12v in %8v: host RSS %4d MiB -> peak %4d MiB (growth %4d MiB, cap %d MiB)",
			name, res.Outcome, res.Duration.Round(time.Millisecond), before.rss>>20, after.hwm>>20,
			(int64(after.hwm)-int64(before.rss))>>20, limit>>20)
	}
	measure("mmap allocator", runtimeOptions{})
	measure("wazero default memory", runtimeOptions{wazeroMemory: true, memoryLimitPages: limit / pageSize})
}
