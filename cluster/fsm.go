package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// txnSoftLimit is how many bytes one Badger transaction collects before the
// FSM commits it and opens another, well under Badger's batch limit.
const txnSoftLimit = 2 << 20

// FSM is the replicated state machine. Raft calls Apply/ApplyBatch from one
// goroutine; reads go straight to Badger and may run concurrently.
type FSM struct {
	db      *badger.DB
	log     hclog.Logger
	idx     *indexes
	applied atomic.Uint64
	// onApply, if set, is told about each applied command (metrics). Atomic
	// because it is installed after Raft has started applying.
	onApply atomic.Pointer[func(MessageType, any)]

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced after every applied batch
}

// Changed returns a channel closed after the next batch of entries is
// applied: workers wait on it for new runnable tasks, waiters for a task's
// end, without polling.
func (f *FSM) Changed() <-chan struct{} {
	f.changedMu.Lock()
	defer f.changedMu.Unlock()
	return f.changed
}

func (f *FSM) broadcast() {
	f.changedMu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.changedMu.Unlock()
}

var _ raft.BatchingFSM = (*FSM)(nil)

// NewFSM wraps an open Badger database.
func NewFSM(db *badger.DB, logger hclog.Logger) (*FSM, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	f := &FSM{db: db, log: logger.Named("fsm"), changed: make(chan struct{}), idx: newIndexes()}
	err := db.View(func(txn *badger.Txn) error {
		b, ok, err := getRaw(txn, keyApplied)
		if ok {
			f.applied.Store(u64(b))
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("read applied index: %w", err)
	}
	if err := f.idx.rebuild(db); err != nil {
		return nil, fmt.Errorf("index runnable tasks and leases: %w", err)
	}
	return f, nil
}

// SetObserver installs fn to hear every applied command and its response (an
// error for a rejected one); nil removes it. fn runs on Raft's apply goroutine
// inside the apply loop, so it must be quick and must not block or propose.
func (f *FSM) SetObserver(fn func(MessageType, any)) {
	if fn == nil {
		f.onApply.Store(nil)
		return
	}
	f.onApply.Store(&fn)
}

// AppliedIndex is the last Raft index whose effects are in Badger.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Apply implements raft.FSM.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: a batch shares Badger transactions,
// and each transaction also records the index of the last entry it holds.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	resps := make([]any, len(logs))
	t := &tx{txn: f.db.NewTransaction(true), idx: f.idx}
	defer func() { t.txn.Discard() }()
	last := f.applied.Load()
	for i, l := range logs {
		if l.Index <= last {
			continue // already in Badger: a replay after restart
		}
		if l.Type == raft.LogCommand {
			resps[i] = f.applyOne(t, l)
		}
		last = l.Index
		t.putRaw(keyApplied, putU64(last))
		if t.err == nil && t.size > txnSoftLimit {
			f.commit(t, last)
			t.txn = f.db.NewTransaction(true)
			t.size = 0
		}
	}
	f.commit(t, last)
	f.broadcast()
	return resps
}

func (f *FSM) commit(t *tx, last uint64) {
	if t.err == nil {
		t.err = t.txn.Commit()
	}
	if t.err != nil {
		// The state on disk no longer follows the log; continuing would make
		// this replica diverge. Stop, as raft does on a log store failure.
		f.log.Error("commit FSM transaction", "index", last, "error", t.err)
		panic(fmt.Sprintf("orloj fsm: commit at index %d: %v", last, t.err))
	}
	f.applied.Store(last)
}

func (f *FSM) applyOne(t *tx, l *raft.Log) any {
	cmd, ok, err := decode(l.Data)
	if err != nil {
		f.log.Error("undecodable entry", "index", l.Index, "error", err)
		return err
	}
	if !ok {
		f.log.Warn("ignoring unknown command", "index", l.Index, "type", MessageType(l.Data[0]))
		return nil
	}
	a := &applier{tx: t, idx: l.Index}
	resp := a.apply(cmd)
	if t.err != nil {
		return t.err
	}
	if fn := f.onApply.Load(); fn != nil {
		(*fn)(cmd.messageType(), resp)
	}
	return resp
}

// tx wraps a Badger transaction, keeping the first error and a size estimate
// so apply functions read as straight-line code.
type tx struct {
	txn  *badger.Txn
	size int
	err  error
	idx  *indexes // nil in read-only views
}

func getRaw(txn *badger.Txn, key []byte) ([]byte, bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, err == nil, err
}

func (t *tx) getRaw(key []byte) ([]byte, bool) {
	if t.err != nil {
		return nil, false
	}
	v, ok, err := getRaw(t.txn, key)
	if err != nil {
		t.err = err
	}
	return v, ok
}

func (t *tx) get(key []byte, v any) bool {
	b, ok := t.getRaw(key)
	if !ok {
		return false
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.err = fmt.Errorf("decode %q: %w", key, err)
		return false
	}
	return true
}

func (t *tx) putRaw(key, val []byte) {
	if t.err != nil {
		return
	}
	t.size += len(key) + len(val) + 32
	if t.err = t.txn.Set(key, val); t.err == nil {
		t.idx.written(key, false)
	}
}

func (t *tx) put(key []byte, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		t.err = fmt.Errorf("encode %q: %w", key, err)
		return
	}
	t.putRaw(key, b)
}

func (t *tx) del(key []byte) {
	if t.err != nil {
		return
	}
	t.size += len(key) + 32
	if t.err = t.txn.Delete(key); t.err == nil {
		t.idx.written(key, true)
	}
}

// keys returns the keys under prefix, in order (limit 0 = all).
func (t *tx) keys(prefix []byte, limit int) [][]byte {
	if t.err != nil {
		return nil
	}
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	opts.Prefix = prefix
	it := t.txn.NewIterator(opts)
	defer it.Close()
	var out [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		out = append(out, it.Item().KeyCopy(nil))
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out
}
