package main

import (
	"encoding/json"
	"flag"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/orloj/orloj/examples/standins"
)

// The support agent (examples/agents/support) on a real node against the
// stand-ins: a function-calling loop of three model turns, two lookups at
// once, then a reply (idempotent) and a refund (an unsafe tool) at once.
// The node is SIGKILLed while requests are held in the stand-ins, and
// restarted each time.

// supportSeed replays a logged run of the random kill tests.
var supportSeed = flag.Uint64("support.seed", 0, "seed of the support agent's random kill tests (0: from the clock)")

func seed(t *testing.T) uint64 {
	if *supportSeed != 0 {
		return *supportSeed
	}
	s := uint64(time.Now().UnixNano())
	t.Logf("seed %d (rerun with -support.seed %d)", s, s)
	return s
}

// withSupport gives the node what the support agent needs: the payments
// tool, declared unsafe, and the model endpoint "support" on the stand-ins'
// scripted model.
func withSupport(s *standins.Services) nodeOpt {
	return func(n *node) {
		eps, _ := json.Marshal([]map[string]string{{"name": "support", "base_url": s.URL + "/support/v1", "model": standins.SupportModel}})
		n.extra = append(n.extra, "--http-tool", "payments:unsafe", "--model-endpoints", string(eps))
	}
}

func startSupport(t *testing.T) (*standins.Services, *node) {
	t.Helper()
	s := startStandins(t)
	n := startNode(t, withSupport(s))
	n.ok("agent", "push", agent("support"), "--name", "support", "--tools", "http,payments,model")
	return s, n
}

func submitTicket(t *testing.T, s *standins.Services, n *node) string {
	t.Helper()
	in, _ := json.Marshal(map[string]string{"ticket_id": "T-1", "order_id": "O-1001", "email": "ann@example.com",
		"text":     "My order arrived damaged. Can I have my money back?",
		"shop_url": s.URL + "/shop", "helpdesk_url": s.URL + "/helpdesk", "payments_url": s.URL + "/payments"})
	return strings.TrimSpace(n.ok("task", "submit", "support", "--input", string(in)))
}

// supportKill is a point of the loop where the test kills the node: the
// requests held at holds have all arrived and, when recorded is set, that
// tool's call is in the ledger.
type supportKill struct {
	name     string
	holds    []standins.HoldPoint
	recorded string
	turn     int // the model turn in flight at the kill, if any
}

// supportKills are the points in loop order. None is between the refund's
// INTENT and its RESULT: a kill there is in doubt (TestSupportRefundInDoubt).
var supportKills = []supportKill{
	{name: "model turn 1 in flight", holds: []standins.HoldPoint{standins.HoldModelTurn1}, turn: 1},
	{name: "both lookups in flight", holds: []standins.HoldPoint{standins.HoldOrder, standins.HoldCustomer}},
	{name: "model turn 2 in flight", holds: []standins.HoldPoint{standins.HoldModelTurn2}, turn: 2},
	{name: "reply in flight, refund recorded", holds: []standins.HoldPoint{standins.HoldReply}, recorded: "payments"},
	{name: "model turn 3 in flight", holds: []standins.HoldPoint{standins.HoldModelTurn3}, turn: 3},
}

// waitHeld waits until a request is held at h.
func waitHeld(t *testing.T, n *node, h *standins.Hold, what string) {
	t.Helper()
	select {
	case <-h.Arrived():
	case <-time.After(60 * time.Second):
		t.Fatalf("no request reached the hold (%s) in 60 s\n%s", what, n.log)
	}
}

// waitInvoked waits until the ledger holds a result of a call to tool.
func waitInvoked(t *testing.T, n *node, id, tool string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var calls []callJSON
		n.okJSON(&calls, "task", "calls", id)
		if outcomes(calls)[tool]["invoked"] > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no recorded call to %s: %+v", tool, calls)
		}
		time.Sleep(20 * time.Millisecond) // a poll interval for an outside view
	}
}

// runSupportKills runs one ticket, killing the node at each point of plan
// in turn (after a random pause while held, when rng is set), and checks
// what the services and the ledger saw.
func runSupportKills(t *testing.T, plan []supportKill, rng *rand.Rand) {
	s, n := startSupport(t)
	arm := func(k supportKill) []*standins.Hold {
		var hs []*standins.Hold
		for _, p := range k.holds {
			hs = append(hs, s.HoldAt(p))
		}
		return hs
	}
	holds := arm(plan[0])
	id := submitTicket(t, s, n)
	for i, k := range plan {
		for _, h := range holds {
			waitHeld(t, n, h, k.name)
		}
		if k.recorded != "" {
			waitInvoked(t, n, id, k.recorded)
		}
		if rng != nil {
			time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) // a random point while held
		}
		if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
			t.Fatalf("exit code %d after SIGKILL", code)
		}
		for _, p := range k.holds {
			s.Release(p)
		}
		if i+1 < len(plan) {
			holds = arm(plan[i+1])
		}
		n.start()
	}
	n.ok("task", "wait", id, "--timeout", "2m")

	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	var out struct {
		Answer string
		Steps  int
	}
	if err := json.Unmarshal(tk.Output, &out); tk.State != "succeeded" || err != nil || out.Steps != 3 || !strings.Contains(out.Answer, "Refunded") {
		t.Fatalf("task %+v, output %s", tk, tk.Output)
	}
	if tk.Attempts != len(plan)+1 {
		t.Errorf("%d attempts, want %d (one per kill, and the last)", tk.Attempts, len(plan)+1)
	}
	// Each effect once; each finished turn and lookup never asked again.
	want := standins.Counts{Shop: 2, ReplyRequests: 1, RepliesWritten: 1, RefundRequests: 1, RefundsApplied: 1, SupportModelTurns: [3]int{1, 1, 1}}
	for _, k := range plan {
		if k.turn > 0 {
			want.SupportModelTurns[k.turn-1]++ // killed before it finished: asked again
		}
		if k.name == "both lookups in flight" {
			want.Shop += 2
		}
		if k.holds[0] == standins.HoldReply {
			want.ReplyRequests++ // sent again with the same key: not written again
		}
	}
	c := s.Counts()
	got := standins.Counts{Shop: c.Shop, ReplyRequests: c.ReplyRequests, RepliesWritten: c.RepliesWritten,
		RefundRequests: c.RefundRequests, RefundsApplied: c.RefundsApplied, SupportModelTurns: c.SupportModelTurns}
	if got != want {
		t.Errorf("the services saw\n %+v\nwant\n %+v", got, want)
	}
	var calls []callJSON
	n.okJSON(&calls, "task", "calls", id)
	o := outcomes(calls)
	if o["model"]["invoked"] != 3 || o["payments"]["invoked"] != 1 || o["payments"]["in_doubt"] != 0 {
		t.Errorf("calls %v: want 3 model turns and 1 refund invoked, nothing in doubt", o)
	}
}

// TestSupportAgentSurvivesKills: the node is killed while a lookup is in
// flight and while the reply is in flight after the refund was recorded;
// then at every point of the loop in one run; then at a random selection
// of points, each at a random moment while held. Every time the task
// succeeds, the helpdesk stores one reply, payments applies one refund, and
// a model turn is asked again only when the kill found it in flight.
func TestSupportAgentSurvivesKills(t *testing.T) {
	t.Parallel()
	t.Run("lookup and reply in flight", func(t *testing.T) {
		t.Parallel()
		runSupportKills(t, []supportKill{supportKills[1], supportKills[3]}, nil)
	})
	t.Run("every point", func(t *testing.T) {
		t.Parallel()
		runSupportKills(t, supportKills, nil)
	})
	t.Run("random points", func(t *testing.T) {
		t.Parallel()
		rng := rand.New(rand.NewPCG(seed(t), 0))
		var plan []supportKill
		for _, k := range supportKills {
			if rng.IntN(2) == 0 {
				plan = append(plan, k)
			}
		}
		if len(plan) == 0 {
			plan = append(plan, supportKills[rng.IntN(len(supportKills))])
		}
		var names []string
		for _, k := range plan {
			names = append(names, k.name)
		}
		t.Logf("kills: %s", strings.Join(names, "; "))
		runSupportKills(t, plan, rng)
	})
}

// TestSupportAgentKilledAtRandomTime kills the node at a random moment of
// the loop's first half (the model's turn 2, before which no refund can be
// sent, is held as a fence), not at a hold: wherever it lands — starting
// the guest, mid-commit, between a turn and its lookups — the task
// succeeds with each effect once, and at most the one turn or lookup the
// kill found unfinished is asked again.
func TestSupportAgentKilledAtRandomTime(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(seed(t), 1))
	delay := time.Duration(rng.IntN(400)) * time.Millisecond
	t.Logf("kill %s after the submission, or when turn 2 is asked", delay)
	s, n := startSupport(t)
	fence := s.HoldAt(standins.HoldModelTurn2)
	id := submitTicket(t, s, n)
	select {
	case <-time.After(delay):
	case <-fence.Arrived():
	}
	if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
		t.Fatalf("exit code %d after SIGKILL", code)
	}
	atKill := s.Counts()
	s.Release(standins.HoldModelTurn2)
	n.start()
	n.ok("task", "wait", id, "--timeout", "2m")
	c := s.Counts()
	if c.RepliesWritten != 1 || c.ReplyRequests != 1 || c.RefundsApplied != 1 || c.RefundRequests != 1 {
		t.Errorf("effects: %+v", c)
	}
	// The kill left at most one model turn unfinished, and turn 3 came
	// after it: every turn is asked once, one of turns 1 and 2 at most twice.
	t1, t2, t3 := c.SupportModelTurns[0], c.SupportModelTurns[1], c.SupportModelTurns[2]
	if t1 < 1 || t2 < 1 || t3 != 1 || t1+t2 > 3 || c.Shop > 4 || c.Shop < 2 {
		t.Errorf("model turns %v and %d lookups (at the kill: %v, %d)", c.SupportModelTurns, c.Shop, atKill.SupportModelTurns, atKill.Shop)
	}
	// What was asked after the kill was not finished before it.
	for k := range 2 {
		if atKill.SupportModelTurns[k] == 1 && c.SupportModelTurns[k] == 2 {
			t.Logf("turn %d was in flight at the kill and asked again", k+1)
		}
	}
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	if tk.State != "succeeded" {
		t.Fatalf("task %+v", tk)
	}
}

// TestSupportRefundInDoubt: the node dies while the refund (an unsafe
// tool's call: INTENT committed, no RESULT) is in flight. Whether payments
// applied it or not, the next attempt cannot know, so the task goes to the
// DLQ as in_doubt and payments is never sent the refund again — not by the
// restart, not by a DLQ retry.
func TestSupportRefundInDoubt(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		hold    standins.HoldPoint
		applied int
	}{
		{"held before it is applied", standins.HoldRefund, 0},
		{"applied, the answer lost", standins.HoldRefundApplied, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, n := startSupport(t)
			h := s.HoldAt(tc.hold)
			id := submitTicket(t, s, n)
			waitHeld(t, n, h, tc.name)
			if code := n.signal(syscall.SIGKILL, 30*time.Second); code != -1 {
				t.Fatalf("exit code %d after SIGKILL", code)
			}
			select { // the refund's caller is dead: let nothing through to it
			case <-h.Gone():
			case <-time.After(30 * time.Second):
				t.Fatal("the held refund's connection never closed")
			}
			s.Release(tc.hold)
			n.start()
			inDoubt := func(when string) {
				t.Helper()
				n.fails(1, []string{"dead_letter"}, "task", "wait", id, "--timeout", "2m")
				var tk taskJSON
				n.okJSON(&tk, "task", "get", id)
				if tk.State != "dead_letter" || tk.Error == nil || tk.Error.Class != "in_doubt" || !strings.Contains(tk.Error.Message, "payments") {
					t.Fatalf("%s: task %+v, error %+v", when, tk, tk.Error)
				}
				c := s.Counts()
				if c.RefundRequests != 1 || c.RefundsApplied != tc.applied {
					t.Fatalf("%s: payments saw %d requests and applied %d refunds; want 1 and %d", when, c.RefundRequests, c.RefundsApplied, tc.applied)
				}
				if c.SupportModelTurns != [3]int{1, 1, 0} {
					t.Errorf("%s: model turns %v, want turns 1 and 2 once and no turn 3", when, c.SupportModelTurns)
				}
			}
			inDoubt("after the restart")
			var calls []callJSON
			n.okJSON(&calls, "task", "calls", id)
			if o := outcomes(calls)["payments"]; o["in_doubt"] != 1 || o["invoked"] != 0 {
				t.Errorf("payments calls %v, want 1 in doubt", o)
			}
			// A retry keeps the ledger: the refund is still in doubt, for a
			// person to settle with the payments service.
			n.ok("dlq", "retry", id)
			inDoubt("after a DLQ retry")
		})
	}
}
