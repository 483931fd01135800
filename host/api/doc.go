// Package api is Orloj's HTTP API: the /v1 JSON routes operators and the CLI
// use (agents, tasks, dead-letter queue, leases, cluster membership), the
// GET /v1/events stream of task state changes (events.go), the web console
// under /ui (console.go; its files are in package ui), plus /healthz,
// /readyz and /metrics.
//
// It owns request decoding and validation, bearer-token authentication, the
// JSON views of cluster state and the mapping of cluster errors to HTTP
// status codes. It is a proposer: task IDs and "now" are chosen here and
// written into the commands it sends through Raft, never inside the FSM.
// Reads come from the local replica; writes go through cluster.Node.Apply,
// and a node that is not the leader answers 421 with the leader it knows
// (cluster.Node.LeaderInfo). Membership routes check the request and call
// cluster's membership methods (AddMember, Promote, RemoveMember,
// TransferLeadership), which own the rules; this package maps their
// refusals to statuses.
// The contract is documented in docs/openapi.yaml.
package api
