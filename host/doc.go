// Package host is Orloj's runtime host. It wires the sandbox, the replicated
// cluster state and the tools together: the worker pool claims tasks and keeps
// their leases alive, the executor runs one attempt, and the ledger dispatcher
// serves the guest's host calls, recording every tool call (result before
// acknowledgement, and for unsafe and reconcile tools an intent before the
// effect) and replaying recorded results on later attempts instead of
// repeating the effect.
//
// It also owns the forwarder (a follower's proposals sent to the leader),
// the node-to-node routes, and the background services — the outbox and
// the DLQ webhook — each a type with a Config, Start and Stop, launched
// through Routines. Package daemon composes these into a node.
//
// A background service follows the outbox: embed service, give Start the
// loop, recover each pass with CatchPanic, keep per-key retry state in a
// backoffs, and let the daemon start it in startServices.
package host
