//go:build unix

package main

import "syscall"

// ownerOnlyUmask makes every file and directory the process creates from
// now on owner-only. The stores (raft-wal, Badger, raft's snapshot store)
// create theirs 0644 and 0755; in the data dir they would be readable by
// every local user.
func ownerOnlyUmask() { syscall.Umask(0o077) }
