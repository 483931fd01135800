package cluster

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// BenchmarkTenThousandSleepers puts 10,000 tasks to sleep on one node, all
// until the same moment, and reports what they cost while they sleep
// (heap in use, goroutines, the process's CPU per second) and how late the
// leader woke the last of them (every wake is a WakeTask through Raft).
// Run it once: go test -run '^$' -bench TenThousandSleepers -benchtime 1x ./cluster/
func BenchmarkTenThousandSleepers(b *testing.B) {
	const tasks = 10_000
	for range b.N {
		n := benchNode(b, LogStoreWAL)
		ctx := context.Background()
		par := func(f func(i int) error) {
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for w := range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := w; i < tasks; i += 64 {
						if err := f(i); err != nil {
							errs <- err
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
		}
		par(func(i int) error {
			_, err := n.Apply(ctx, &SubmitTask{Task: Task{ID: fmt.Sprintf("s%05d", i), Agent: "doc", Version: "v1", Input: benchInput},
				Now: time.Now().UnixNano()})
			return err
		})
		claims := make([]*Claim, tasks)
		par(func(i int) error {
			r, err := n.Apply(ctx, &ClaimTask{Node: "n1", TTL: 10 * time.Minute, Now: time.Now().UnixNano()})
			if c, ok := r.(*Claim); ok {
				claims[i] = c
			} else if err == nil {
				err = fmt.Errorf("claim %d: nothing runnable", i)
			}
			return err
		})
		until := time.Now().Add(10 * time.Second)
		started := time.Now()
		par(func(i int) error {
			c := claims[i]
			_, err := n.Apply(ctx, &Suspend{TaskID: c.Task.ID, Token: c.Lease.Token,
				Wait: Wait{Kind: WaitSleep, CallID: "sleep", Tool: "orloj.sleep", Until: until.UnixNano()}, Now: time.Now().UnixNano()})
			return err
		})
		suspendTook := time.Since(started)
		if waiting := len(n.fsm.idx.wakes.all()); waiting != tasks || time.Now().After(until.Add(-3*time.Second)) {
			b.Fatalf("%d waiting after %s; the setup must end well before the wake", waiting, suspendTook)
		}

		// While they sleep: a quiet window of 2 s.
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		goroutines := runtime.NumGoroutine()
		rss := rssBytes()
		cpu0, t0 := cpuTime(), time.Now()
		time.Sleep(2 * time.Second) // the window measured, not synchronisation
		cpuPerSec := float64(cpuTime()-cpu0) / float64(time.Since(t0))

		// The wake: poll the wake index until it is empty.
		for len(n.fsm.idx.wakes.all()) > 0 {
			if time.Since(until) > time.Minute {
				b.Fatalf("%d still asleep a minute after their time", len(n.fsm.idx.wakes.all()))
			}
			time.Sleep(5 * time.Millisecond) // a poll interval
		}
		lastLate := time.Since(until)
		if q, _ := n.fsm.Tasks(TaskFilter{State: StateQueued}); len(q) != tasks {
			b.Fatalf("%d queued after the wake, want %d", len(q), tasks)
		}
		b.ReportMetric(float64(lastLate.Milliseconds()), "last-woken-late-ms")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(goroutines), "goroutines")
		b.ReportMetric(float64(rss)/(1<<20), "rss-MiB")
		b.ReportMetric(cpuPerSec*1000, "cpu-ms/s")
		b.ReportMetric(float64(suspendTook.Milliseconds()), "suspend-all-ms")
	}
}

// rssBytes is the process's resident set now (Linux; 0 elsewhere).
func rssBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident int64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * int64(os.Getpagesize())
}

// cpuTime is the process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
