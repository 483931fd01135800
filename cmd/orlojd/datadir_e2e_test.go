//go:build unix

package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDataDirOwnerOnly: a real serve process tightens a data dir left at
// 0755 with a 0644 file in it, and everything it creates there (raft-wal,
// state, snapshots, token, compile cache) is owner-only. The token comes
// from --token-file, so it is on no command line and serve does not warn;
// given with --token, serve warns.
func TestDataDirOwnerOnly(t *testing.T) {
	t.Parallel()
	needBinary(t)
	const token = "e2e-token-from-a-file-0123456789"
	tokFile := filepath.Join(t.TempDir(), "admin-token")
	if err := os.WriteFile(tokFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, dir: t.TempDir(), api: freePort(t), raft: freePort(t), extra: []string{"--token-file", tokFile}}
	if err := os.WriteFile(filepath.Join(n.dir, "left-over.log"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for path, perm := range map[string]fs.FileMode{n.dir: 0o755, filepath.Join(n.dir, "left-over.log"): 0o644} {
		if err := os.Chmod(path, perm); err != nil {
			t.Fatal(err)
		}
	}
	n.start()
	t.Cleanup(n.kill)

	n.ok("agent", "push", agent("hello"), "--name", "hello", "--version", "v1")
	id := strings.TrimSpace(n.ok("task", "submit", "hello", "--input", `{"x":1}`))
	n.ok("task", "wait", id)
	env := append([]string{"ORLOJ_ADDR=" + n.api, "ORLOJ_DATA_DIR=" + t.TempDir(), "ORLOJ_TOKEN_FILE=" + tokFile}, cleanEnv()...)
	if r := runCLI(t, env, "task", "get", id); r.code != 0 {
		t.Fatalf("with ORLOJ_TOKEN_FILE: %s", r)
	}
	if readToken(t, n.dir) != token {
		t.Fatal("the token file in the data dir is not the one given")
	}
	if strings.Contains(n.log.String(), "process list") {
		t.Fatalf("serve warned about a token on the command line it was not given:\n%s", n.log)
	}
	if code := n.signal(syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM\n%s", code, n.log)
	}

	seen := map[string]bool{}
	err := filepath.WalkDir(n.dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(n.dir, path)
		seen[strings.SplitN(rel, string(filepath.Separator), 2)[0]] = true
		if e.Type()&fs.ModeSymlink == 0 && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s: mode %v, want owner-only", rel, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"raft-wal", "state", "snapshots", "token", "left-over.log"} {
		if !seen[name] {
			t.Errorf("data dir has no %s (has %v)", name, seen)
		}
	}

	// The token on the command line still works, with a warning.
	n.extra = []string{"--token", token}
	n.start()
	n.waitLog("process list", 10*time.Second)
	n.ok("task", "get", id)
}
