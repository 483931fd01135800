// Package host is Orloj's runtime host. It wires the sandbox, the replicated
// cluster state and the tools together: the worker pool claims tasks and keeps
// their leases alive, the executor runs one attempt, and the ledger dispatcher
// serves the guest's host calls, recording every tool call (intent before
// effect, result before acknowledgement) and replaying recorded results on
// later attempts instead of repeating the effect.
package host
