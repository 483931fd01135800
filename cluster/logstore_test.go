package cluster

import (
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// A follower that loses an election truncates its log's tail (raft's
// "clearing log suffix") and may then be killed. Restarting must read the
// log back. raft-wal before v0.4.1 sealed the tail segment without an index
// block here and panicked on the next start ("sealed segment has no index
// block"); the fault harness found it.
func TestLogStoreSurvivesTailTruncationAndRestart(t *testing.T) {
	for _, kind := range []string{LogStoreWAL, LogStoreBolt} {
		t.Run(kind, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), LogStore: kind, Logger: hclog.NewNullLogger()}
			s, err := openLogStore(cfg)
			if err != nil {
				t.Fatal(err)
			}
			store := func(from, to uint64) {
				var logs []*raft.Log
				for i := from; i <= to; i++ {
					logs = append(logs, &raft.Log{Index: i, Term: 1, Data: []byte{byte(i)}})
				}
				if err := s.StoreLogs(logs); err != nil {
					t.Fatal(err)
				}
			}
			store(1, 10)
			if err := s.DeleteRange(8, 10); err != nil { // the suffix a new leader overrides
				t.Fatal(err)
			}
			store(8, 12) // the new leader's entries
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if s, err = openLogStore(cfg); err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for i := uint64(1); i <= 12; i++ {
				var l raft.Log
				if err := s.GetLog(i, &l); err != nil || l.Index != i || l.Data[0] != byte(i) {
					t.Fatalf("after restart, log %d = %+v, %v", i, l, err)
				}
			}
			if last, err := s.LastIndex(); err != nil || last != 12 {
				t.Fatalf("last index after restart = %d, %v; want 12", last, err)
			}
		})
	}
}
