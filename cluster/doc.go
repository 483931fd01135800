// Package cluster owns Orloj's replicated state: a hashicorp/raft node and the
// finite state machine it drives. The FSM keeps agents, tasks, leases, the retry
// schedule, the idempotency ledger, the journal and the dead-letter queue in
// Badger, and changes them only by applying commands from the Raft log.
//
// Apply is deterministic: it never reads the clock or a random source. Time and
// jitter travel inside each command, chosen by the proposer, so every replica
// that applies the same log ends with byte-identical state. The last applied
// index is written in the same Badger transaction as the state it changes, and
// entries at or below it are skipped, so a restart replays safely.
//
// cluster also owns membership (membership.go): who is in the Raft
// configuration and with which suffrage, joining, promotion, removal,
// leadership transfer, and the one way to find the leader (Node.LeaderInfo:
// ID and Raft address from Raft, API address from the member record). Each
// change is a Node method whose contract names its refusals (ErrNotLeader,
// ErrNotFound, ErrRemoved, ErrUnreachable, ErrLastVoter, ErrNotVoter,
// ErrAlreadyLeader); nothing outside this package calls *raft.Raft to change
// the cluster.
//
// cluster knows nothing of WebAssembly or tools; the host package drives it
// through Node.Apply, the membership methods and the read methods of Node.
//
// Open starts a node on disk and a TCP cluster port; OpenInMemory starts the
// same node on in-memory stores and transport, for tests (package
// clustertest wraps it).
package cluster
