//go:build !linux

package sandbox

import "testing"

type procStatus struct {
	rss, hwm  uint64
	peakReset bool
}

func readProcStatus(tb testing.TB) procStatus { tb.Skip("needs /proc"); return procStatus{} }
func resetPeakRSS(testing.TB)                 {}
func settleHeap()                             {}
