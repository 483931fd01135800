package cluster

import (
	"math/bits"
	"time"
)

// Backoff is the delay after the attempt-th failed attempt: full jitter over a
// capped exponential, delay = uniform[0, min(Cap, Base·Factor^(attempt-1))].
// jitter is a uniform random 64-bit value chosen by the proposer, so Apply
// stays deterministic; integer arithmetic keeps it identical on every CPU.
func Backoff(p RetryPolicy, attempt int, jitter uint64) time.Duration {
	ceil := BackoffCeiling(p, attempt)
	hi, _ := bits.Mul64(uint64(ceil)+1, jitter)
	return time.Duration(hi)
}

// BackoffCeiling is the largest delay Backoff can return for attempt.
func BackoffCeiling(p RetryPolicy, attempt int) time.Duration {
	p = p.withDefaults()
	ceil := p.Base
	for i := 1; i < attempt && ceil < p.Cap; i++ {
		if ceil > p.Cap/time.Duration(p.Factor) {
			ceil = p.Cap
			break
		}
		ceil *= time.Duration(p.Factor)
	}
	return min(ceil, p.Cap)
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	d := DefaultRetryPolicy()
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = d.MaxAttempts
	}
	if p.Base <= 0 {
		p.Base = d.Base
	}
	if p.Factor < 1 {
		p.Factor = d.Factor
	}
	if p.Cap <= 0 {
		p.Cap = d.Cap
	}
	if p.Cap < p.Base {
		p.Cap = p.Base
	}
	return p
}
