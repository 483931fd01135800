package cluster

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// InMemory is what an in-memory node runs on in place of a data dir and a
// cluster port. Package clustertest builds these; use it rather than this.
type InMemory struct {
	// Transport carries this node's Raft RPCs; Connect it to its peers'
	// transports. Its address is the node's RaftAddr.
	Transport *raft.InmemTransport
	// Voters, when Config.Bootstrap is set, is the configuration the node
	// bootstraps: every voter of the new cluster, itself included (as
	// hashicorp/raft's own test clusters do). Empty: itself alone.
	Voters []raft.Server
	// StateDir, if set, puts the state store (Badger) on disk there instead
	// of in memory, where Badger refuses any value over 1 MiB: a task
	// record holds its input and output, which a node takes larger. The
	// caller owns the directory and removes it after Close.
	StateDir string
}

// OpenInMemory starts a node whose every store is in memory: Badger in its
// in-memory mode, raft's InmemStore for the log and stable store,
// InmemSnapshotStore for snapshots, and mem.Transport for Raft. The FSM,
// the Apply path and the leader's duties are those of Open. It is for tests:
// a node loses everything when closed, and cannot reopen.
//
// There is no cluster port, so no mTLS and no internal HTTP side:
// InternalListener and PKI return nil. cfg's DataDir, RaftAddr, LogStore,
// Dial and PKI are ignored; the rest is checked as Open checks it.
func OpenInMemory(cfg Config, mem InMemory) (*Node, error) {
	if mem.Transport == nil {
		return nil, errors.New("open in-memory node: no transport")
	}
	cfg.RaftAddr = string(mem.Transport.LocalAddr())
	cfg.DataDir, cfg.LogStore, cfg.Dial, cfg.PKI = "", "", nil, nil
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.RaftAddr
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	// Validate's checks of DataDir and RaftAddr (a host:port) are the disk
	// and TCP node's: stand in values that pass them.
	check := cfg
	check.DataDir, check.RaftAddr = "(memory)", "memory:0"
	if err := check.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.Named("cluster"), stop: make(chan struct{}), ready: make(chan struct{}),
		transport: mem.Transport, logStore: memLogStore{raft.NewInmemStore()}}
	ok := false
	defer func() {
		if !ok {
			n.closeStores()
		}
	}()
	var err error
	if n.db, err = badger.Open(badgerOptions(mem.StateDir, cfg)); err != nil {
		return nil, fmt.Errorf("open in-memory node's state store: %w", err)
	}
	if n.fsm, err = NewFSM(n.db, cfg.Logger); err != nil {
		return nil, err
	}
	if err := n.startRaft(raft.NewInmemSnapshotStore(), mem.Voters); err != nil {
		return nil, err
	}
	ok = true
	return n, nil
}

// memLogStore gives raft's InmemStore the Close a node's log store has.
type memLogStore struct{ *raft.InmemStore }

func (memLogStore) Close() error { return nil }
