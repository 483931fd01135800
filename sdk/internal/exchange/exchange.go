// Package exchange is the guest side of the host's buffer protocol
// (docs/abi.md, "Large responses"), shared by the agent SDK and the plugin
// kit.
package exchange

import "github.com/orloj/orloj/abi"

// Do runs one host function that answers into a buffer and returns the
// status and a body the caller owns. first makes the request into buf.
// When the body did not fit, fetch is given a buffer of exactly the
// announced size (at most limit): for call it is response, which hands over
// the kept body without invoking the tool again.
//
// A host that breaks the protocol (claims to have written more than the
// buffer holds, announces more than limit, or still does not fit) yields
// an abi.StatusFault error; the status and body are then meaningless.
func Do(buf []byte, limit uint32, first, fetch func(buf []byte) (abi.Status, uint32)) (abi.Status, []byte, error) {
	st, n := first(buf)
	if st != abi.StatusBufferTooSmall {
		if uint64(n) > uint64(len(buf)) {
			return 0, nil, abi.Errorf(abi.StatusFault, "host reported %d bytes written into a %d-byte buffer", n, len(buf))
		}
		// Copy out: the caller may reuse buf for the next exchange.
		body := make([]byte, n)
		copy(body, buf[:n])
		return st, body, nil
	}
	if n > limit {
		return 0, nil, abi.Errorf(abi.StatusFault, "host announced a %d-byte response, limit %d", n, limit)
	}
	body := make([]byte, n)
	st, m := fetch(body)
	if st == abi.StatusBufferTooSmall || m > n {
		return 0, nil, abi.Errorf(abi.StatusFault, "host announced a %d-byte response, then wanted %d (status %v)", n, m, st)
	}
	return st, body[:m], nil
}
