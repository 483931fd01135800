package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime/debug"
)

// safely runs one pass of a leader duty. A panic is logged at Error with its
// value and at Debug with its stack, under one error ID, and returned as an
// error: the duty goes on with its next pass rather than crash the node.
func (n *Node) safely(what string, fn func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		b := make([]byte, 8)
		rand.Read(b) // never fails (crypto/rand)
		id := hex.EncodeToString(b)
		n.log.Error("recovered from a panic; carrying on", "in", what, "panic", fmt.Sprint(r), "error_id", id)
		n.log.Debug("stack of the recovered panic", "error_id", id, "stack", string(debug.Stack()))
		err = fmt.Errorf("panic in %s: %v (error id %s)", what, r, id)
	}()
	return fn()
}
