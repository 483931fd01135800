package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// SecretsDir is the data dir's directory of node-local secrets, one file
// per secret, named after it, mode 0600.
const SecretsDir = "secrets"

// prepareDataDir creates the data dir owner-only, or tightens an existing
// one: the dir and every file and directory below it lose their group and
// other permission bits (bits are only ever removed). The dir holds the
// admin token, the Raft log and the whole replicated state, none of which
// another local user may read. Files created later are owner-only only if
// the process umask says so (orlojd serve sets 077); the stores create
// theirs 0644.
func prepareDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	err := filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			return nil // chmod would follow it out of the dir
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed meanwhile
		}
		if err != nil {
			return err
		}
		if perm := info.Mode().Perm(); perm&0o077 != 0 {
			if err := os.Chmod(path, perm&^0o077); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("make data dir %s owner-only: %w", dir, err)
	}
	return nil
}
