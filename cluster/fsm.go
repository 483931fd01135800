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

// Write limits. Badger refuses a transaction (ErrTxnTooBig, on the write
// that crosses) past maxBatchSize = 15% of its MemTableSize, counted as
// len(key)+len(value)+12 per write (len(key)+24 for a value past the 1 MiB
// value threshold), or past maxBatchCount = maxBatchSize/96 writes (badger
// v4 db.go, txn.go checkSize). The FSM counts every write as
// len(key)+len(value)+writeOverhead and one op, never less than Badger
// does, and keeps each transaction under both:
//
//   - one entry may write at most entryMaxBytes and entryMaxOps; an entry
//     that would write more is refused (ErrTooLarge) and rolled back;
//   - a transaction shared by several entries is committed as soon as it
//     passes txnCommitBytes or txnCommitOps, so before an entry starts the
//     transaction holds less than that.
//
// So a transaction never holds more than txnCommitBytes+entryMaxBytes (plus
// an applied index per entry), which MinBadgerMemTableSize guarantees Badger
// takes. The limits are constants, not derived from the memtable, so every
// replica refuses the same entries whatever its Badger settings.
const (
	writeOverhead  = 32
	entryMaxBytes  = 4 << 20
	entryMaxOps    = 20_000
	txnCommitBytes = 512 << 10
	txnCommitOps   = 4_000
	// appliedSlack covers the applied-index write after each entry.
	appliedSlack = 64

	// MinBadgerMemTableSize is the smallest Config.BadgerMemTableSize
	// whose Badger transactions hold a full shared transaction plus one
	// entry at the per-entry limit: 15% of 32 MiB is 5,033,164 bytes
	// against the 4,718,656 needed, and 52,428 writes against 24,001.
	MinBadgerMemTableSize = 32 << 20
)

// writeLimits are the limits above; tests lower them to reach the rollback
// with small entries.
type writeLimits struct {
	entryBytes, entryOps   int
	commitBytes, commitOps int
	compactOps             int // deletes per CompactTasks entry
}

var defaultWriteLimits = writeLimits{entryBytes: entryMaxBytes, entryOps: entryMaxOps, commitBytes: txnCommitBytes, commitOps: txnCommitOps,
	compactOps: compactOpsPerEntry}

// FSM is the replicated state machine. Raft calls Apply/ApplyBatch from one
// goroutine; reads go straight to Badger and may run concurrently.
type FSM struct {
	db  *badger.DB
	log hclog.Logger
	idx *indexes
	lim writeLimits
	// txnTooBig counts shared transactions Badger refused though the
	// write limits should prevent it (tests assert none).
	txnTooBig atomic.Uint64
	applied   atomic.Uint64
	// onApply, if set, is told about each applied command (metrics). Atomic
	// because it is installed after Raft has started applying.
	onApply atomic.Pointer[func(MessageType, any)]

	changedMu sync.Mutex
	changed   chan struct{} // closed and replaced after every applied batch
	watches   *taskWatches  // per-task wake-ups (watch.go)

	states stateListeners // task state changes (feed.go)
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
	f := &FSM{db: db, log: logger.Named("fsm"), changed: make(chan struct{}), watches: newTaskWatches(), idx: newIndexes(), lim: defaultWriteLimits}
	if err := checkBadgerLimits(db, f.lim); err != nil {
		return nil, err
	}
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

// checkBadgerLimits refuses a Badger whose transactions are too small for
// the FSM's write limits (a MemTableSize below MinBadgerMemTableSize).
func checkBadgerLimits(db *badger.DB, lim writeLimits) error {
	needBytes := int64(lim.commitBytes + lim.entryBytes + appliedSlack)
	needOps := int64(lim.commitOps + lim.entryOps + 1)
	if db.MaxBatchSize() <= needBytes || db.MaxBatchCount() <= needOps {
		return fmt.Errorf("state store: a Badger transaction holds %d bytes and %d writes, the FSM needs %d and %d: use a MemTableSize of at least %d",
			db.MaxBatchSize(), db.MaxBatchCount(), needBytes, needOps, MinBadgerMemTableSize)
	}
	return nil
}

// SetObserver installs fn to hear every applied command and its response (an
// error for a rejected or refused one) once, after the transaction holding
// it has committed; nil removes it. fn runs on Raft's apply goroutine inside
// the apply loop, so it must be quick and must not block or propose.
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
//
// No entry can make it fail: an entry that writes more than one entry may
// (or that Badger refuses to write) is rolled back and refused with
// ErrTooLarge, the same way on every replica, and the batch goes on. Only
// a store failure (a read or a commit) stops the node.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	resps := make([]any, len(logs))
	t := f.newTx()
	defer func() { t.txn.Discard() }()
	last := f.applied.Load()
	var pending []int // entries of logs applied into t, not yet committed
	for i, l := range logs {
		if l.Index <= last {
			continue // already in Badger: a replay after restart
		}
		resps[i] = f.applyEntry(t, l)
		if t.refused {
			t = f.refuse(t, logs, pending, i, resps)
			pending = pending[:0]
		}
		last = l.Index
		t.putApplied(last)
		pending = append(pending, i)
		if t.err == nil && (t.size >= t.lim.commitBytes || t.ops >= t.lim.commitOps) {
			f.commit(t, last)
			t = f.newTx()
			pending = pending[:0]
		}
	}
	f.commit(t, last)
	f.broadcast()
	return resps
}

func (f *FSM) newTx() *tx {
	t := &tx{txn: f.db.NewTransaction(true), idx: f.idx, lim: &f.lim}
	if f.states.on.Load() {
		t.states = map[string]TaskState{}
	}
	return t
}

// applyEntry applies one log entry into t, counting its writes afresh.
func (f *FSM) applyEntry(t *tx, l *raft.Log) any {
	t.entrySize, t.entryOps = 0, 0
	t.index, t.entryChanges = l.Index, 0
	if l.Type != raft.LogCommand {
		return nil
	}
	return f.applyOne(t, l)
}

// refuse handles the entry logs[i] that t could not hold: it rolls t back
// to the entries before it (committing them), records the refusal as the
// entry's response, and returns the transaction to go on with. Badger's own
// ErrTxnTooBig counts the whole shared transaction, so before refusing on
// it the entry is tried alone: whether an entry is refused must not depend
// on how Raft happened to batch it.
func (f *FSM) refuse(t *tx, logs []*raft.Log, pending []int, i int, resps []any) *tx {
	cause := t.err
	t = f.rollback(t, logs, pending, resps)
	if errors.Is(cause, badger.ErrTxnTooBig) && len(pending) > 0 {
		f.txnTooBig.Add(1)
		f.log.Warn("Badger refused a shared transaction within the FSM's write limits; retrying the entry alone",
			"index", logs[i].Index, "entries_before", len(pending))
		if resps[i] = f.applyEntry(t, logs[i]); !t.refused {
			return t
		}
		cause = t.err
		t = f.rollback(t, logs, nil, resps)
	}
	l := logs[i]
	typ := MessageType(l.Data[0])
	err := fmt.Errorf("%s at index %d refused: %w", typ, l.Index, cause)
	f.log.Error("refused an entry", "index", l.Index, "type", typ.String(), "error", cause)
	resps[i] = err
	t.note(typ, err)
	return t
}

// rollback discards t and the in-memory index changes its writes made,
// re-applies the entries pending in it into a fresh transaction and commits
// them, and returns a fresh, empty transaction.
func (f *FSM) rollback(t *tx, logs []*raft.Log, pending []int, resps []any) *tx {
	t.txn.Discard()
	if err := f.idx.rebuild(f.db); err != nil {
		f.fatal(0, fmt.Errorf("rebuild indexes after a rollback: %w", err))
	}
	t = f.newTx()
	if len(pending) == 0 {
		return t
	}
	for _, j := range pending {
		resps[j] = f.applyEntry(t, logs[j])
		if t.refused {
			// They fitted a moment ago: Apply is not deterministic.
			f.fatal(logs[j].Index, fmt.Errorf("re-applying entry after a rollback: %w", t.err))
		}
		t.putApplied(logs[j].Index)
	}
	f.commit(t, logs[pending[len(pending)-1]].Index)
	return f.newTx()
}

func (f *FSM) commit(t *tx, last uint64) {
	if t.err == nil {
		t.err = t.txn.Commit()
	}
	if t.err != nil {
		f.fatal(last, fmt.Errorf("commit: %w", t.err))
	}
	f.applied.Store(last)
	// After the commit, so a woken waiter reads what woke it.
	f.watches.signal(t.touched)
	t.touched = nil
	// A transaction begun before the first listener came noted nothing:
	// what it changed is heard as a reset.
	f.states.publish(StateBatch{Changes: t.changes, Reset: t.states == nil, Applied: last})
	t.changes = nil
	if fn := f.onApply.Load(); fn != nil {
		for _, n := range t.notes {
			(*fn)(n.typ, n.resp)
		}
	}
	t.notes = nil
}

// fatal stops the node on a store failure: the state on disk no longer
// follows the log, and continuing would make this replica diverge. Raft
// does the same on a log store failure.
func (f *FSM) fatal(index uint64, err error) {
	f.log.Error("FSM store failure", "index", index, "error", err)
	panic(fmt.Sprintf("orloj fsm: at index %d: %v", index, err))
}

func (f *FSM) applyOne(t *tx, l *raft.Log) any {
	if len(l.Data) > MaxCommandBytes {
		typ := MessageType(l.Data[0])
		err := fmt.Errorf("%s at index %d: %w: entry is %d bytes, limit %d", typ, l.Index, ErrTooLarge, len(l.Data), MaxCommandBytes)
		f.log.Error("refused an entry", "index", l.Index, "type", typ.String(), "error", err)
		t.note(typ, err)
		return err
	}
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
	t.note(cmd.messageType(), resp)
	return resp
}

// note is an observer call held until its transaction commits.
type note struct {
	typ  MessageType
	resp any
}

// tx wraps a Badger transaction, keeping the first error and counting
// writes (see writeLimits) so apply functions read as straight-line code.
type tx struct {
	txn *badger.Txn
	err error
	// refused marks err as the current entry's deterministic refusal (too
	// much to write, or a write Badger refuses), not a store failure.
	refused bool
	// size and ops count the whole transaction, entrySize and entryOps the
	// current entry, by an estimate never below Badger's own.
	size, ops           int
	entrySize, entryOps int
	lim                 *writeLimits // nil in read-only views: no limits
	idx                 *indexes     // nil in read-only views
	notes               []note
	// touched holds the tasks whose records this transaction wrote, to
	// wake their watches once it commits.
	touched map[string]struct{}
	// states and changes are nil unless the FSM has state listeners:
	// the state each task was last seen in by this transaction, and the
	// state changes its entries made (feed.go). index is the current
	// entry's Raft index, entryChanges the changes it made so far.
	states  map[string]TaskState
	changes []StateChange
	// head, set by put for the putRaw it makes, is the task record's head
	// when put was handed a Task: countWrite need not decode it again.
	head         *taskHead
	index        uint64
	entryChanges int
}

func (t *tx) note(typ MessageType, resp any) { t.notes = append(t.notes, note{typ, resp}) }

func (t *tx) refuse(err error) { t.err, t.refused = err, true }

// charge counts a write of n bytes, refusing it if the entry would pass its
// limit.
func (t *tx) charge(n int) bool {
	if t.lim != nil && (t.entrySize+n > t.lim.entryBytes || t.entryOps+1 > t.lim.entryOps) {
		t.refuse(fmt.Errorf("%w: the entry would write more than the per-entry limit of %d bytes or %d keys (by the FSM's count)",
			ErrTooLarge, t.lim.entryBytes, t.lim.entryOps))
		return false
	}
	t.size += n
	t.ops++
	t.entrySize += n
	t.entryOps++
	return true
}

// putApplied records the applied index: bookkeeping, outside the entry's
// limit (appliedSlack accounts for it).
func (t *tx) putApplied(index uint64) {
	if t.err != nil {
		return
	}
	t.size += len(keyApplied) + 8 + writeOverhead
	t.ops++
	if err := t.txn.Set(keyApplied, putU64(index)); err != nil {
		t.refuse(fmt.Errorf("%w: write applied index: %w", ErrTooLarge, err))
	}
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

// putRaw and del refuse the entry on a Badger write error: Set and Delete
// only check sizes and key rules (ErrTxnTooBig, a key or value too long),
// decided by what is written, never by the disk.
func (t *tx) putRaw(key, val []byte) {
	if t.err != nil || !t.charge(len(key)+len(val)+writeOverhead) {
		return
	}
	t.countWrite(key, val)
	if err := t.txn.Set(key, val); err != nil {
		t.refuse(fmt.Errorf("%w: write %.40q: %w", ErrTooLarge, key, err))
		return
	}
	t.idx.written(key, val, false)
	t.touch(key)
}

func (t *tx) put(key []byte, v any) {
	if t.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.refuse(fmt.Errorf("%w: encode %.40q: %w", ErrInvalidCmd, key, err))
		return
	}
	t.head = headOf(v)
	t.putRaw(key, b)
	t.head = nil
	if t.err == nil && t.states != nil && len(key) > 2 && key[0] == 't' && key[1] == '/' {
		t.wroteTask(v)
	}
}

func (t *tx) del(key []byte) {
	if t.err != nil || !t.charge(len(key)+writeOverhead) {
		return
	}
	t.countWrite(key, nil)
	if err := t.txn.Delete(key); err != nil {
		t.refuse(fmt.Errorf("%w: delete %.40q: %w", ErrTooLarge, key, err))
		return
	}
	t.idx.written(key, nil, true)
	t.touch(key)
}

// touch notes a write of a task record (t/ID), in Apply only.
func (t *tx) touch(key []byte) {
	if t.idx == nil || len(key) < 3 || key[0] != 't' || key[1] != '/' {
		return
	}
	if t.touched == nil {
		t.touched = map[string]struct{}{}
	}
	t.touched[string(key[2:])] = struct{}{}
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
