package host

import (
	"time"

	"github.com/orloj/orloj/cluster"
)

// backoffs is the per-key retry state of a loop that delivers things one
// key at a time — the outbox's effects, the DLQ webhook's notices: how many
// tries of a key failed and when the next is due, spaced by the policy
// (capped exponential backoff with full jitter). It is in memory only, so
// a new leader starts counting again. Not safe for concurrent use: each
// loop owns one.
type backoffs struct {
	policy cluster.RetryPolicy
	jitter func() uint64
	failed map[string]int
	due    map[string]time.Time
}

func newBackoffs(policy cluster.RetryPolicy, jitter func() uint64) *backoffs {
	return &backoffs{policy: policy, jitter: jitter, failed: map[string]int{}, due: map[string]time.Time{}}
}

// ready reports whether key may be tried at now; if not, when it may.
func (b *backoffs) ready(key string, now time.Time) (at time.Time, ok bool) {
	at, waiting := b.due[key]
	if waiting && now.Before(at) {
		return at, false
	}
	return time.Time{}, true
}

// failures is how many tries of key failed so far.
func (b *backoffs) failures(key string) int { return b.failed[key] }

// fail counts a failed try of key at now and returns the count and when
// the next try is due.
func (b *backoffs) fail(key string, now time.Time) (tries int, at time.Time) {
	b.failed[key]++
	tries = b.failed[key]
	at = now.Add(cluster.Backoff(b.policy, tries, b.jitter()))
	b.due[key] = at
	return tries, at
}

// holdUntil puts off the next try of key to at without counting a
// failure: the try succeeded but recording it did not.
func (b *backoffs) holdUntil(key string, at time.Time) { b.due[key] = at }

// forget drops key's state: it was delivered, or gave up.
func (b *backoffs) forget(key string) {
	delete(b.failed, key)
	delete(b.due, key)
}

// retain forgets every key for which keep is false (no longer pending), so
// the maps hold only what is still being tried.
func (b *backoffs) retain(keep func(key string) bool) {
	for k := range b.failed {
		if !keep(k) {
			delete(b.failed, k)
		}
	}
	for k := range b.due {
		if !keep(k) {
			delete(b.due, k)
		}
	}
}
