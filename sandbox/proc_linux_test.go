//go:build linux

package sandbox

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

type procStatus struct {
	rss, hwm  uint64 // bytes
	peakReset bool
}

var peakResetWorked bool

// readProcStatus reads VmRSS and VmHWM from /proc/self/status.
func readProcStatus(tb testing.TB) procStatus {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Fatal(err)
	}
	var s procStatus
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			s.rss = kb << 10
		case "VmHWM:":
			s.hwm = kb << 10
		}
	}
	s.peakReset = peakResetWorked
	return s
}

// resetPeakRSS sets VmHWM back to the current RSS (Linux >= 4.0), so a test
// measures its own peak rather than the process's.
func resetPeakRSS(tb testing.TB) {
	peakResetWorked = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// settleHeap returns freed memory to the OS so RSS reflects live memory.
func settleHeap() {
	runtime.GC()
	debug.FreeOSMemory()
}
