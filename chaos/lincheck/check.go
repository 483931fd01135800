package lincheck

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// HTMLEnv names a directory; when set, Check writes porcupine's
// visualization of every illegal task there.
const HTMLEnv = "ORLOJ_LINCHECK_HTML"

// Report is the outcome of Check.
type Report struct {
	Tasks   int // task partitions checked
	Ops     int // operations (calls) in the history
	Unknown int // operations with outcome unknown: "unknown" result or no ret line
	Ghosts  int // unknown claims (subset of Unknown): they may have leased any task
	// Truncated counts garbled last lines that ReadFiles tolerated.
	Truncated int

	Illegal      []string // task IDs whose history is not linearizable
	Inconclusive []string // task IDs whose check timed out
	// TokenOrder: two ok claims of one task whose tokens do not increase in
	// real-time order, or that got the same token.
	TokenOrder []string
	// CrossTask: violations no single task shows. Tokens are Raft indexes of
	// grants, so one token belongs to at most one task, and every token that
	// no ok claim returned must come from a distinct unknown claim.
	CrossTask []string
}

// OK reports whether the history passed. An inconclusive (timed out) task
// is not a pass: with tens of operations per task it means something odd.
func (r Report) OK() bool {
	return len(r.Illegal) == 0 && len(r.Inconclusive) == 0 &&
		len(r.TokenOrder) == 0 && len(r.CrossTask) == 0
}

// String summarizes the report in a few lines for a test log.
func (r Report) String() string {
	var b strings.Builder
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "lincheck %s: %d tasks, %d ops, %d unknown, %d ghost claims, %d truncated lines",
		verdict, r.Tasks, r.Ops, r.Unknown, r.Ghosts, r.Truncated)
	list := func(name string, xs []string, sep string) {
		if len(xs) == 0 {
			return
		}
		const max = 10
		n, more := len(xs), ""
		if n > max {
			more = fmt.Sprintf("%s... %d more", sep, n-max)
			xs = xs[:max]
		}
		fmt.Fprintf(&b, "\n%s (%d): %s%s", name, n, strings.Join(xs, sep), more)
	}
	list("illegal", r.Illegal, ", ")
	list("inconclusive", r.Inconclusive, ", ")
	list("token order", r.TokenOrder, "\n  ")
	list("cross-task", r.CrossTask, "\n  ")
	return b.String()
}

// op is one call joined with its return.
type op struct {
	id, node string
	kind     string
	task     string
	token    uint64
	res      string // ResUnknown also when the ret line is missing
	call     int64
	ret      int64 // +infinity (past every time in the history) when unknown
}

func (o *op) in() input { return input{op: o.kind, token: o.token} }

// uses reports whether o is an applied operation that needed the lease to be
// held under o.token.
func (o *op) uses() bool {
	return o.res == ResOK && o.kind != OpClaim
}

type task struct {
	id     string
	ops    []*op
	ghosts []*op
}

// Check checks the history per task against the lease model. timeout bounds
// each task's check (0: no bound). The error reports a malformed history
// (or a failure to write visualizations, in which case the report is still
// complete).
func Check(recs []Record, timeout time.Duration) (Report, error) {
	var rep Report
	ops, truncated, err := join(recs)
	if err != nil {
		return rep, err
	}
	rep.Truncated = truncated
	rep.Ops = len(ops)

	tasks := map[string]*task{}
	get := func(id string) *task {
		t := tasks[id]
		if t == nil {
			t = &task{id: id}
			tasks[id] = t
		}
		return t
	}
	var ghosts []*op
	for _, o := range ops {
		if o.res == ResUnknown {
			rep.Unknown++
		}
		switch {
		case o.kind == OpClaim && o.res == ResUnknown:
			ghosts = append(ghosts, o)
		case o.kind == OpClaim && o.res == ResOK:
			if o.task == "" {
				return rep, fmt.Errorf("lincheck: claim %s: ok without a task", o.id)
			}
			get(o.task).ops = append(get(o.task).ops, o)
		case o.kind == OpClaim:
			// Nothing runnable, or refused: not about any task.
		case o.res == ResNone && o.kind != OpExpire:
			return rep, fmt.Errorf("lincheck: %s %s: result none is only defined for claim and expire", o.kind, o.id)
		case o.res == ResUnknown && (o.kind == OpRenew || o.kind == OpWrite):
			// Whether or not it applied it changed nothing, so it can always
			// be linearized as a no-op; leaving it out spares the search an
			// op that stays pending forever. (On a ghost lease applying it
			// would fix the token, but the ghost already allows everything
			// the fixed lease allows.)
			get(o.task)
		default:
			get(o.task).ops = append(get(o.task).ops, o)
		}
	}
	rep.Ghosts = len(ghosts)
	sort.SliceStable(ghosts, func(i, j int) bool { return ghosts[i].call < ghosts[j].call })

	ids := make([]string, 0, len(tasks))
	for id := range tasks {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	rep.Tasks = len(ids)

	grants := map[uint64]*op{} // token -> ok claim that returned it
	var orphans []orphan
	for _, id := range ids {
		t := tasks[id]
		rep.TokenOrder = append(rep.TokenOrder, tokenOrder(t)...)
		for _, o := range t.ops {
			if o.kind != OpClaim {
				continue
			}
			if g, dup := grants[o.token]; dup && g.task != o.task {
				rep.CrossTask = append(rep.CrossTask, fmt.Sprintf(
					"token %d granted to task %s (claim %s) and task %s (claim %s)",
					o.token, g.task, g.id, o.task, o.id))
			} else if !dup {
				grants[o.token] = o
			}
		}
		orph := orphansOf(t)
		t.ghosts = pickGhosts(ghosts, orph)
		orphans = append(orphans, orph...)
	}
	rep.CrossTask = append(rep.CrossTask, checkOrphans(orphans, grants, ghosts)...)

	// Tasks are independent, so check them in parallel; each porcupine call
	// gets exactly one partition and its own timeout.
	results := make([]porcupine.CheckResult, len(ids))
	hists := make([][]porcupine.Operation, len(ids))
	inf := infinity(ops)
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	for i, id := range ids {
		hists[i] = history(tasks[id], inf)
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = porcupine.CheckOperationsTimeout(leaseModel, hists[i], timeout)
		}()
	}
	wg.Wait()

	var illegal []int
	for i, id := range ids {
		switch results[i] {
		case porcupine.Illegal:
			rep.Illegal = append(rep.Illegal, id)
			illegal = append(illegal, i)
		case porcupine.Unknown:
			rep.Inconclusive = append(rep.Inconclusive, id)
		}
	}
	if dir := os.Getenv(HTMLEnv); dir != "" && len(illegal) > 0 {
		err = visualize(dir, ids, hists, illegal, timeout)
	}
	return rep, err
}

// Operation is one call joined with its return, as Operations lists them.
type Operation struct {
	ID, Node, Op, Task string
	Token              uint64
	Res                string // ResUnknown when no ret line was written
	Call, Ret          int64  // unix nanos; Ret is 0 when no ret line was written
}

// Operations pairs the calls and returns of a history, in call order, for
// callers that measure it (takeover times) rather than check it.
func Operations(recs []Record) ([]Operation, error) {
	ops, _, err := join(recs)
	if err != nil {
		return nil, err
	}
	out := make([]Operation, len(ops))
	for i, o := range ops {
		out[i] = Operation{ID: o.id, Node: o.node, Op: o.kind, Task: o.task, Token: o.token, Res: o.res, Call: o.call, Ret: o.ret}
	}
	return out, nil
}

// join pairs calls with returns by id. A call without a ret line was cut off
// by a kill and is unknown.
func join(recs []Record) ([]*op, int, error) {
	var (
		ops       []*op
		byID      = map[string]*op{}
		truncated int
	)
	for _, r := range recs {
		switch r.P {
		case PhaseTruncated:
			truncated++
			continue
		case PhaseRet:
			continue
		}
		if err := r.validate(); err != nil {
			return nil, 0, fmt.Errorf("lincheck: %s: %w", r.where(), err)
		}
		if byID[r.ID] != nil {
			return nil, 0, fmt.Errorf("lincheck: %s: duplicate call id %s", r.where(), r.ID)
		}
		o := &op{id: r.ID, node: r.Node, kind: r.Op, task: r.Task, token: r.Token, res: ResUnknown, call: r.T}
		byID[r.ID] = o
		ops = append(ops, o)
	}
	returned := map[string]bool{}
	for _, r := range recs {
		if r.P != PhaseRet {
			continue
		}
		if err := r.validate(); err != nil {
			return nil, 0, fmt.Errorf("lincheck: %s: %w", r.where(), err)
		}
		o := byID[r.ID]
		if o == nil {
			return nil, 0, fmt.Errorf("lincheck: %s: ret without a call: %s", r.where(), r.ID)
		}
		if returned[r.ID] {
			return nil, 0, fmt.Errorf("lincheck: %s: duplicate ret for %s", r.where(), r.ID)
		}
		returned[r.ID] = true
		o.res = r.Res
		// Wall clocks can step back a little; a return before its call
		// would confuse the checker, so clamp it.
		o.ret = max(r.T, o.call)
		if o.kind == OpClaim && r.Res == ResOK {
			o.task, o.token = r.Task, r.Token
		}
	}
	return ops, truncated, nil
}

// infinity is a time after every call and return, the return time of an
// operation whose outcome is unknown.
func infinity(ops []*op) int64 {
	var t int64
	for _, o := range ops {
		t = max(t, o.call, o.ret)
	}
	return t + 1
}

// tokenOrder finds pairs of ok claims whose tokens contradict real time or
// repeat. The model rejects these too; this says why in words.
func tokenOrder(t *task) []string {
	var claims []*op
	for _, o := range t.ops {
		if o.kind == OpClaim {
			claims = append(claims, o)
		}
	}
	sort.SliceStable(claims, func(i, j int) bool { return claims[i].call < claims[j].call })
	var out []string
	for i, a := range claims {
		for _, b := range claims[i+1:] {
			switch {
			case a.token == b.token:
				out = append(out, fmt.Sprintf("task %s: token %d granted twice (claims %s and %s)",
					t.id, a.token, a.id, b.id))
			case a.ret < b.call && a.token > b.token:
				out = append(out, fmt.Sprintf("task %s: claim %s returned token %d at %d, then claim %s called at %d got smaller token %d",
					t.id, a.id, a.token, a.ret, b.id, b.call, b.token))
			case b.ret < a.call && b.token > a.token:
				out = append(out, fmt.Sprintf("task %s: claim %s returned token %d at %d, then claim %s called at %d got smaller token %d",
					t.id, b.id, b.token, b.ret, a.id, a.call, a.token))
			}
		}
	}
	return out
}

// orphan is a token an applied operation of a task used although no ok claim
// of that task returned it: only an unknown claim can have granted it, and
// that claim must have been called by bound, the earliest return of a use.
type orphan struct {
	task  string
	token uint64
	bound int64
	use   string // id of the op that returned at bound
}

func orphansOf(t *task) []orphan {
	claimed := map[uint64]bool{}
	for _, o := range t.ops {
		if o.kind == OpClaim {
			claimed[o.token] = true
		}
	}
	first := map[uint64]*op{}
	for _, o := range t.ops {
		if o.uses() && !claimed[o.token] {
			if f := first[o.token]; f == nil || o.ret < f.ret {
				first[o.token] = o
			}
		}
	}
	var out []orphan
	for tok, o := range first {
		out = append(out, orphan{task: t.id, token: tok, bound: o.ret, use: o.id})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].token < out[j].token })
	return out
}

// pickGhosts chooses the unknown claims to add to a task with orphan tokens.
// Each orphan needs at most one ghost lease, and of two ghosts the one
// called earlier can linearize anywhere the later one can (both stay
// pending forever), so the earliest len(orphans) ghosts are as good as all
// of them and keep the search small. Ghosts called after the last bound
// could not precede any use; leaving them out changes no verdict.
func pickGhosts(ghosts []*op, orphans []orphan) []*op {
	if len(orphans) == 0 {
		return nil
	}
	var bound int64
	for _, o := range orphans {
		bound = max(bound, o.bound)
	}
	var out []*op
	for _, g := range ghosts {
		if g.call > bound || len(out) == len(orphans) {
			break
		}
		out = append(out, g)
	}
	return out
}

// checkOrphans checks what per-task checks cannot: one unknown claim grants
// one token to one task, so orphan tokens must be distinct, must not have
// been granted by an ok claim to another task, and need distinct ghosts.
func checkOrphans(orphans []orphan, grants map[uint64]*op, ghosts []*op) []string {
	var out []string
	seen := map[uint64]orphan{}
	for _, o := range orphans {
		if g := grants[o.token]; g != nil {
			out = append(out, fmt.Sprintf("task %s used token %d (op %s) that claim %s granted to task %s",
				o.task, o.token, o.use, g.id, g.task))
		}
		if p, dup := seen[o.token]; dup {
			out = append(out, fmt.Sprintf("token %d used by tasks %s (op %s) and %s (op %s) without an ok claim",
				o.token, p.task, p.use, o.task, o.use))
		}
		seen[o.token] = o
	}
	// Eligible ghosts of an orphan are a prefix of ghosts by call time, so a
	// distinct ghost for each exists iff, taking orphans by bound, the k-th
	// has at least k ghosts called by its bound (Hall's condition).
	sorted := append([]orphan(nil), orphans...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].bound < sorted[j].bound })
	n := 0
	for k, o := range sorted {
		for n < len(ghosts) && ghosts[n].call <= o.bound {
			n++
		}
		if n < k+1 {
			out = append(out, fmt.Sprintf(
				"%d tokens no ok claim returned were in use by %d (the last: task %s token %d, op %s), but only %d unknown claims were called by then",
				k+1, o.bound, o.task, o.token, o.use, n))
			break
		}
	}
	return out
}

// history builds one task's porcupine history. ClientId only matters for
// the visualization: ops are packed into lanes that never overlap in time.
func history(t *task, inf int64) []porcupine.Operation {
	all := make([]*op, 0, len(t.ops)+len(t.ghosts))
	all = append(all, t.ops...)
	all = append(all, t.ghosts...)
	sort.SliceStable(all, func(i, j int) bool { return all[i].call < all[j].call })
	var lanes []int64 // end of the last op in each lane
	hist := make([]porcupine.Operation, 0, len(all))
	for _, o := range all {
		in := o.in()
		ret := o.ret
		if o.res == ResUnknown {
			ret = inf
		}
		if o.kind == OpClaim && o.res == ResUnknown {
			in = input{op: OpClaim, ghost: true}
		}
		lane := len(lanes)
		for l, end := range lanes {
			if end < o.call {
				lane = l
				break
			}
		}
		if lane == len(lanes) {
			lanes = append(lanes, 0)
		}
		lanes[lane] = ret
		hist = append(hist, porcupine.Operation{
			ClientId: lane,
			Input:    in,
			Call:     o.call,
			Output:   o.res,
			Return:   ret,
			Metadata: o.id,
		})
	}
	return hist
}

// visualize writes porcupine's HTML for each illegal task: partial
// linearizations and the op that could not be placed.
func visualize(dir string, ids []string, hists [][]porcupine.Operation, illegal []int, timeout time.Duration) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("lincheck: visualization dir: %w", err)
	}
	var errs []error
	for _, i := range illegal {
		_, info := porcupine.CheckOperationsVerbose(leaseModel, hists[i], timeout)
		path := filepath.Join(dir, fileName(ids[i])+".html")
		if err := porcupine.VisualizePath(leaseModel, info, path); err != nil {
			errs = append(errs, fmt.Errorf("lincheck: visualize task %s: %w", ids[i], err))
		}
	}
	return errors.Join(errs...)
}

// fileName makes a task ID safe as a file name.
func fileName(id string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, id)
}
