package cluster

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"

	"github.com/dgraph-io/badger/v4"
	"github.com/hashicorp/raft"
)

// snapshotMagic starts every snapshot stream; the version lets the format change.
const snapshotMagic = "ORLOJSNAP1\n"

// Snapshot implements raft.FSM. Raft calls it between applies, so a read
// transaction opened here is a consistent cut at AppliedIndex. The Sync makes
// Badger durable up to that index before Raft may compact the log below it.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.db.Sync(); err != nil {
		return nil, fmt.Errorf("sync before snapshot: %w", err)
	}
	return &snapshot{txn: f.db.NewTransaction(false)}, nil
}

type snapshot struct{ txn *badger.Txn }

// Persist streams every key and value: u32 key length, key, u32 value
// length, value; then a zero key length and the sha256 of all that came before.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.txn, sink); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.txn.Discard() }

func writeSnapshot(txn *badger.Txn, w io.Writer) error {
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), 1<<20)
	if _, err := bw.WriteString(snapshotMagic); err != nil {
		return err
	}
	// Values are written from Badger's buffer, not copied: a snapshot
	// reads the whole state, and copying it all made each one allocate
	// as much as the state holds.
	opts := badger.DefaultIteratorOptions
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	var lenBuf [4]byte
	write := func(b []byte) {
		binary.BigEndian.PutUint32(lenBuf[:], uint32(len(b)))
		bw.Write(lenBuf[:])
		bw.Write(b)
	}
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		write(item.Key())
		if err := item.Value(func(v []byte) error { write(v); return nil }); err != nil {
			return err
		}
	}
	binary.BigEndian.PutUint32(lenBuf[:], 0)
	bw.Write(lenBuf[:])
	if err := bw.Flush(); err != nil {
		return err
	}
	_, err := w.Write(h.Sum(nil))
	return err
}

// Restore implements raft.FSM: it replaces all state with the snapshot's.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.db.DropAll(); err != nil {
		return fmt.Errorf("restore: clear state: %w", err)
	}
	h := sha256.New()
	br := bufio.NewReaderSize(rc, 1<<20)
	magic := make([]byte, len(snapshotMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != snapshotMagic {
		return fmt.Errorf("restore: not an Orloj snapshot (magic %q)", magic)
	}
	h.Write(magic)
	wb := f.db.NewWriteBatch()
	defer wb.Cancel()
	readChunk := func() ([]byte, error) {
		var lenBuf [4]byte
		if _, err := io.ReadFull(br, lenBuf[:]); err != nil {
			return nil, err
		}
		b := make([]byte, binary.BigEndian.Uint32(lenBuf[:]))
		if _, err := io.ReadFull(br, b); err != nil {
			return nil, err
		}
		h.Write(lenBuf[:])
		h.Write(b)
		return b, nil
	}
	for {
		key, err := readChunk()
		if err != nil {
			return fmt.Errorf("restore: read key: %w", err)
		}
		if len(key) == 0 {
			break
		}
		val, err := readChunk()
		if err != nil {
			return fmt.Errorf("restore: read value of %q: %w", key, err)
		}
		if err := wb.Set(key, val); err != nil {
			return fmt.Errorf("restore: write %q: %w", key, err)
		}
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(br, got); err != nil {
		return fmt.Errorf("restore: read checksum: %w", err)
	}
	if !bytes.Equal(got, h.Sum(nil)) {
		return fmt.Errorf("restore: %w", errChecksum)
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("restore: flush: %w", err)
	}
	if err := f.db.Sync(); err != nil {
		return fmt.Errorf("restore: sync: %w", err)
	}
	err := f.reloadApplied()
	if err == nil {
		err = f.idx.rebuild(f.db)
	}
	f.broadcast()
	f.watches.signalAll()
	f.states.publish(StateBatch{Reset: true, Applied: f.applied.Load()})
	return err
}

func (f *FSM) reloadApplied() error {
	return f.db.View(func(txn *badger.Txn) error {
		b, _, err := getRaw(txn, keyApplied)
		f.applied.Store(u64(b))
		return err
	})
}

// Hash is the sha256 over every key and value in order: replicas that applied
// the same log have the same hash.
func (f *FSM) Hash() (string, error) {
	h := sha256.New()
	err := f.db.View(func(txn *badger.Txn) error {
		return writeSnapshot(txn, h)
	})
	if err != nil {
		return "", fmt.Errorf("hash state: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

var errChecksum = errors.New("snapshot checksum mismatch")
