package daemon

import (
	"io/fs"
	"os"
	"path/filepath"
	goruntime "runtime"
	"testing"
)

// TestDataDirMadeOwnerOnly: a data dir left group- and world-readable is
// tightened when a daemon starts on it, every file and directory below it
// too; nothing is loosened, and a symlink's target outside is not touched.
func TestDataDirMadeOwnerOnly(t *testing.T) {
	if goruntime.GOOS == "windows" {
		t.Skip("unix permission bits")
	}
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	outside := filepath.Join(t.TempDir(), "outside")
	must(t, os.Mkdir(dir, 0o755))
	must(t, os.Chmod(dir, 0o755)) // whatever the umask
	must(t, os.Mkdir(filepath.Join(dir, "sub"), 0o755))
	for path, perm := range map[string]fs.FileMode{
		filepath.Join(dir, "old.log"):          0o644,
		filepath.Join(dir, "sub", "state.sst"): 0o664,
		filepath.Join(dir, "sub", "kept"):      0o400,
		outside:                                0o644,
	} {
		must(t, os.WriteFile(path, []byte("x"), perm))
		must(t, os.Chmod(path, perm))
	}
	must(t, os.Chmod(filepath.Join(dir, "sub"), 0o755))
	must(t, os.Symlink(outside, filepath.Join(dir, "link")))

	cfg := testConfig(t, dir)
	startDaemon(t, &cfg)

	want := map[string]fs.FileMode{
		dir:                                    0o700,
		filepath.Join(dir, "sub"):              0o700,
		filepath.Join(dir, "old.log"):          0o600,
		filepath.Join(dir, "sub", "state.sst"): 0o600,
		filepath.Join(dir, "sub", "kept"):      0o400,
		filepath.Join(dir, TokenFile):          0o600,
		outside:                                0o644,
	}
	for path, perm := range want {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != perm {
			t.Errorf("%s: mode %v, want %v", path, st.Mode().Perm(), perm)
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
