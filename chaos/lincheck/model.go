package lincheck

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// phase of one task's lease in the sequential model.
type phase uint8

const (
	idle   phase = iota
	leased       // token known
	ghost        // leased by an unknown claim: token unknown, above tok
	done
)

// state is one task's lease. It is a comparable value so porcupine's default
// == equality works and states can be merged.
//
// For idle, leased and done, tok is the last token the task was leased under
// (tokens strictly increase per task, so the next claim must exceed it). For
// ghost, tok is the floor: the unknown token exceeds it.
type state struct {
	ph  phase
	tok uint64
}

// input is what an operation asked for; the output is its result string.
type input struct {
	op    string
	token uint64 // for a ghost claim: 0, unknown
	ghost bool   // an unknown claim that may have granted this task an unknown token
}

// holds reports whether the lease could currently be held under token t. On
// a ghost lease the first such use fixes the token.
func (s state) holds(t uint64) bool {
	return (s.ph == leased && s.tok == t) || (s.ph == ghost && t > s.tok)
}

// effect is the state after in took effect, if it could take effect in s.
func effect(s state, in input) (state, bool) {
	if in.op == OpClaim {
		if s.ph != idle {
			return s, false
		}
		if in.ghost {
			return state{ph: ghost, tok: s.tok}, true
		}
		if in.token <= s.tok {
			return s, false
		}
		return state{ph: leased, tok: in.token}, true
	}
	if !s.holds(in.token) {
		return s, false
	}
	switch in.op {
	case OpRenew, OpWrite:
		return state{ph: leased, tok: in.token}, true
	case OpComplete:
		return state{ph: done, tok: in.token}, true
	case OpFail, OpExpire:
		// Retried or dead-lettered: either way the lease is gone.
		return state{ph: idle, tok: in.token}, true
	}
	return s, false
}

func step(st, in, out interface{}) []interface{} {
	s, i, res := st.(state), in.(input), out.(string)
	switch res {
	case ResOK:
		if n, ok := effect(s, i); ok {
			return []interface{}{n}
		}
		return nil
	case ResUnknown:
		// Either it never applied, or it applied with its effect.
		if n, ok := effect(s, i); ok && n != s {
			return []interface{}{s, n}
		}
		return []interface{}{s}
	case ResNone:
		// Only expire reaches here: the lease it saw lapse was renewed,
		// finished or replaced meanwhile, which any state allows.
		return []interface{}{s}
	case ResRejected:
		if i.op == OpExpire {
			// Not applied, and no fencing claim about the current lease.
			return []interface{}{s}
		}
		// Fenced off: the lease is not held under this token. A ghost
		// lease passes as is: its claim may apply as late as just before
		// the lease's first use, so a rejection seen before that use
		// never has to say anything about the ghost's token.
		if s.ph == leased && s.tok == i.token {
			return nil
		}
		return []interface{}{s}
	}
	return nil
}

func hashState(st interface{}) uint64 {
	s := st.(state)
	h := uint64(s.ph) + 1
	h = h*0x9e3779b97f4a7c15 ^ s.tok
	return h * 0x9e3779b97f4a7c15
}

func describeOp(in, out interface{}) string {
	i := in.(input)
	if i.ghost {
		return fmt.Sprintf("claim(?) -> %s (ghost)", out)
	}
	return fmt.Sprintf("%s(%d) -> %s", i.op, i.token, out)
}

func describeState(st interface{}) string {
	s := st.(state)
	switch s.ph {
	case idle:
		return fmt.Sprintf("idle/%d", s.tok)
	case leased:
		return fmt.Sprintf("leased/%d", s.tok)
	case done:
		return fmt.Sprintf("done/%d", s.tok)
	}
	return fmt.Sprintf("ghost(>%d)", s.tok)
}

// leaseModel is the per-task model. Unknown outcomes make it
// nondeterministic; porcupine's power-set construction turns it into a
// deterministic Model over sets of states. There is no Partition function:
// Check partitions by task itself so it can report per task.
var leaseModel = (&porcupine.NondeterministicModel{
	Init:              func() []interface{} { return []interface{}{state{ph: idle}} },
	Step:              step,
	Hash:              hashState,
	DescribeOperation: describeOp,
	DescribeState:     describeState,
}).ToModel()
