package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// Raft log stores Config.LogStore selects. See docs/RATIONALE.md ("Raft log
// store") and docs/BENCHMARKS.md for why the WAL is the default.
const (
	LogStoreWAL  = "wal"  // hashicorp/raft-wal: segment files, one fsync per append
	LogStoreBolt = "bolt" // hashicorp/raft-boltdb/v2: a B+tree, two fsyncs per append
)

// Where each store keeps the log below DataDir.
const (
	walDirName = "raft-wal"
	boltDBName = "raft.db"
)

// Config configures one node. DefaultConfig fills what a single node needs.
type Config struct {
	NodeID   string // unique and stable; defaults to the Raft address
	DataDir  string // raft log, snapshots and FSM state live below it
	RaftAddr string // host:port the Raft transport binds and advertises
	// Bootstrap makes a fresh node (no Raft state on disk) the only member of
	// a new cluster. A node that already has state ignores it.
	Bootstrap bool
	// LogStore is the Raft log and stable store: LogStoreWAL or LogStoreBolt.
	// Empty means whichever one DataDir already holds, else LogStoreWAL. A
	// data dir keeps the store it was created with: asking for the other one
	// is an error, not a silently empty log.
	LogStore string

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	SnapshotInterval   time.Duration
	SnapshotThreshold  uint64
	TrailingLogs       uint64

	// ApplyTimeout bounds a proposal when the caller's context has no deadline.
	ApplyTimeout time.Duration
	// ExpiryInterval is how often the leader looks for expired leases.
	ExpiryInterval time.Duration
	// Retention is how long a finished task (succeeded, cancelled,
	// discarded) is kept after it ended; then the leader compacts it away
	// with its ledger, journal and outbox. 0 keeps finished tasks forever.
	// Dead letters are kept until a person acts on them.
	Retention time.Duration
	// Clock supplies "now" for commands this node proposes itself.
	Clock  func() time.Time
	Logger hclog.Logger
	// Dial, if set, opens this node's outbound Raft connections (fault
	// tests route them through proxies); nil dials TCP directly.
	Dial func(addr string, timeout time.Duration) (net.Conn, error)
	// PKI is this node's cluster credentials: Raft and the internal HTTP
	// side of the cluster port are mTLS against its CA. nil loads them
	// from DataDir, creating a new CA there when Bootstrap is set and
	// there is none; a node that does not bootstrap must have joined
	// (host's join) to hold one.
	PKI *PKI
	// plaintext turns mTLS off, for A/B benchmarks only: nothing but this
	// package's tests and a build tag no release uses
	// (plaintext_bench.go) can set it.
	plaintext bool
	// History, if set, records the lease commands this node's leader loop
	// proposes (expiries) for linearizability checks.
	History *History
	// BadgerMemTableSize is Badger's memtable size. It also sets the largest
	// Badger transaction (15% of it), so it may not go below
	// MinBadgerMemTableSize: one entry at the FSM's write limit must fit.
	BadgerMemTableSize int64
}

// DefaultConfig returns timeouts chosen for a loaded 2-core machine: a leader
// loss is noticed within about a second without flapping under load.
func DefaultConfig() Config {
	return Config{
		DataDir:            "orloj-data",
		RaftAddr:           "127.0.0.1:7071",
		HeartbeatTimeout:   500 * time.Millisecond,
		ElectionTimeout:    500 * time.Millisecond,
		LeaderLeaseTimeout: 250 * time.Millisecond,
		CommitTimeout:      5 * time.Millisecond,
		SnapshotInterval:   2 * time.Minute,
		SnapshotThreshold:  8192,
		TrailingLogs:       10240,
		ApplyTimeout:       10 * time.Second,
		ExpiryInterval:     200 * time.Millisecond,
		Retention:          DefaultRetention,
		Clock:              time.Now,
		BadgerMemTableSize: 32 << 20,
	}
}

// Validate reports the first bad field by name.
func (c Config) Validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("cluster config: DataDir is empty")
	case c.RaftAddr == "":
		return errors.New("cluster config: RaftAddr is empty")
	case c.HeartbeatTimeout < 5*time.Millisecond:
		return fmt.Errorf("cluster config: HeartbeatTimeout %s is below 5ms", c.HeartbeatTimeout)
	case c.ElectionTimeout < c.HeartbeatTimeout:
		return fmt.Errorf("cluster config: ElectionTimeout %s is below HeartbeatTimeout %s", c.ElectionTimeout, c.HeartbeatTimeout)
	case c.LeaderLeaseTimeout <= 0 || c.LeaderLeaseTimeout > c.HeartbeatTimeout:
		return fmt.Errorf("cluster config: LeaderLeaseTimeout %s must be in (0, HeartbeatTimeout]", c.LeaderLeaseTimeout)
	case c.ApplyTimeout <= 0:
		return errors.New("cluster config: ApplyTimeout must be positive")
	case c.ExpiryInterval <= 0:
		return errors.New("cluster config: ExpiryInterval must be positive")
	case c.Retention < 0:
		return fmt.Errorf("cluster config: Retention %s is negative (0 keeps finished tasks forever)", c.Retention)
	case c.Clock == nil:
		return errors.New("cluster config: Clock is nil")
	case c.BadgerMemTableSize < MinBadgerMemTableSize:
		return fmt.Errorf("cluster config: BadgerMemTableSize %d is below %d (MinBadgerMemTableSize): the FSM's largest entry must fit one Badger transaction", c.BadgerMemTableSize, MinBadgerMemTableSize)
	case c.LogStore != "" && c.LogStore != LogStoreWAL && c.LogStore != LogStoreBolt:
		return fmt.Errorf("cluster config: LogStore %q is neither %q nor %q", c.LogStore, LogStoreWAL, LogStoreBolt)
	}
	if _, _, err := net.SplitHostPort(c.RaftAddr); err != nil {
		return fmt.Errorf("cluster config: RaftAddr %q: %w", c.RaftAddr, err)
	}
	return nil
}

// Node is one Raft member and its FSM.
type Node struct {
	cfg       Config
	log       hclog.Logger
	raft      *raft.Raft
	fsm       *FSM
	db        *badger.DB
	logStore  logStore
	transport transport
	mux       *mux // nil on an in-memory node

	leaderMu  sync.Mutex
	leaderGen uint64 // bumped on each change, so waiters notice flaps
	isLeader  bool
	ready     chan struct{} // closed once this leader has extended live leases
	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	hadState  bool
}

// HadState reports whether the node found Raft state on disk when it opened
// (false for a node that has never been part of a cluster).
func (n *Node) HadState() bool { return n.hadState }

// Open starts a node: stores, FSM, transport and Raft.
func Open(cfg Config) (*Node, error) {
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.RaftAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.Named("cluster"), stop: make(chan struct{}), ready: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	var err error
	if n.db, err = badger.Open(badgerOptions(filepath.Join(cfg.DataDir, "state"), cfg)); err != nil {
		return nil, fmt.Errorf("open state store: %w", err)
	}
	if n.fsm, err = NewFSM(n.db, cfg.Logger); err != nil {
		return nil, err
	}
	if n.logStore, err = openLogStore(cfg); err != nil {
		return nil, err
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(cfg.DataDir, "snapshots"), 2, cfg.Logger.Named("snapshots"))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	if cfg.PKI == nil {
		if cfg.PKI, err = openPKI(cfg); err != nil {
			return nil, err
		}
		n.cfg.PKI = cfg.PKI
	}
	// Assigned only on success: a failed transport is a typed nil, and
	// closeStores would call Close on it.
	transport, mux, err := newTransport(cfg)
	if err != nil {
		return nil, err
	}
	n.transport, n.mux = transport, mux
	if err := n.startRaft(snaps, nil); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

// startRaft starts Raft and the leader loop on the node's stores and
// transport, bootstrapping if asked (with voters, or itself alone when
// voters is empty): the part of opening a node that disk and in-memory nodes
// (OpenInMemory) share. On error the caller closes the stores.
func (n *Node) startRaft(snaps raft.SnapshotStore, voters []raft.Server) error {
	cfg := n.cfg
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.NodeID)
	rc.Logger = cfg.Logger.Named("raft")
	rc.HeartbeatTimeout, rc.ElectionTimeout = cfg.HeartbeatTimeout, cfg.ElectionTimeout
	rc.LeaderLeaseTimeout, rc.CommitTimeout = cfg.LeaderLeaseTimeout, cfg.CommitTimeout
	rc.SnapshotInterval, rc.SnapshotThreshold = cfg.SnapshotInterval, cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.BatchApplyCh = true
	// FSM state is already in Badger at AppliedIndex; restoring the snapshot on
	// every start would throw it away and rebuild it.
	rc.NoSnapshotRestoreOnStart = true
	notify := make(chan bool, 16)
	rc.NotifyCh = notify

	hasState, err := raft.HasExistingState(n.logStore, n.logStore, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	n.hadState = hasState
	if n.raft, err = raft.NewRaft(rc, n.fsm, n.logStore, n.logStore, snaps, n.transport); err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	if cfg.Bootstrap && !hasState {
		if len(voters) == 0 {
			voters = []raft.Server{{ID: rc.LocalID, Address: n.transport.LocalAddr()}}
		}
		conf := raft.Configuration{Servers: voters}
		if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
			_ = n.raft.Shutdown().Error()
			return fmt.Errorf("bootstrap: %w", err)
		}
	}
	n.wg.Add(1)
	go n.leaderLoop(notify)
	return nil
}

// openPKI loads the node's credentials from the data dir, or creates a
// cluster CA there for a node that bootstraps.
func openPKI(cfg Config) (*PKI, error) {
	p, err := LoadPKI(cfg.DataDir)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, ErrNoPKI) && cfg.Bootstrap:
		if p, err = BootstrapPKI(cfg.DataDir, cfg.NodeID, []string{cfg.RaftAddr}); err != nil {
			return nil, fmt.Errorf("create cluster CA: %w", err)
		}
		return p, nil
	case errors.Is(err, ErrNoPKI):
		return nil, fmt.Errorf("%w: a node that does not bootstrap gets one by joining with a join token", err)
	}
	return nil, fmt.Errorf("load cluster credentials: %w", err)
}

// logStore is what Raft needs from its log and stable store, and Close.
type logStore interface {
	raft.LogStore
	raft.StableStore
	Close() error
}

// openLogStore opens the configured Raft log store, refusing to open one kind
// over a data dir that holds the other.
func openLogStore(cfg Config) (logStore, error) {
	walDir, boltPath := filepath.Join(cfg.DataDir, walDirName), filepath.Join(cfg.DataDir, boltDBName)
	hasWAL, hasBolt := exists(walDir), exists(boltPath)
	kind := cfg.LogStore
	switch {
	case kind == "" && hasBolt && !hasWAL:
		kind = LogStoreBolt
	case kind == "":
		kind = LogStoreWAL
	case kind == LogStoreWAL && hasBolt:
		return nil, fmt.Errorf("open raft log: LogStore %q, but %s holds a %q log (%s)", kind, cfg.DataDir, LogStoreBolt, boltPath)
	case kind == LogStoreBolt && hasWAL:
		return nil, fmt.Errorf("open raft log: LogStore %q, but %s holds a %q log (%s)", kind, cfg.DataDir, LogStoreWAL, walDir)
	}
	if kind == LogStoreBolt {
		s, err := raftboltdb.NewBoltStore(boltPath)
		if err != nil {
			return nil, fmt.Errorf("open raft log %s: %w", boltPath, err)
		}
		return s, nil
	}
	if err := os.MkdirAll(walDir, 0o700); err != nil {
		return nil, fmt.Errorf("create raft log dir: %w", err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := raftwal.Open(walDir, raftwal.WithLogger(cfg.Logger.Named("wal")), raftwal.WithMetaStore(meta))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("open raft log %s: %w", walDir, err)
	}
	return walStore{w, meta}, nil
}

// walStore closes the WAL's meta store too: raft-wal v0.4.x's Close leaves
// it open, and its file lock then blocks the next Open in this process.
type walStore struct {
	*raftwal.WAL
	meta *metadb.BoltMetaDB
}

func (s walStore) Close() error { return errors.Join(s.WAL.Close(), s.meta.Close()) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// InternalListener is the internal HTTP side of the cluster port: each
// connection it returns is TLS, its peer certificate (if any) verified
// against the cluster CA. Closing it closes the cluster port. An in-memory
// node (OpenInMemory) has no cluster port: nil.
func (n *Node) InternalListener() net.Listener {
	if n.mux == nil {
		return nil
	}
	return n.mux.http
}

// PKI is this node's cluster credentials.
func (n *Node) PKI() *PKI { return n.cfg.PKI }

// RaftAddr is the address this node's cluster port listens on.
func (n *Node) RaftAddr() string { return string(n.transport.LocalAddr()) }

// FSM returns the state machine, for local reads.
func (n *Node) FSM() *FSM { return n.fsm }

// ID is this node's Raft server ID.
func (n *Node) ID() string { return n.cfg.NodeID }

// History is the lease-operation recorder, nil unless configured.
func (n *Node) History() *History { return n.cfg.History }

// Raft exposes the underlying raft, for tests and benchmarks that inspect
// it (log indexes, the raw configuration). Code that changes or reads
// membership uses the methods of membership.go, whose contracts say what
// is refused.
func (n *Node) Raft() *raft.Raft { return n.raft }

// Apply proposes a command and waits until this node has applied it. FSM
// rejections come back as errors (ErrStaleToken, ErrNotFound, ...).
func (n *Node) Apply(ctx context.Context, cmd Command) (any, error) {
	r, _, err := n.ApplyIndexed(ctx, cmd)
	return r, err
}

// IsLeader reports whether this node leads and has finished taking over (live
// leases extended).
func (n *Node) IsLeader() bool {
	n.leaderMu.Lock()
	defer n.leaderMu.Unlock()
	if !n.isLeader {
		return false
	}
	select {
	case <-n.ready:
		return true
	default:
		return false
	}
}

// WaitLeader blocks until this node leads and is ready, or ctx ends.
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for !n.IsLeader() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for leadership: %w", ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// Barrier waits until every entry committed before it is applied here.
func (n *Node) Barrier(ctx context.Context) error {
	timeout := n.cfg.ApplyTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	f := n.raft.Barrier(timeout)
	// raft answers a barrier it has queued only if its loop reads it: one
	// queued as the node lost leadership and shut down is never answered,
	// and waiting on it held Close forever. The caller's context and Close
	// bound the wait (the goroutine left behind ends with the process).
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("barrier: %w", ctx.Err())
	case <-n.stop:
		return fmt.Errorf("barrier: %w", raft.ErrRaftShutdown)
	}
}

// Close stops Raft and closes the transport and stores (raft.Shutdown closes
// neither). Safe to call twice.
func (n *Node) Close() error {
	var err error
	n.closeOnce.Do(func() {
		close(n.stop)
		if n.raft != nil {
			if err = n.shutdownRaft(raftShutdownWait); err != nil {
				// Raft's goroutines may still use the stores: leave them
				// open rather than pull them from under a running Raft.
				return
			}
		}
		n.wg.Wait()
		if cerr := n.closeStores(); err == nil {
			err = cerr
		}
	})
	return err
}

// ErrShutdownStuck is Close's answer when Raft did not stop in time.
var ErrShutdownStuck = errors.New("raft did not stop")

// raftShutdownWait bounds waiting for Raft's goroutines at Close: a node
// that stops must stop, and a stuck one must say where it is stuck.
const raftShutdownWait = 30 * time.Second

// shutdownRaft stops Raft and waits at most d for its goroutines; past d it
// logs their stacks and returns ErrShutdownStuck.
func (n *Node) shutdownRaft(d time.Duration) error {
	done := make(chan error, 1)
	f := n.raft.Shutdown()
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
	}
	n.log.Error("raft did not stop; leaving its stores open", "waited", d, "raft_goroutines", raftStacks())
	return fmt.Errorf("node %s: %w within %s", n.cfg.NodeID, ErrShutdownStuck, d)
}

// raftStacks is the stacks of the process's goroutines that are in Raft
// code, for the log of a stuck shutdown.
func raftStacks() string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var keep []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "hashicorp/raft") {
			keep = append(keep, g)
		}
	}
	return strings.Join(keep, "\n\n")
}

// badgerOptions is the state store's tuning, shared by the on-disk node
// and its in-memory twin (dir ""), so both behave alike.
func badgerOptions(dir string, cfg Config) badger.Options {
	return badger.DefaultOptions(dir).
		WithInMemory(dir == "").
		WithLogger(badgerLogger{cfg.Logger.Named("badger")}).
		WithSyncWrites(false). // durability comes from the Raft log; see Snapshot
		WithMemTableSize(cfg.BadgerMemTableSize).
		// Two memtables, the one written and the one being flushed: each
		// is an arena of about 1.3 memtable sizes, and Badger's five by
		// default held 200 MiB for a workload whose flushes keep up.
		WithNumMemtables(2).
		// Uncompressed tables: Snappy cost CPU on every flush, compaction
		// and read, and its buffers were the node's largest allocations
		// (docs/RATIONALE.md, "The state store's tuning").
		WithCompression(options.None).
		WithBlockCacheSize(16 << 20).
		WithNumCompactors(2)
}

func (n *Node) closeStores() error {
	var errs []error
	if n.transport != nil {
		errs = append(errs, n.transport.Close())
	}
	if n.logStore != nil {
		errs = append(errs, n.logStore.Close())
	}
	if n.db != nil {
		errs = append(errs, n.db.Close())
	}
	return errors.Join(errs...)
}

// badgerLogger routes Badger's printf logging into hclog.
type badgerLogger struct{ l hclog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(line(f, a)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(line(f, a)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.l.Debug(line(f, a)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.l.Trace(line(f, a)) }

func line(f string, a []any) string { return strings.TrimSpace(fmt.Sprintf(f, a...)) }
