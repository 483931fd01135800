package main

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// procMeter measures a set of process trees from /proc (Linux): the CPU
// they use between the "parallel" and "done" marks, and their peak memory,
// summed over every process of each tree: all of it, and the anonymous part
// alone (the rest is pages of mapped files, such as a store's tables, which
// the kernel may drop and read again). Exited children are counted
// through their parent's cutime and cstime.
type procMeter struct {
	roots []int
	tick  float64 // seconds per clock tick

	mu         sync.Mutex
	start, end float64 // CPU seconds at the marks
	peak       float64 // bytes, proportional set size
	peakAnon   float64 // bytes, anonymous proportional set size
	quit       chan struct{}
	done       chan struct{}
}

func newProcMeter(roots []int) *procMeter {
	m := &procMeter{roots: roots, tick: 1.0 / clockTicks(), quit: make(chan struct{}), done: make(chan struct{})}
	go m.sample()
	return m
}

func clockTicks() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if v, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && v > 0 {
			return v
		}
	}
	return 100
}

func (m *procMeter) sample() {
	defer close(m.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		var pss, anon float64
		for _, pid := range m.tree() {
			p, a := pssBytes(pid)
			pss, anon = pss+p, anon+a
		}
		m.mu.Lock()
		m.peak, m.peakAnon = max(m.peak, pss), max(m.peakAnon, anon)
		m.mu.Unlock()
		select {
		case <-m.quit:
			return
		case <-t.C:
		}
	}
}

func (m *procMeter) stop() {
	select {
	case <-m.quit:
	default:
		close(m.quit)
	}
	<-m.done
}

// mark records the CPU used so far at a phase boundary.
func (m *procMeter) mark(phase string) {
	cpu := m.cpuSeconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	switch phase {
	case "parallel":
		m.start = cpu
	case "done":
		m.end = cpu
	}
}

func (m *procMeter) cpuPerTask(tasks int) float64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tasks == 0 {
		return 0
	}
	return (m.end - m.start) * 1000 / float64(tasks)
}

// peakMiB is the peak of all memory and of anonymous memory.
func (m *procMeter) peakMiB() (all, anon float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.peak / (1 << 20), m.peakAnon / (1 << 20)
}

func (m *procMeter) cpuSeconds() float64 {
	total := 0.0
	for _, pid := range m.tree() {
		total += cpuTicksOf(pid)
	}
	return total * m.tick
}

// tree lists the roots and all their descendants alive now.
func (m *procMeter) tree() []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := statFields(pid); len(f) > 1 {
			if ppid, err := strconv.Atoi(f[1]); err == nil {
				children[ppid] = append(children[ppid], pid)
			}
		}
	}
	var out []int
	queue := append([]int(nil), m.roots...)
	seen := map[int]bool{}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if seen[pid] {
			continue
		}
		seen[pid] = true
		out = append(out, pid)
		queue = append(queue, children[pid]...)
	}
	return out
}

// statFields are /proc/PID/stat's fields after the command name: [0] is
// the state, [1] the parent's pid, [11..14] utime, stime, cutime, cstime.
func statFields(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(b[i+1:]))
}

func cpuTicksOf(pid int) float64 {
	f := statFields(pid)
	if len(f) < 15 {
		return 0
	}
	total := 0.0
	for _, s := range f[11:15] {
		v, _ := strconv.ParseFloat(s, 64)
		total += v
	}
	return total
}

// pssBytes is a process's proportional set size, all and anonymous.
func pssBytes(pid int) (all, anon float64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	kb := func(rest string) float64 {
		v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
		return v * 1024
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Pss:"); ok {
			all = kb(rest)
		} else if rest, ok := strings.CutPrefix(sc.Text(), "Pss_Anon:"); ok {
			anon = kb(rest)
		}
	}
	return all, anon
}
