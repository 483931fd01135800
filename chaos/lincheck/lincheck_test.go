package lincheck

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// noRet marks an operation whose process died before writing its ret line.
const noRet = -1

// hist builds synthetic histories.
type hist struct {
	recs []Record
	n    int
}

// op records an operation on a known task. ret == noRet leaves out the ret line.
func (h *hist) op(node, kind, task string, token uint64, call, ret int64, res string) *hist {
	h.n++
	id := fmt.Sprintf("%s/p/%d", node, h.n)
	h.recs = append(h.recs, Record{P: PhaseCall, ID: id, Node: node, Op: kind, Task: task, Token: token, T: call})
	if ret != noRet {
		h.recs = append(h.recs, Record{P: PhaseRet, ID: id, T: ret, Res: res})
	}
	return h
}

// claim records a claim; the ret carries the granted task and token.
func (h *hist) claim(node, task string, token uint64, call, ret int64, res string) *hist {
	h.n++
	id := fmt.Sprintf("%s/p/%d", node, h.n)
	h.recs = append(h.recs, Record{P: PhaseCall, ID: id, Node: node, Op: OpClaim, T: call})
	if ret != noRet {
		h.recs = append(h.recs, Record{P: PhaseRet, ID: id, T: ret, Res: res, Task: task, Token: token})
	}
	return h
}

func check(t *testing.T, h *hist) Report {
	t.Helper()
	rep, err := Check(h.recs, 10*time.Second)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	t.Log(rep)
	return rep
}

func wantOK(t *testing.T, h *hist) Report {
	t.Helper()
	rep := check(t, h)
	if !rep.OK() {
		t.Fatalf("want OK, got:\n%s", rep)
	}
	return rep
}

func wantIllegal(t *testing.T, h *hist, tasks ...string) Report {
	t.Helper()
	rep := check(t, h)
	if rep.OK() {
		t.Fatalf("want a violation, got OK")
	}
	if strings.Join(rep.Illegal, ",") != strings.Join(tasks, ",") {
		t.Fatalf("illegal tasks = %v, want %v", rep.Illegal, tasks)
	}
	return rep
}

func TestSequentialValid(t *testing.T) {
	h := &hist{}
	h.claim("n1", "a", 5, 0, 10, ResOK).
		op("n1", OpRenew, "a", 5, 20, 30, ResOK).
		op("n1", OpWrite, "a", 5, 40, 50, ResOK).
		op("n1", OpComplete, "a", 5, 60, 70, ResOK).
		op("n1", OpRenew, "a", 5, 80, 90, ResRejected). // done: fenced off
		claim("n2", "b", 8, 100, 110, ResOK).
		op("n2", OpFail, "b", 8, 120, 130, ResOK).
		claim("n2", "b", 12, 140, 150, ResOK).
		op("n0", OpExpire, "b", 12, 160, 170, ResOK).
		op("n0", OpExpire, "b", 12, 180, 190, ResNone).
		claim("n1", "b", 15, 200, 210, ResOK).
		op("n1", OpComplete, "b", 15, 220, 230, ResOK).
		claim("n1", "", 0, 240, 250, ResNone).    // nothing runnable: ignored
		claim("n1", "", 0, 260, 270, ResRejected) // ignored
	rep := wantOK(t, h)
	if rep.Tasks != 2 || rep.Ops != 14 || rep.Unknown != 0 || rep.Ghosts != 0 {
		t.Fatalf("counts: %+v", rep)
	}
}

func TestRenewRacingExpire(t *testing.T) {
	t.Run("renew rejected after expire ok", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n0", OpExpire, "a", 5, 20, 40, ResOK).
			op("n1", OpRenew, "a", 5, 25, 45, ResRejected)
		wantOK(t, h)
	})
	t.Run("expire none after renew ok", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpRenew, "a", 5, 20, 40, ResOK).
			op("n0", OpExpire, "a", 5, 25, 45, ResNone).
			op("n1", OpComplete, "a", 5, 50, 60, ResOK)
		wantOK(t, h)
	})
	// The counterpart that must fail: nothing freed the lease, yet the
	// renew was fenced off.
	t.Run("renew rejected while lease held", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpRenew, "a", 5, 20, 30, ResRejected).
			op("n0", OpExpire, "a", 5, 40, 50, ResOK)
		wantIllegal(t, h, "a")
	})
}

func TestOverlappingClaims(t *testing.T) {
	t.Run("no release between", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			claim("n2", "a", 7, 5, 15, ResOK) // returns while lease 5 still held
		rep := wantIllegal(t, h, "a")
		if len(rep.TokenOrder) != 0 {
			t.Fatalf("tokens do increase; TokenOrder = %v", rep.TokenOrder)
		}
	})
	t.Run("expire between", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n0", OpExpire, "a", 5, 6, 12, ResOK).
			claim("n2", "a", 7, 5, 15, ResOK)
		wantOK(t, h)
	})
}

func TestStaleCompleteAfterExpire(t *testing.T) {
	h := &hist{}
	h.claim("n1", "a", 5, 0, 10, ResOK).
		op("n0", OpExpire, "a", 5, 20, 30, ResOK).
		op("n1", OpComplete, "a", 5, 40, 50, ResOK)
	wantIllegal(t, h, "a")
}

func TestClaimTokensDecreasing(t *testing.T) {
	h := &hist{}
	h.claim("n1", "a", 9, 0, 10, ResOK).
		op("n1", OpFail, "a", 9, 20, 30, ResOK).
		claim("n2", "a", 7, 40, 50, ResOK).
		op("n2", OpComplete, "a", 7, 60, 70, ResOK)
	rep := wantIllegal(t, h, "a")
	if len(rep.TokenOrder) != 1 || !strings.Contains(rep.TokenOrder[0], "smaller token 7") {
		t.Fatalf("TokenOrder = %v", rep.TokenOrder)
	}
}

func TestTokenGrantedTwice(t *testing.T) {
	h := &hist{}
	h.claim("n1", "a", 5, 0, 10, ResOK).
		op("n1", OpComplete, "a", 5, 20, 30, ResOK).
		claim("n2", "b", 5, 40, 50, ResOK)
	rep := check(t, h)
	if rep.OK() || len(rep.Illegal) != 0 || len(rep.CrossTask) != 1 {
		t.Fatalf("want one cross-task violation only, got:\n%s", rep)
	}
}

func TestUnknownOutcomes(t *testing.T) {
	t.Run("complete unknown, not applied", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpComplete, "a", 5, 20, 30, ResUnknown).
			op("n0", OpExpire, "a", 5, 40, 50, ResOK) // lease was still there
		rep := wantOK(t, h)
		if rep.Unknown != 1 {
			t.Fatalf("Unknown = %d", rep.Unknown)
		}
	})
	t.Run("complete unknown, applied", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpComplete, "a", 5, 20, 30, ResUnknown).
			op("n1", OpRenew, "a", 5, 40, 50, ResRejected) // lease was gone
		wantOK(t, h)
	})
	t.Run("complete unknown, neither explains", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpComplete, "a", 5, 20, 30, ResUnknown).
			op("n1", OpRenew, "a", 5, 40, 50, ResRejected).
			op("n1", OpRenew, "a", 5, 60, 70, ResOK)
		wantIllegal(t, h, "a")
	})
	t.Run("renew unknown", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpRenew, "a", 5, 20, 30, ResUnknown).
			op("n1", OpRenew, "a", 5, 25, noRet, "").
			op("n1", OpComplete, "a", 5, 40, 50, ResOK)
		rep := wantOK(t, h)
		if rep.Unknown != 2 {
			t.Fatalf("Unknown = %d", rep.Unknown)
		}
	})
	t.Run("unknown fail frees the task", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpFail, "a", 5, 20, 30, ResUnknown).
			claim("n2", "a", 9, 40, 50, ResOK)
		wantOK(t, h)
	})
}

func TestGhostClaim(t *testing.T) {
	t.Run("explains orphan token", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpFail, "a", 5, 20, 30, ResOK).
			claim("n2", "", 0, 35, noRet, ""). // killed: may have leased a with 42
			op("n0", OpExpire, "a", 42, 100, 110, ResOK).
			claim("n1", "a", 50, 120, 130, ResOK)
		rep := wantOK(t, h)
		if rep.Ghosts != 1 || rep.Unknown != 1 {
			t.Fatalf("counts: %+v", rep)
		}
	})
	t.Run("ghost may apply after a rejection", func(t *testing.T) {
		// The claim timed out but was still in flight: it may have
		// applied after the rejected renew.
		h := &hist{}
		h.claim("n2", "", 0, 0, 5, ResUnknown).
			op("n1", OpRenew, "a", 42, 10, 20, ResRejected).
			op("n0", OpExpire, "a", 42, 30, 40, ResOK)
		wantOK(t, h)
	})
	t.Run("ghost lease blocks claims until used", func(t *testing.T) {
		// Only a ghost lease can explain 42, but from 20 on the task is
		// held under 30 and nothing releases it, so the ghost must apply
		// before the claim of 30, whose claim then finds the task leased.
		h := &hist{}
		h.claim("n2", "", 0, 0, noRet, "").
			claim("n1", "a", 30, 10, 20, ResOK).
			op("n0", OpExpire, "a", 42, 30, 40, ResOK)
		wantIllegal(t, h, "a")
	})
	t.Run("orphan token must exceed previous", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpFail, "a", 5, 20, 30, ResOK).
			claim("n2", "", 0, 35, noRet, "").
			op("n0", OpExpire, "a", 3, 100, 110, ResOK)
		wantIllegal(t, h, "a")
	})
	t.Run("no ghost available", func(t *testing.T) {
		h := &hist{}
		h.claim("n1", "a", 5, 0, 10, ResOK).
			op("n1", OpFail, "a", 5, 20, 30, ResOK).
			op("n0", OpExpire, "a", 42, 100, 110, ResOK)
		rep := wantIllegal(t, h, "a")
		if len(rep.CrossTask) != 1 {
			t.Fatalf("CrossTask = %v", rep.CrossTask)
		}
	})
	t.Run("ghost called too late", func(t *testing.T) {
		h := &hist{}
		h.op("n0", OpExpire, "a", 42, 100, 110, ResOK).
			claim("n2", "", 0, 120, noRet, "")
		wantIllegal(t, h, "a")
	})
	t.Run("one ghost cannot explain two tasks", func(t *testing.T) {
		h := &hist{}
		h.claim("n2", "", 0, 0, 5, ResUnknown).
			op("n0", OpExpire, "a", 42, 100, 110, ResOK).
			op("n0", OpExpire, "b", 43, 100, 110, ResOK)
		rep := check(t, h)
		if rep.OK() || len(rep.Illegal) != 0 || len(rep.CrossTask) != 1 {
			t.Fatalf("want a cross-task violation only, got:\n%s", rep)
		}
		// With a second unknown claim both are explained.
		h.claim("n3", "", 0, 50, noRet, "")
		wantOK(t, h)
	})
}

func writeLines(t *testing.T, dir, name string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(strings.Join(lines, "")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadFiles(t *testing.T) {
	dir := t.TempDir()
	n1 := writeLines(t, dir, "n1.jsonl",
		`{"p":"call","id":"n1/8f3a/1","node":"n1","op":"claim","task":"","token":0,"t":1732680000123456789}`+"\n",
		`{"p":"ret","id":"n1/8f3a/1","t":1732680000125456789,"res":"ok","task":"t-abc","token":4711}`+"\n",
		`{"p":"call","id":"n1/8f3a/2","node":"n1","op":"renew","task":"t-abc","token":4711,"t":1732680000126000000}`+"\n",
		`{"p":"ret","id":"n1/8f3a/2","t":1732680000127000000,"res":"ok","task":"t-abc","token":4711}`+"\n",
		// Killed: the complete call made it, its ret line did not (torn).
		`{"p":"call","id":"n1/8f3a/3","node":"n1","op":"complete","task":"t-abc","token":4711,"t":1732680000128000000}`+"\n",
		`{"p":"ret","id":"n1/8f3a/3","t":17326800001`,
	)
	// A complete last line without its newline is not truncated.
	n0 := writeLines(t, dir, "n0.jsonl",
		"\n",
		`{"p":"call","id":"n0/1/1","node":"n0","op":"expire","task":"t-abc","token":4711,"t":1732680000130000000}`+"\n",
		`{"p":"ret","id":"n0/1/1","t":1732680000131000000,"res":"none","task":"t-abc","token":4711}`,
	)
	recs, err := ReadFiles(n1, n0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 {
		t.Fatalf("got %d records, want 8", len(recs))
	}
	if last := recs[5]; last.P != PhaseTruncated || last.File != n1 || last.Line != 6 {
		t.Fatalf("torn line: %+v", last)
	}
	rep, err := Check(recs, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	// The complete has no ret: it may or may not have applied; the expire
	// found the lease moved on, which either allows.
	if !rep.OK() || rep.Truncated != 1 || rep.Unknown != 1 || rep.Ops != 4 || rep.Tasks != 1 {
		t.Fatalf("report: %+v", rep)
	}

	bad := writeLines(t, dir, "bad.jsonl",
		`{"p":"call","id":"x/1","node":"x","op":"claim","task":"","token":0,"t":1}`+"\n",
		`{"p":"ret","id":"x/1","t":2,"res"`+"\n",
		`{"p":"ret","id":"x/2","t":3,"res":"ok"}`+"\n",
	)
	if _, err := ReadFiles(bad); err == nil || !strings.Contains(err.Error(), "bad.jsonl:2") {
		t.Fatalf("garbage mid-file: err = %v", err)
	}
	badOp := writeLines(t, dir, "badop.jsonl",
		`{"p":"call","id":"x/1","node":"x","op":"steal","task":"a","token":1,"t":1}`+"\n",
		`{"p":"call","id":"x/2","node":"x","op":"claim","task":"","token":0,"t":1}`+"\n",
	)
	if _, err := ReadFiles(badOp); err == nil || !strings.Contains(err.Error(), "steal") {
		t.Fatalf("unknown op mid-file: err = %v", err)
	}
	if _, err := ReadFiles(filepath.Join(dir, "missing.jsonl")); err == nil {
		t.Fatal("missing file: no error")
	}
}

func TestMalformedHistory(t *testing.T) {
	for name, recs := range map[string][]Record{
		"ret without call": {{P: PhaseRet, ID: "x", T: 1, Res: ResOK}},
		"duplicate call": {
			{P: PhaseCall, ID: "x", Op: OpRenew, Task: "a", Token: 1, T: 1},
			{P: PhaseCall, ID: "x", Op: OpRenew, Task: "a", Token: 1, T: 2},
		},
		"duplicate ret": {
			{P: PhaseCall, ID: "x", Op: OpRenew, Task: "a", Token: 1, T: 1},
			{P: PhaseRet, ID: "x", T: 2, Res: ResOK},
			{P: PhaseRet, ID: "x", T: 3, Res: ResOK},
		},
		"claim ok without task": {
			{P: PhaseCall, ID: "x", Op: OpClaim, T: 1},
			{P: PhaseRet, ID: "x", T: 2, Res: ResOK},
		},
		"renew none": {
			{P: PhaseCall, ID: "x", Op: OpRenew, Task: "a", Token: 1, T: 1},
			{P: PhaseRet, ID: "x", T: 2, Res: ResNone},
		},
	} {
		if _, err := Check(recs, time.Second); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestHTML(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "viz")
	t.Setenv(HTMLEnv, dir)
	h := &hist{}
	h.claim("n1", "t/a", 5, 0, 10, ResOK).
		op("n0", OpExpire, "t/a", 5, 20, 30, ResOK).
		op("n1", OpComplete, "t/a", 5, 40, 50, ResOK).
		claim("n1", "b", 6, 0, 10, ResOK)
	wantIllegal(t, h, "t/a")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "t_a.html" {
		t.Fatalf("visualizations: %v", entries)
	}
	b, err := os.ReadFile(filepath.Join(dir, "t_a.html"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "complete(5)") {
		t.Fatal("visualization does not describe the ops")
	}
}

// sim drives a correct (or deliberately broken) lease state machine with
// random concurrent workers and records what they would log. Every
// operation's interval contains its apply point and apply points increase,
// so a correct machine's history is linearizable by construction.
type sim struct {
	rng         *rand.Rand
	h           hist
	phase       []phase
	token       []uint64
	idx         uint64            // raft index: tokens
	held        [][2]int64        // (task, token) leases workers believe they hold
	seen        [][2]int64        // every (task, token) ever granted, for stale expires
	ghostly     map[[2]int64]bool // leases granted by claims whose client never learned of them
	orphans     int               // expires of such leases: only a ghost claim explains them
	brokenFence bool              // renew/write check the token but not that the lease is live
}

func (s *sim) times(at int64) (int64, int64) {
	return at - s.rng.Int63n(150), at + s.rng.Int63n(150)
}

// outcome decides what the client learns: mostly the result, sometimes
// nothing (timeout, or killed before the ret line).
func (s *sim) outcome(res string) (string, bool) {
	if s.rng.Intn(20) == 0 {
		if s.rng.Intn(2) == 0 {
			return ResUnknown, true
		}
		return "", false
	}
	return res, true
}

func (s *sim) record(node, kind string, task int64, token uint64, at int64, res string) {
	call, ret := s.times(at)
	res, hasRet := s.outcome(res)
	if !hasRet {
		ret = noRet
	}
	s.h.op(node, kind, fmt.Sprintf("t%d", task), token, call, ret, res)
}

func (s *sim) step(at int64) {
	s.idx++
	r := s.rng.Intn(10)
	if len(s.held) == 0 && r >= 3 && r < 8 {
		r = 0
	}
	switch {
	case r < 3: // claim the oldest runnable task
		call, ret := s.times(at)
		task := -1
		for i, p := range s.phase {
			if p == idle {
				task = i
				break
			}
		}
		if s.rng.Intn(20) == 0 { // unknown outcome, maybe applied
			if task >= 0 && s.rng.Intn(2) == 0 {
				s.phase[task], s.token[task] = leased, s.idx
				s.seen = append(s.seen, [2]int64{int64(task), int64(s.idx)})
				s.ghostly[[2]int64{int64(task), int64(s.idx)}] = true
			}
			if s.rng.Intn(2) == 0 {
				ret = noRet
			}
			s.h.claim("w", "", 0, call, ret, ResUnknown)
			return
		}
		if task < 0 {
			s.h.claim("w", "", 0, call, ret, ResNone)
			return
		}
		s.phase[task], s.token[task] = leased, s.idx
		s.held = append(s.held, [2]int64{int64(task), int64(s.idx)})
		s.seen = append(s.seen, [2]int64{int64(task), int64(s.idx)})
		s.h.claim("w", fmt.Sprintf("t%d", task), s.idx, call, ret, ResOK)
	case r < 8: // a worker acts on a lease it believes it holds
		i := s.rng.Intn(len(s.held))
		task, tok := s.held[i][0], uint64(s.held[i][1])
		live := s.phase[task] == leased && s.token[task] == tok
		kind := []string{OpRenew, OpWrite, OpRenew, OpComplete, OpFail}[r-3]
		if s.brokenFence && (kind == OpRenew || kind == OpWrite) {
			live = s.token[task] == tok
		}
		res := ResRejected
		if live {
			res = ResOK
			switch kind {
			case OpComplete:
				s.phase[task] = done
			case OpFail:
				s.phase[task] = idle
			}
		}
		if kind == OpComplete || kind == OpFail || !live {
			s.held = append(s.held[:i], s.held[i+1:]...)
		}
		s.record("w", kind, task, tok, at, res)
	default: // the leader expires a lapsed lease, sometimes one already gone
		var leasedTasks []int
		for i, p := range s.phase {
			if p == leased {
				leasedTasks = append(leasedTasks, i)
			}
		}
		if len(leasedTasks) == 0 || s.rng.Intn(3) == 0 {
			if len(s.seen) == 0 {
				return
			}
			g := s.seen[s.rng.Intn(len(s.seen))]
			res := ResNone
			if s.phase[g[0]] == leased && s.token[g[0]] == uint64(g[1]) {
				res = ResOK
				s.phase[g[0]] = idle
				if s.ghostly[g] {
					s.orphans++
				}
			}
			s.record("l", OpExpire, g[0], uint64(g[1]), at, res)
			return
		}
		task := leasedTasks[s.rng.Intn(len(leasedTasks))]
		s.phase[task] = idle
		if s.ghostly[[2]int64{int64(task), int64(s.token[task])}] {
			s.orphans++
		}
		s.record("l", OpExpire, int64(task), s.token[task], at, ResOK)
	}
}

func simulate(seed int64, tasks, steps int, brokenFence bool) *sim {
	s := &sim{
		rng:         rand.New(rand.NewSource(seed)),
		phase:       make([]phase, tasks),
		token:       make([]uint64, tasks),
		ghostly:     map[[2]int64]bool{},
		brokenFence: brokenFence,
	}
	for i := 0; i < steps; i++ {
		s.step(int64(1000 + 100*i))
	}
	return s
}

func TestSimulatedCorrect(t *testing.T) {
	// ~30 operations per task, at the small and the large end of a chaos run.
	runs := []struct {
		seed         int64
		tasks, steps int
	}{{1, 300, 9000}, {2, 300, 9000}, {3, 3000, 90000}}
	if testing.Short() {
		runs = runs[:1]
	}
	for _, r := range runs {
		s := simulate(r.seed, r.tasks, r.steps, false)
		start := time.Now()
		rep, err := Check(s.h.recs, 30*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("seed %d, %d orphan tokens, %v: %s", r.seed, s.orphans, time.Since(start), rep)
		if !rep.OK() {
			t.Fatalf("seed %d: a correct state machine's history failed:\n%s", r.seed, rep)
		}
		if s.orphans == 0 || rep.Unknown == rep.Ghosts {
			t.Fatalf("seed %d: simulation exercised no orphan tokens (%d) or no unknown writes: %+v", r.seed, s.orphans, rep)
		}
	}
}

func TestSimulatedBrokenFencing(t *testing.T) {
	s := simulate(7, 300, 9000, true)
	rep, err := Check(s.h.recs, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(rep)
	if len(rep.Illegal) == 0 {
		t.Fatal("renews accepted after their lease expired went unnoticed")
	}
}

// Round-trip: what the harness writes is what ReadFiles reads.
func TestRecordJSON(t *testing.T) {
	line := `{"p":"ret","id":"n1/8f3a/17","t":1732680000125456789,"res":"ok","task":"t-abc","token":4711}`
	var r Record
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatal(err)
	}
	if r.P != PhaseRet || r.ID != "n1/8f3a/17" || r.T != 1732680000125456789 || r.Res != ResOK || r.Task != "t-abc" || r.Token != 4711 {
		t.Fatalf("%+v", r)
	}
}
