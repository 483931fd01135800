package cluster

import (
	"encoding/binary"
	"fmt"
)

// Badger key layout. Every key starts with a short prefix naming its family;
// numeric parts are fixed-width big-endian hex so byte order is numeric order.
//
//	m/applied                      last applied Raft index (u64 BE)
//	m/fence_rejects                count of writes refused for a stale token
//	a/NAME\x00VERSION              Agent
//	am/DIGEST/NNNN                 module bytes, in chunks
//	t/ID                           Task
//	ik/KEY                         task ID for a client idempotency key
//	rq/NEXTAT SEQ/ID               runnable index: queued and retry_pending
//	le/EXPIRESAT/ID                live lease index, by expiry
//	dq/ID                          dead-letter index, no longer written: lists
//	                               read the task heads in memory (order.go);
//	                               a task leaving the queue still deletes it
//	l/TASK/CALL                    LedgerRecord
//	j/TASK/SEQ                     Event
//	st/TASK/SEQ                    staged KVWrite
//	sc/TASK                        staged writes' count and bytes (2 × u64 BE)
//	kv/KEY                         committed kv value
//	ob/TASK/N                      outbox Effect
//	mb/ID                          Member (API address)
//	td/NAME\x00VERSION              ToolDef (VERSION: 16 hex digits)
//	th/NAME                        newest tool version, removed flag
//	wk/UNTIL/ID                    wake index: waiting tasks, by wake time (wait.go)
//	sg/TASK/NAME\x00SEQ             Signal kept until awaited
//	sk/TASK/KEY                    signal idempotency key accepted
var (
	keyApplied      = []byte("m/applied")
	keyFenceRejects = []byte("m/fence_rejects")
)

// ModuleChunkSize is the size of one stored module chunk: under Badger's
// 1 MiB value threshold, and small enough that a Raft entry carrying one
// stays cheap to replicate.
const ModuleChunkSize = 512 << 10

// MaxInlineModule is the largest module a single PutAgent entry may carry.
const MaxInlineModule = 2 * ModuleChunkSize

const moduleChunk = ModuleChunkSize

func hex16(v uint64) string { return fmt.Sprintf("%016x", v) }

func agentKey(name, version string) []byte { return []byte("a/" + name + "\x00" + version) }
func agentPrefix(name string) []byte       { return []byte("a/" + name + "\x00") }
func moduleKey(digest string, n int) []byte {
	return []byte(fmt.Sprintf("am/%s/%04d", digest, n))
}
func modulePrefix(digest string) []byte { return []byte("am/" + digest + "/") }
func taskKey(id string) []byte          { return []byte("t/" + id) }
func idemKey(key string) []byte         { return []byte("ik/" + key) }
func runqKey(nextAt int64, seq uint64, id string) []byte {
	return []byte("rq/" + hex16(uint64(nextAt)) + hex16(seq) + "/" + id)
}
func leaseKey(expiresAt int64, id string) []byte {
	return []byte("le/" + hex16(uint64(expiresAt)) + "/" + id)
}
func dlqKey(id string) []byte                   { return []byte("dq/" + id) }
func ledgerKey(task, call string) []byte        { return []byte("l/" + task + "/" + call) }
func ledgerPrefix(task string) []byte           { return []byte("l/" + task + "/") }
func journalKey(task string, seq uint64) []byte { return []byte("j/" + task + "/" + hex16(seq)) }
func journalPrefix(task string) []byte          { return []byte("j/" + task + "/") }
func stageKey(task string, seq uint64) []byte   { return []byte("st/" + task + "/" + hex16(seq)) }
func stagePrefix(task string) []byte            { return []byte("st/" + task + "/") }
func stageCountKey(task string) []byte          { return []byte("sc/" + task) }
func kvKey(key string) []byte                   { return []byte("kv/" + key) }
func outboxKey(task string, n int) []byte       { return []byte(fmt.Sprintf("ob/%s/%04x", task, n)) }
func outboxPrefix(task string) []byte           { return []byte("ob/" + task + "/") }
func memberKey(id string) []byte                { return []byte("mb/" + id) }

func u64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func putU64(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}
