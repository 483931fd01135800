package cluster

import (
	"fmt"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/hashicorp/go-hclog"
)

// TestStoreReadsSnappyTables: a data dir written while the state store
// compressed its tables with Snappy opens and reads with today's
// uncompressed tuning. Badger records each table's compression in its
// manifest, so an upgrade needs no migration.
func TestStoreReadsSnappyTables(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: tWriter{t}, Level: hclog.Warn})
	old, err := badger.Open(badgerOptions(dir, cfg).WithCompression(options.Snappy))
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	val := func(i int) []byte { return fmt.Appendf(nil, `{"n":%d,"pad":"%0200d"}`, i, i) }
	wb := old.NewWriteBatch()
	for i := range n {
		if err := wb.Set(fmt.Appendf(nil, "k%05d", i), val(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil { // flushes the memtable into a Snappy table
		t.Fatal(err)
	}

	db, err := badger.Open(badgerOptions(dir, cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tables := db.Tables()
	if len(tables) == 0 {
		t.Fatal("no tables on disk: the test wrote nothing Snappy could compress")
	}
	err = db.View(func(txn *badger.Txn) error {
		for i := range n {
			item, err := txn.Get(fmt.Appendf(nil, "k%05d", i))
			if err != nil {
				return fmt.Errorf("key %d: %w", i, err)
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return fmt.Errorf("key %d: %w", i, err)
			}
			if string(v) != string(val(i)) {
				return fmt.Errorf("key %d: value %q", i, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
