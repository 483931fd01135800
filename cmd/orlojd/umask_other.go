//go:build !unix

package main

// ownerOnlyUmask: there is no umask here; the data dir's ACL governs.
func ownerOnlyUmask() {}
