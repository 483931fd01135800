package chaos_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orloj/orloj/chaos/lincheck"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

var (
	long      = flag.Bool("chaos.long", false, "run the long fault run (make chaos): 600 tasks, 75 s of faults")
	heartbeat = flag.Duration("chaos.heartbeat", 0, "Raft heartbeat and election timeout of the nodes (0: orlojd's default)")
	nodes     = flag.Int("chaos.nodes", 3, "cluster size (3 or 5)")
	faultMix  = flag.String("chaos.faults", "mixed", "mixed (kills, pauses, partitions), leader-kill, or none (measures elections under load alone)")
)

// runParams size a run.
type runParams struct {
	nodes    int
	tasks    int
	faultFor time.Duration
	ttl      time.Duration
}

func params() runParams {
	if *long {
		return runParams{nodes: *nodes, tasks: 600, faultFor: 75 * time.Second, ttl: 1500 * time.Millisecond}
	}
	return runParams{nodes: *nodes, tasks: 60, faultFor: 20 * time.Second, ttl: 1500 * time.Millisecond}
}

// counter is the counting service the agent calls: it records every request
// by Idempotency-Key and applies each key's effect once.
type counter struct {
	mu      sync.Mutex
	byKey   map[string]int             // requests per key
	byStep  map[string]map[string]bool // "job/step" → keys seen
	applied int
	srv     *http.Server
	url     string
}

func startCounter(t *testing.T) *counter {
	c := &counter{byKey: map[string]int{}, byStep: map[string]map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.url = "http://" + ln.Addr().String()
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		job, step := r.URL.Query().Get("job"), r.URL.Query().Get("step")
		// Work takes a moment, so faults land mid-task.
		time.Sleep(time.Duration(50+rand.IntN(200)) * time.Millisecond)
		c.mu.Lock()
		c.byKey[key]++
		if c.byKey[key] == 1 {
			c.applied++
		}
		s := job + "/" + step
		if c.byStep[s] == nil {
			c.byStep[s] = map[string]bool{}
		}
		c.byStep[s][key] = true
		c.mu.Unlock()
		fmt.Fprintf(w, "done %s", s)
	})}
	go c.srv.Serve(ln)
	t.Cleanup(func() { c.srv.Close() })
	return c
}

// build compiles orlojd and the workload agent.
func build(t *testing.T) (bin, agent string) {
	dir := t.TempDir()
	bin, agent = filepath.Join(dir, "orlojd"), filepath.Join(dir, "sixcalls.wasm")
	for _, b := range []struct {
		out, pkg string
		wasm     bool
	}{{bin, "../cmd/orlojd", false}, {agent, "./testdata/sixcalls", true}} {
		cmd := exec.Command("go", "build", "-trimpath", "-o", b.out, b.pkg)
		cmd.Env = os.Environ()
		if b.wasm {
			cmd.Env = append(cmd.Env, "GOOS=wasip1", "GOARCH=wasm")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return bin, agent
}

type fault struct {
	kind      string // kill, pause, partition
	node      int
	wasLeader bool
	at        time.Time
	// termBefore is the highest Raft term just before the fault; a kill
	// after which it grew was followed by an election, so it is counted
	// with the leader's deaths, not the workers'.
	termBefore uint64
}

// jobOf is the job name a task's input carries.
func jobOf(tv api.TaskView) string {
	var in struct {
		Job string `json:"job"`
	}
	_ = json.Unmarshal(tv.Input, &in)
	return in.Job
}

// TestChaos runs a cluster under kills, pauses and partitions and checks
// that it loses nothing. See the package doc.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("fault harness: runs real processes for tens of seconds (skipped with -short)")
	}
	p := params()
	bin, agentPath := build(t)
	cnt := startCounter(t)
	h := newHarness(t, bin, p.nodes, p.ttl)
	h.heartbeat = *heartbeat
	ctx, cancel := context.WithTimeout(context.Background(), p.faultFor+5*time.Minute)
	defer cancel()

	// Bring the cluster up: n1 bootstraps, the others join through it.
	module, err := os.ReadFile(agentPath)
	if err != nil {
		t.Fatal(err)
	}
	h.form(ctx, func() {
		if err := h.pushAgent(ctx, module); err != nil {
			t.Fatal(err)
		}
	})

	// Submit the workload while faults run: every job gets an
	// idempotency key, so a submission retried after an error is not doubled.
	start := time.Now()
	ids := make([]string, p.tasks)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		gap := p.faultFor * 2 / 3 / time.Duration(p.tasks)
		for n := range p.tasks {
			ids[n] = h.submit(ctx, fmt.Sprintf("job-%04d", n), cnt.url)
			time.Sleep(gap) // pacing the load, not synchronizing
		}
	}()

	// Faults, one at a time, every 2–5 s.
	var faults []fault
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	t.Logf("fault seed time %s", start.Format(time.RFC3339Nano))
	termsBefore := h.maxTerm(ctx)
	// electionsSince marks the last fault if an election followed it.
	electionsSince := func() {
		if n := len(faults); n > 0 && faults[n-1].kind == "kill" && !faults[n-1].wasLeader && h.maxTerm(ctx) > faults[n-1].termBefore {
			faults[n-1].wasLeader = true
			t.Logf("the kill of %s was followed by an election: counted as a leader's death", h.procs[faults[n-1].node].id)
		}
	}
	for round := 0; time.Since(start) < p.faultFor; round++ {
		time.Sleep(time.Duration(2000+rng.IntN(3000)) * time.Millisecond)
		if *faultMix == "none" {
			continue
		}
		electionsSince()
		termBefore := h.maxTerm(ctx)
		leader := h.leader(ctx)
		target := rng.IntN(p.nodes)
		// Half the faults are kills; every other kill takes the leader, the
		// others a worker.
		kind := []string{"kill", "pause", "kill", "partition"}[round%4]
		if *faultMix == "leader-kill" {
			if leader < 0 {
				continue
			}
			kind = "kill"
		}
		switch {
		case kind == "kill" && leader >= 0 && (round%4 == 0 || *faultMix == "leader-kill"):
			target = leader
		case kind == "kill" && leader >= 0 && target == leader:
			target = (leader + 1 + rng.IntN(p.nodes-1)) % p.nodes // a worker, not the leader
		}
		f := fault{kind: kind, node: target, wasLeader: target == leader, at: time.Now(), termBefore: termBefore}
		switch kind {
		case "kill":
			h.kill(target)
			time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond) // down for a while
			h.start(target, h.procs[(target+1)%p.nodes].raft)
		case "pause":
			h.signal(target, syscall.SIGSTOP)
			time.Sleep(time.Duration(float64(p.ttl) * (0.5 + 2.5*rng.Float64())))
			h.signal(target, syscall.SIGCONT)
		case "partition":
			h.partition(target, true)
			time.Sleep(time.Duration(1000+rng.IntN(3000)) * time.Millisecond)
			h.partition(target, false)
		}
		faults = append(faults, f)
		t.Logf("%6.1fs  %-9s %s (leader: %v)", time.Since(start).Seconds(), kind, h.procs[target].id, f.wasLeader)
	}
	wg.Wait()
	// Once a leader is known, any election the last fault caused is over.
	await(t, 30*time.Second, "a leader after the last fault", func() bool { return h.leader(ctx) >= 0 })
	electionsSince()
	elections := h.maxTerm(ctx) - termsBefore
	for i := range h.procs {
		if !h.alive(i) {
			h.start(i, h.procs[(i+1)%p.nodes].raft)
		}
	}

	// Heal done: every task must end.
	var final map[string]api.TaskView
	await(t, 3*time.Minute, "every task to succeed or dead-letter", func() bool {
		final = h.tasks(ctx, ids)
		return final != nil
	})
	healed := time.Since(start)
	report := checkRun(t, h, cnt, ids, final, faults, p)
	report = append(report, fmt.Sprintf("run: %d nodes, %d tasks, %d faults (%s) over %s, all final %s after start; Raft timeouts %s; %d elections while faults ran",
		p.nodes, p.tasks, len(faults), *faultMix, p.faultFor.Round(time.Second), healed.Round(time.Second), orDefault(*heartbeat), elections))
	fmt.Println("chaos figures:\n  " + strings.Join(report, "\n  "))
}

func (h *harness) pushAgent(ctx context.Context, module []byte) error {
	return h.push(ctx, "sixcalls", "http", module)
}

// submit retries a submission on every live node until one takes it.
func (h *harness) submit(ctx context.Context, job, url string) string {
	body := map[string]any{"agent": "sixcalls", "version": "v1", "idempotency_key": job, "max_attempts": 25,
		"input": map[string]string{"url": url, "job": job}, "retry": map[string]any{"base": "100ms", "factor": 2, "cap": "500ms"}}
	for try := 0; ; try++ {
		for i := range h.procs {
			if !h.alive(i) {
				continue
			}
			var tv api.TaskView
			cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
			_, err := h.call(cctx, (i+try)%len(h.procs), "POST", "/v1/tasks", body, &tv)
			cancel()
			if err == nil {
				return tv.ID
			}
			if ctx.Err() != nil {
				h.t.Errorf("submit %s: %v", job, err)
				return ""
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tasks returns every task's view once all are final, else nil.
func (h *harness) tasks(ctx context.Context, ids []string) map[string]api.TaskView {
	for i := range h.procs {
		out := map[string]api.TaskView{}
		ok := true
		for _, id := range ids {
			var tv api.TaskView
			if _, err := h.call(ctx, i, "GET", "/v1/tasks/"+id, nil, &tv); err != nil {
				ok = false
				break
			}
			if !tv.State.Final() {
				return nil
			}
			out[id] = tv
		}
		if ok {
			return out
		}
	}
	return nil
}

// checkRun asserts the run's invariants and returns its figures.
func checkRun(t *testing.T, h *harness, cnt *counter, ids []string, final map[string]api.TaskView, faults []fault, p runParams) []string {
	var report []string
	// 1. Nothing lost: every submitted task ended, dead letters with a reason.
	succeeded, dead := 0, 0
	for _, id := range ids {
		tv, ok := final[id]
		switch {
		case id == "" || !ok:
			t.Errorf("task %q lost", id)
		case tv.State == cluster.StateSucceeded:
			succeeded++
		case tv.Error == nil || tv.Error.Message == "":
			t.Errorf("task %s dead-lettered without a reason", id)
		case tv.Error.Class != cluster.ClassExhausted:
			// The workload has no poison: only running out of attempts
			// under faults may dead-letter a task.
			t.Errorf("task %s dead-lettered: %s: %s", id, tv.Error.Class, tv.Error.Message)
		default:
			dead++
		}
	}
	report = append(report, fmt.Sprintf("tasks: %d submitted, %d succeeded, %d dead-lettered, %d lost", len(ids), succeeded, dead, len(ids)-succeeded-dead))
	for _, tv := range final {
		if tv.State == cluster.StateDeadLetter && tv.Error != nil {
			report = append(report, fmt.Sprintf("a dead letter: %s: %s: %s", tv.ID, tv.Error.Class, tv.Error.Message))
			break
		}
	}

	// 2. One effect per tool call: one key per (job, step), and a key sent
	// again only for tasks that had an attempt end.
	cnt.mu.Lock()
	repeats := 0
	for _, tv := range final {
		for step := 1; step <= 6; step++ {
			keys := cnt.byStep[fmt.Sprintf("%s/%d", jobOf(tv), step)]
			if tv.State == cluster.StateSucceeded && len(keys) != 1 || len(keys) > 1 {
				t.Errorf("task %s step %d: %d distinct keys, want 1", tv.ID, step, len(keys))
			}
			for k := range keys {
				if n := cnt.byKey[k]; n > 1 {
					repeats++
					if tv.Attempts < 2 {
						t.Errorf("task %s step %d: key sent %d times in a single attempt", tv.ID, step, n)
					}
				}
			}
		}
	}
	applied := cnt.applied
	cnt.mu.Unlock()
	report = append(report, fmt.Sprintf("effects: %d applied for %d succeeded tasks × 6 calls; %d keys re-sent after a lost attempt (deduplicated)", applied, succeeded, repeats))
	if applied != succeeded*6+partialEffects(cnt, final) {
		t.Errorf("effects applied = %d, want one per call made", applied)
	}

	// 3–4. Lease history: linearizable, tokens increasing per task.
	var files []string
	for _, pr := range h.procs {
		files = append(files, pr.history)
	}
	recs, err := lincheck.ReadFiles(files...)
	if err != nil {
		t.Fatalf("read histories: %v", err)
	}
	lin, err := lincheck.Check(recs, time.Minute)
	if err != nil {
		t.Fatalf("check histories: %v", err)
	}
	if !lin.OK() {
		t.Errorf("lease history is not linearizable:\n%s", lin)
	}
	report = append(report, "lease history: "+strings.ReplaceAll(lin.String(), "\n", "; "))

	// Every node's workers ran tasks: followers' completions went through
	// the leader.
	completed := map[string]int{}
	ops, err := lincheck.Operations(recs)
	if err != nil {
		t.Fatalf("pair histories: %v", err)
	}
	for _, o := range ops {
		if o.Op == "complete" && o.Res == "ok" {
			completed[o.Node]++
		}
	}
	if len(completed) < 2 {
		t.Errorf("tasks completed by %v: want workers on more than one node", completed)
	}
	report = append(report, fmt.Sprintf("completions by node: %v", completed))

	// 5. Replicas agree once quiet.
	var states []api.StateView
	await(t, time.Minute, "every replica to apply the same index", func() bool {
		states = states[:0]
		for i := range h.procs {
			var s api.StateView
			if _, err := h.call(context.Background(), i, "GET", "/v1/cluster/state", nil, &s); err != nil {
				return false
			}
			states = append(states, s)
		}
		return slices.IndexFunc(states, func(s api.StateView) bool { return s.AppliedIndex != states[0].AppliedIndex }) < 0
	})
	for _, s := range states[1:] {
		if s.Hash != states[0].Hash {
			t.Errorf("replica %s at index %d has hash %.16s, %s has %.16s", s.Node, s.AppliedIndex, s.Hash, states[0].Node, states[0].Hash)
		}
	}
	report = append(report, fmt.Sprintf("replicas: %d at index %d, state hash %.16s (identical: %v); fenced writes rejected: %d",
		len(states), states[0].AppliedIndex, states[0].Hash, !t.Failed(), states[0].FenceRejections))

	// 6. Takeover figures.
	workerTake, leaderResume, toExpiry := takeovers(ops, faults)
	if len(workerTake) > 0 {
		p99 := percentile(workerTake, 0.99)
		report = append(report, fmt.Sprintf("worker SIGKILL → task re-leased: p50 %s, p99 %s, n=%d (limit TTL+2s = %s)",
			percentile(workerTake, 0.5), p99, len(workerTake), p.ttl+2*time.Second))
		if len(toExpiry) > 0 {
			report = append(report, fmt.Sprintf("  of which until the lease expired: p50 %s, p99 %s", percentile(toExpiry, 0.5), percentile(toExpiry, 0.99)))
		}
		if p99 > p.ttl+2*time.Second {
			t.Errorf("worker takeover p99 %s exceeds TTL+2s", p99)
		}
	}
	if len(leaderResume) > 0 {
		p99 := percentile(leaderResume, 0.99)
		report = append(report, fmt.Sprintf("leader SIGKILL → writes resume: p50 %s, p99 %s, n=%d (limit 5s)", percentile(leaderResume, 0.5), p99, len(leaderResume)))
		if p99 > 5*time.Second {
			t.Errorf("leader failover p99 %s exceeds 5s", p99)
		}
	}
	return report
}

// partialEffects counts the effects of dead-lettered tasks (calls made
// before they gave up).
func partialEffects(c *counter, final map[string]api.TaskView) int {
	n := 0
	for _, tv := range final {
		if tv.State != cluster.StateSucceeded {
			for step := 1; step <= 6; step++ {
				n += len(c.byStep[fmt.Sprintf("%s/%d", jobOf(tv), step)])
			}
		}
	}
	return n
}

// takeovers measures, from the merged history: for each SIGKILL of a
// non-leader, how long until each task it held was claimed by another
// node; for each SIGKILL of the leader, how long until any write succeeded.
//
// toExpiry is, for the worker takeovers, the part until the leader expired
// the lease; the rest is backoff and waiting for a free worker.
func takeovers(all []lincheck.Operation, faults []fault) (worker, leader, toExpiry []time.Duration) {
	var ops []lincheck.Operation
	for _, o := range all {
		if o.Ret > 0 { // measured only on what returned
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].Ret < ops[j].Ret })
	for _, f := range faults {
		if f.kind != "kill" {
			continue
		}
		k := f.at.UnixNano()
		node := fmt.Sprintf("n%d", f.node+1)
		if f.wasLeader {
			for _, o := range ops {
				if o.Call >= k && o.Res == "ok" {
					leader = append(leader, time.Duration(o.Ret-k))
					break
				}
			}
			continue
		}
		// Tasks node held at k: its last ok claim before k, not ended by k.
		held := map[string]bool{}
		for _, o := range ops {
			if o.Ret >= k {
				break
			}
			if o.Res != "ok" {
				continue
			}
			switch o.Op {
			case "claim":
				if o.Node == node {
					held[o.Task] = true
				} else {
					delete(held, o.Task)
				}
			case "complete", "fail", "expire":
				delete(held, o.Task)
			}
		}
		for task := range held {
			var expired int64
			for _, o := range ops {
				if o.Ret > k && o.Op == "expire" && o.Res == "ok" && o.Task == task && expired == 0 {
					expired = o.Ret
				}
				// By any node, the restarted one included.
				if o.Call > k && o.Op == "claim" && o.Res == "ok" && o.Task == task {
					worker = append(worker, time.Duration(o.Ret-k))
					if expired > 0 {
						toExpiry = append(toExpiry, time.Duration(expired-k))
					}
					break
				}
			}
		}
	}
	return worker, leader, toExpiry
}

func percentile(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(q*float64(len(s))))].Round(time.Millisecond)
}

func orDefault(d time.Duration) string {
	if d == 0 {
		return "default"
	}
	return d.String()
}
