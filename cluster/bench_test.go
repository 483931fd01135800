package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Benchmarks of the replicated state: the Raft log store alone, Apply on a
// real single-node Raft (loopback transport, real disk under b.TempDir) with
// each log store, and the FSM's ApplyBatch on Badger without Raft. Run with
//
//	go test -run '^$' -bench . -benchmem ./cluster/
//
// docs/BENCHMARKS.md has the figures and the exact command used.

var benchStores = []string{LogStoreBolt, LogStoreWAL}

// benchInput is a task input of about 200 bytes, as a small real one.
var benchInput = json.RawMessage(`{"document":"https://files.example.com/blobs/invoice-000001.pdf","ocr_url":"https://ocr.example.com/v1/ocr","records_url":"https://records.example.com/v1/records","lang":"en"}`)

// benchNode opens a bootstrapped single-node cluster with the given log
// store, waits for leadership and registers an agent so SubmitTask applies.
func benchNode(b *testing.B, store string) *Node {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := DefaultConfig()
	cfg.DataDir, cfg.RaftAddr, cfg.NodeID, cfg.Bootstrap, cfg.LogStore = b.TempDir(), addr, "n1", true, store
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: benchWriter{b}, Level: hclog.Error})
	// Keep the log whole during a run: a snapshot in the middle of the timed
	// loop would measure the snapshot, not Apply.
	cfg.SnapshotThreshold, cfg.SnapshotInterval = 1<<40, time.Hour
	n, err := Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := n.Apply(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: 1}); err != nil {
		b.Fatal(err)
	}
	return n
}

type benchWriter struct{ b *testing.B }

func (w benchWriter) Write(p []byte) (int, error) { w.b.Log(string(p)); return len(p), nil }

func submitCmd(i int64) *SubmitTask {
	return &SubmitTask{Task: Task{ID: fmt.Sprintf("task-%012d", i), Agent: "doc", Version: "v1", Input: benchInput}, Now: 1_000_000 + i}
}

// reportLatency reports p50 and p99 of durs, in µs.
func reportLatency(b *testing.B, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	slices.Sort(durs)
	pct := func(p int) float64 { return float64(durs[(len(durs)-1)*p/100]) / 1e3 }
	b.ReportMetric(pct(50), "p50-µs")
	b.ReportMetric(pct(99), "p99-µs")
}

// BenchmarkRaftApply: Node.Apply of a SubmitTask (one ~400-byte entry, the
// FSM's Badger transaction included) on a single node, per log store.
// "seq" is one applier waiting for each result; "par64" is 64 appliers at
// once, where Raft batches entries into one log write.
func BenchmarkRaftApply(b *testing.B) {
	for _, store := range benchStores {
		b.Run("store="+store+"/seq", func(b *testing.B) {
			benchApplySeq(b, benchNode(b, store))
		})
		b.Run("store="+store+"/par64", func(b *testing.B) {
			benchApplyParallel(b, benchNode(b, store), 64)
		})
	}
}

func benchApplyParallel(b *testing.B, n *Node, appliers int) {
	ctx := context.Background()
	var next atomic.Int64
	lat := make([][]time.Duration, appliers)
	var wg sync.WaitGroup
	errs := make(chan error, appliers)
	b.ResetTimer()
	start := time.Now()
	for g := range appliers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				if _, err := n.Apply(ctx, submitCmd(i)); err != nil {
					errs <- err
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "applies/s")
	reportLatency(b, slices.Concat(lat...))
}

// BenchmarkLogStore: the log store alone, as Raft's leader uses it: one
// StoreLogs of a batch of entries (each ~400 bytes), durable on return.
// batch=1 is a lone applier; batch=64 is what a busy leader hands over
// (raft's MaxAppendEntries).
func BenchmarkLogStore(b *testing.B) {
	data, err := Encode(submitCmd(1))
	if err != nil {
		b.Fatal(err)
	}
	for _, store := range benchStores {
		for _, batch := range []int{1, 64} {
			b.Run(fmt.Sprintf("store=%s/batch=%d", store, batch), func(b *testing.B) {
				s := openBenchStore(b, store)
				logs := make([]*raft.Log, batch)
				for i := range logs {
					logs[i] = &raft.Log{Type: raft.LogCommand, Term: 1, Data: data, AppendedAt: time.Now()}
				}
				idx := uint64(0)
				durs := make([]time.Duration, 0, b.N)
				b.SetBytes(int64(len(data) * batch))
				b.ResetTimer()
				for b.Loop() {
					for _, l := range logs {
						idx++
						l.Index = idx
					}
					t0 := time.Now()
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
					durs = append(durs, time.Since(t0))
				}
				b.StopTimer()
				reportLatency(b, durs)
			})
		}
	}
}

func openBenchStore(b *testing.B, store string) logStore {
	b.Helper()
	s, err := openLogStore(Config{DataDir: b.TempDir(), LogStore: store, Logger: hclog.NewNullLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// BenchmarkFSMApplyBatch: the FSM alone on an on-disk Badger opened as
// Open opens it (SyncWrites off: durability is the Raft log's), applying
// SubmitTask entries in batches. ns/op is per entry.
func BenchmarkFSMApplyBatch(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			dir := b.TempDir()
			db, err := badger.Open(badger.DefaultOptions(filepath.Join(dir, "state")).
				WithLogger(nil).WithSyncWrites(false).
				WithMemTableSize(DefaultConfig().BadgerMemTableSize).
				WithBlockCacheSize(16 << 20).WithNumCompactors(2))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { db.Close() })
			f, err := NewFSM(db, nil)
			if err != nil {
				b.Fatal(err)
			}
			agent, _ := Encode(&PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: 1})
			f.Apply(&raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: agent})
			// Encoding is the proposer's work, not Apply's: done before the clock runs.
			all := make([]*raft.Log, b.N)
			for i := range all {
				data, err := Encode(submitCmd(int64(i + 2)))
				if err != nil {
					b.Fatal(err)
				}
				all[i] = &raft.Log{Index: uint64(i + 2), Term: 1, Type: raft.LogCommand, Data: data}
			}
			b.ResetTimer()
			for len(all) > 0 {
				k := min(batch, len(all))
				for _, r := range f.ApplyBatch(all[:k]) {
					if err, ok := r.(error); ok {
						b.Fatal(err)
					}
				}
				all = all[k:]
			}
		})
	}
}

// TestLogStoreSelection: a data dir keeps the log store it was created with.
// "" picks the existing one (bolt here) and the other kind is refused rather
// than opened empty. (A test among the benchmarks because it guards what the
// benchmarks compare.)
func TestLogStoreSelection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	clock := newFakeClock(time.Unix(1000, 0))
	cfg := testConfig(t, dir, clock)
	cfg.LogStore = LogStoreBolt
	n := openLeader(t, cfg)
	if _, err := n.Apply(context.Background(), &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod")}); err != nil {
		t.Fatal(err)
	}
	applied := n.FSM().AppliedIndex()
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}

	cfg.LogStore, cfg.RaftAddr = LogStoreWAL, freeAddr(t)
	if n, err := Open(cfg); err == nil {
		n.Close()
		t.Fatal("opened a wal log over a bolt data dir")
	} else if !strings.Contains(err.Error(), "bolt") {
		t.Fatalf("error = %v, want it to name the store on disk", err)
	}

	cfg.LogStore = ""
	n = openLeader(t, cfg)
	defer n.Close()
	if _, err := os.Stat(filepath.Join(dir, walDirName)); err == nil {
		t.Fatal("auto selection created a wal next to the bolt log")
	}
	if got := n.FSM().AppliedIndex(); got < applied {
		t.Fatalf("applied index %d after reopening, want >= %d", got, applied)
	}
	if _, err := n.Apply(context.Background(), &SubmitTask{Task: Task{ID: "a", Agent: "doc", Version: "v1"}, Now: 1}); err != nil {
		t.Fatal(err)
	}

	fresh := testConfig(t, t.TempDir(), clock)
	bad := fresh
	bad.LogStore = "sqlite"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "LogStore") {
		t.Fatalf("Validate of an unknown store = %v", err)
	}
	m := openLeader(t, fresh)
	defer m.Close()
	if _, err := os.Stat(filepath.Join(fresh.DataDir, walDirName)); err != nil {
		t.Fatalf("a fresh data dir should get the default (wal) log: %v", err)
	}
}

// BenchmarkClaimAfterHistory measures a claim (FSM only) after many tasks
// have been submitted, claimed and completed: their deleted queue and lease
// keys must not slow the next claim down.
func BenchmarkClaimAfterHistory(b *testing.B) {
	for _, done := range []int{0, 2000, 20000} {
		b.Run(fmt.Sprintf("finished=%d", done), func(b *testing.B) {
			h := newHarness(b)
			h.agent("doc", "v1", "m")
			h.runThrough("old", 0, done)
			b.ResetTimer()
			h.runThrough("new", done, b.N)
		})
	}
}

// BenchmarkRaftApply3: Node.Apply of a SubmitTask on the leader of three
// nodes (WAL store), so every entry is replicated over the cluster port:
// "mtls" is what runs in production, "plaintext" the same transport without
// TLS, to show what mTLS costs on replication.
func BenchmarkRaftApply3(b *testing.B) {
	for _, tr := range []string{"mtls", "plaintext"} {
		b.Run("transport="+tr+"/seq", func(b *testing.B) {
			benchApplySeq(b, bench3Nodes(b, tr == "plaintext"))
		})
		b.Run("transport="+tr+"/par64", func(b *testing.B) {
			benchApplyParallel(b, bench3Nodes(b, tr == "plaintext"), 64)
		})
	}
}

// bench3Nodes starts three nodes, certificates from n1's CA, and returns
// the leader (n1) once both others are voters and caught up.
func bench3Nodes(b *testing.B, plaintext bool) *Node {
	b.Helper()
	logger := hclog.New(&hclog.LoggerOptions{Output: benchWriter{b}, Level: hclog.Error})
	var nodes []*Node
	for i := range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cfg := DefaultConfig()
		cfg.DataDir, cfg.RaftAddr, cfg.NodeID, cfg.Bootstrap = b.TempDir(), addr, fmt.Sprintf("n%d", i+1), i == 0
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 100*time.Millisecond, 100*time.Millisecond, 50*time.Millisecond
		cfg.SnapshotThreshold, cfg.SnapshotInterval = 1<<40, time.Hour
		cfg.Logger, cfg.plaintext = logger, plaintext
		if i > 0 {
			ca := nodes[0].PKI()
			csr, key, err := NewCSR(cfg.NodeID)
			if err != nil {
				b.Fatal(err)
			}
			cert, err := ca.Sign(csr, cfg.NodeID, []string{"127.0.0.1"})
			if err != nil {
				b.Fatal(err)
			}
			if cfg.PKI, err = InstallPKI(cfg.DataDir, cert, key, ca.CAPEM(), ca.CAKeyPEM(), ca.JoinToken().String()); err != nil {
				b.Fatal(err)
			}
		}
		n, err := Open(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
		if i == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := n.WaitLeader(ctx)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			continue
		}
		if err := nodes[0].Raft().AddVoter(raft.ServerID(cfg.NodeID), raft.ServerAddress(addr), 0, 10*time.Second).Error(); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, idx, err := nodes[0].ApplyIndexed(ctx, &PutAgent{Agent: Agent{Name: "doc", Version: "v1"}, Module: []byte("mod"), Now: 1})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range nodes[1:] {
		if err := n.FSM().WaitApplied(ctx, idx); err != nil {
			b.Fatal(err)
		}
	}
	return nodes[0]
}

// benchApplySeq proposes one SubmitTask at a time and reports latency.
func benchApplySeq(b *testing.B, n *Node) {
	ctx := context.Background()
	durs := make([]time.Duration, 0, b.N)
	var i int64
	b.ResetTimer()
	for b.Loop() {
		i++
		start := time.Now()
		if _, err := n.Apply(ctx, submitCmd(i)); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(start))
	}
	b.StopTimer()
	reportLatency(b, durs)
}

// BenchmarkWaiters: 256 waiters, each long-polling a task of its own that
// does not change, while other tasks are submitted, claimed and completed
// (one op = one such task, three entries). wake=all is how a waiter slept
// before WatchTask: woken by every applied batch, it re-reads its task;
// wake=task sleeps on its task's watch. waiter_reads/op counts the reads
// the waiters made; ns/op includes their CPU, which competes with Apply.
func BenchmarkWaiters(b *testing.B) {
	const waiters = 256
	for _, mode := range []string{"all", "task"} {
		b.Run("wake="+mode, func(b *testing.B) {
			h := newHarness(b)
			h.agent("doc", "v1", "m")
			for i := range waiters {
				// Runnable only in the far future: the claims below never take them.
				h.submit(fmt.Sprintf("w-%d", i), RetryPolicy{}, 1<<60)
			}
			var reads atomic.Int64
			stop := make(chan struct{})
			var wg, ready sync.WaitGroup
			for i := range waiters {
				id := fmt.Sprintf("w-%d", i)
				wg.Add(1)
				ready.Add(1)
				go func() {
					defer wg.Done()
					changed := h.fsm.Changed
					if mode == "task" {
						w := h.fsm.WatchTask(id)
						defer w.Stop()
						changed = w.Changed
					}
					for first := true; ; first = false {
						ch := changed()
						if _, err := h.fsm.Task(id); err != nil {
							b.Error(err)
							return
						}
						reads.Add(1)
						if first {
							ready.Done()
						}
						select {
						case <-ch:
						case <-stop:
							return
						}
					}
				}()
			}
			ready.Wait()
			reads.Store(0)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				id := fmt.Sprintf("t-%d", i)
				h.submit(id, RetryPolicy{}, int64(i))
				c := h.claim(int64(i))
				h.ok(&CompleteTask{TaskID: id, Token: c.Lease.Token, Output: []byte("1"), Now: int64(i)})
			}
			b.StopTimer()
			b.ReportMetric(float64(reads.Load())/float64(b.N), "waiter_reads/op")
			close(stop)
			wg.Wait()
		})
	}
}

// BenchmarkPendingEffectsAfterHistory measures the outbox's read of what
// is pending (it runs on every applied batch on the leader) after many
// tasks emitted an effect that was dispatched since, with one pending.
func BenchmarkPendingEffectsAfterHistory(b *testing.B) {
	for _, done := range []int{0, 2000, 20000} {
		b.Run(fmt.Sprintf("finished=%d", done), func(b *testing.B) {
			h := newHarness(b)
			h.agent("doc", "v1", "m")
			fx := []Effect{{Tool: "notify", Params: []byte(`{"text":"done"}`), Key: "k"}}
			for i := 0; i <= done; i++ {
				id := fmt.Sprintf("t-%d", i)
				h.submit(id, RetryPolicy{}, int64(i))
				c := h.claim(int64(i))
				h.ok(&CompleteTask{TaskID: id, Token: c.Lease.Token, Output: []byte("1"), Outbox: fx, Now: int64(i)})
				if i < done {
					h.ok(&MarkEffectDone{TaskID: id, N: 0, Now: int64(i)})
				}
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if p, err := h.fsm.PendingEffects(); err != nil || len(p) != 1 {
					b.Fatalf("pending = %d, %v", len(p), err)
				}
			}
		})
	}
}

// BenchmarkSnapshotPersist streams the state of 5,000 finished tasks (each
// with six recorded calls and its journal) to a discarding sink: what a
// Raft snapshot costs in time and, in B/op, in memory allocated.
func BenchmarkSnapshotPersist(b *testing.B) {
	h := newHarness(b)
	h.agent("doc", "v1", "m")
	result := json.RawMessage(`{"status":200,"body":"` + strings.Repeat("x", 400) + `"}`)
	for i := range 5000 {
		id := fmt.Sprintf("t-%d", i)
		h.submit(id, RetryPolicy{}, int64(i))
		c := h.claim(int64(i))
		for k := range 6 {
			h.ok(&RecordResult{TaskID: id, Token: c.Lease.Token, CallID: fmt.Sprintf("c%d", k), Tool: "http", Status: "ok", Result: result,
				Event: &Event{Type: EventCall}, Now: int64(i)})
		}
		h.ok(&CompleteTask{TaskID: id, Token: c.Lease.Token, Output: []byte(`{"ok":true}`), Now: int64(i)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		snap, err := h.fsm.Snapshot()
		if err != nil {
			b.Fatal(err)
		}
		if err := snap.Persist(discardSink{}); err != nil {
			b.Fatal(err)
		}
		snap.Release()
	}
}

// discardSink is a raft.SnapshotSink that keeps nothing.
type discardSink struct{}

func (discardSink) Write(p []byte) (int, error) { return len(p), nil }
func (discardSink) ID() string                  { return "discard" }
func (discardSink) Cancel() error               { return nil }
func (discardSink) Close() error                { return nil }

// BenchmarkTaskCounts: counting tasks by state after many have finished,
// from the running counts and, for comparison in the same run, by decoding
// every task record as the counts endpoint and the metrics gauges did.
func BenchmarkTaskCounts(b *testing.B) {
	for _, done := range []int{2000, 20000} {
		h := newHarness(b)
		h.agent("doc", "v1", "m")
		h.runThrough("old", 0, done)
		b.Run(fmt.Sprintf("finished=%d/running", done), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if got := h.fsm.TaskCounts("")[StateSucceeded]; got != done {
					b.Fatalf("succeeded = %d, want %d", got, done)
				}
			}
		})
		b.Run(fmt.Sprintf("finished=%d/scan", done), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				ts, err := h.fsm.Tasks(TaskFilter{})
				if err != nil || len(ts) != done {
					b.Fatalf("%d tasks, %v", len(ts), err)
				}
			}
		})
	}
}

// runThrough submits, claims and completes n tasks named prefix-0, ...,
// their clock starting at from.
func (h *harness) runThrough(prefix string, from, n int) {
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		now := int64(from + i)
		h.submit(id, RetryPolicy{}, now)
		c := h.claim(now)
		h.ok(&CompleteTask{TaskID: id, Token: c.Lease.Token, Output: []byte("1"), Now: now})
	}
}

// BenchmarkTaskList is what the console's Tasks page asks on every change:
// the newest 200 tasks, and the newest 200 of one state, after done
// finished tasks.
func BenchmarkTaskList(b *testing.B) {
	for _, done := range []int{2000, 20000} {
		h := newHarness(b)
		h.agent("doc", "v1", "m")
		h.runThrough("old", 0, done)
		for _, c := range []struct {
			name string
			fl   TaskFilter
			want int
		}{
			{"newest200", TaskFilter{Newest: true, Limit: 200}, 200},
			{"oldest200", TaskFilter{Limit: 200}, 200},
			{"queued", TaskFilter{State: StateQueued, Limit: 200}, 0},
		} {
			b.Run(fmt.Sprintf("finished=%d/%s", done, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; i < b.N; i++ {
					ts, err := h.fsm.Tasks(c.fl)
					if err != nil || len(ts) != c.want {
						b.Fatalf("%d tasks, %v", len(ts), err)
					}
				}
			})
		}
	}
}

// BenchmarkLeaseCheck is the check a worker makes before each call it
// invokes: whether its task still holds its lease, by reading the task
// record or from the heads kept in memory.
func BenchmarkLeaseCheck(b *testing.B) {
	h := newHarness(b)
	h.agent("doc", "v1", "m")
	h.runThrough("old", 0, 2000)
	h.submit("live", RetryPolicy{}, 5000)
	c := h.claim(5000)
	b.Run("task-record", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if t, err := h.fsm.Task("live"); err != nil || t.Lease == nil || t.Lease.Token != c.Lease.Token {
				b.Fatal("lease not held", err)
			}
		}
	})
	b.Run("lease-token", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if tok, ok := h.fsm.LeaseToken("live"); !ok || tok != c.Lease.Token {
				b.Fatal("lease not held")
			}
		}
	})
}

// BenchmarkPendingApprovals is what the approval webhook reads on every
// pass: the pending approvals, after decided ones accumulated.
func BenchmarkPendingApprovals(b *testing.B) {
	h := newHarness(b)
	h.agent("doc", "v1", "m")
	const decided = 2000
	for i := range decided + 1 {
		id, now := fmt.Sprintf("t%d", i), int64(i+1)*sec
		h.submit(id, RetryPolicy{}, now)
		c := h.claim(now)
		h.ok(&Suspend{TaskID: id, Token: c.Lease.Token, Wait: Wait{Kind: WaitApproval, CallID: "c" + id, Tool: "pay"}, Params: json.RawMessage(`{}`), Now: now})
		if i < decided {
			h.ok(&DecideApproval{CallID: "c" + id, Approve: true, By: "ana", Now: now})
			c = h.claim(now) // the approved task runs again, and ends
			h.ok(&CompleteTask{TaskID: id, Token: c.Lease.Token, Output: []byte("1"), Now: now})
		}
	}
	b.Run(fmt.Sprintf("decided=%d/mirror", decided), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if list, err := h.fsm.Approvals(false); err != nil || len(list) != 1 {
				b.Fatalf("%d pending, %v", len(list), err)
			}
		}
	})
	b.Run(fmt.Sprintf("decided=%d/scan", decided), func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			list, err := decodeAll[Approval](h.fsm, []byte("ap/"), func(ap *Approval) bool { return ap.State == ApprovalPending })
			if err != nil || len(list) != 1 {
				b.Fatalf("%d pending, %v", len(list), err)
			}
		}
	})
}

// BenchmarkFSMApplyResult: applying a RecordResult, a task's most frequent
// entry (one per call safe to repeat), on every replica. The fencing check
// reads the task; its input here is 1 KiB, with two attempts in its history.
func BenchmarkFSMApplyResult(b *testing.B) {
	h := newHarness(b)
	h.agent("doc", "v1", "m")
	in := json.RawMessage(fmt.Sprintf(`{"doc":%q}`, strings.Repeat("x", 1<<10)))
	h.ok(&SubmitTask{Task: Task{ID: "live", Agent: "doc", Version: "v1", Input: in, Policy: RetryPolicy{MaxAttempts: 5}}, Now: 1})
	c := h.claim(2)
	h.ok(&FailAttempt{TaskID: "live", Token: c.Lease.Token, Error: TaskError{Class: ClassTransient, Message: "boom"}, Now: 3})
	c = h.claim(4 + int64(time.Hour))
	ev := Event{Type: EventCall, Tool: "http", Detail: json.RawMessage(`{"outcome":"invoked","duration_us":120}`)}
	logs := make([]*raft.Log, b.N)
	for i := range logs {
		data, err := marshal(&RecordResult{TaskID: "live", Token: c.Lease.Token, CallID: fmt.Sprintf("call-%08d", i), Tool: "http",
			Status: "ok", Result: json.RawMessage(`{"status":200,"body":"ok"}`), Event: &ev, Now: 5})
		if err != nil {
			b.Fatal(err)
		}
		h.idx++
		logs[i] = &raft.Log{Index: h.idx, Term: 1, Type: raft.LogCommand, Data: data}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for _, l := range logs {
		if err, ok := h.fsm.Apply(l).(error); ok {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeadLetterList is GET /v1/dlq's read: the oldest dead letters up
// to a limit (the API asks one more than it answers), with many in the
// queue.
func BenchmarkDeadLetterList(b *testing.B) {
	h := newHarness(b)
	h.agent("doc", "v1", "m")
	const dead = 5000
	for i := range dead {
		id := fmt.Sprintf("dead-%05d", i)
		h.submit(id, RetryPolicy{}, int64(i))
		c := h.claim(int64(i))
		h.ok(&FailAttempt{TaskID: id, Token: c.Lease.Token, Error: TaskError{Class: ClassPermanent, Message: "no"}, Now: int64(i)})
	}
	for _, limit := range []int{101, 1001} {
		b.Run(fmt.Sprintf("dead=%d/limit=%d", dead, limit), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ts, err := h.fsm.DeadLetters(TaskFilter{Limit: limit})
				if err != nil || len(ts) != limit {
					b.Fatalf("%d dead letters, %v", len(ts), err)
				}
			}
		})
	}
}
