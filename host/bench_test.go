package host

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
	"github.com/orloj/orloj/telemetry"
)

// Benchmarks of issue 3's targets, on one real node (Raft on loopback, real
// disk under b.TempDir, the default log store):
//
//   - BenchmarkReplayedCall: a call whose result is in the ledger, ≤ 10 µs.
//     "direct" is ledgerDispatcher.Call alone; "guest" is the whole
//     guest→host→ledger→guest round trip of a Go agent.
//   - BenchmarkRecordedCall: a new call, intent and result through Raft, the
//     tool answering at once: ≤ 1 ms p50.
//   - BenchmarkTask6Calls: submit → succeeded of a task making 6 tool calls
//     (tools answering at once): ≤ 15 ms p50 one at a time, ≥ 300 tasks/s
//     with many in flight.
//
// Run with
//
//	go test -run '^$' -bench . -benchmem ./host/
//
// Modules come from the on-disk compile cache (testCacheDir) and are
// compiled before the clock starts. docs/BENCHMARKS.md has the figures.

// benchEnv is one node (Raft on loopback, real disk under b.TempDir) with
// the given Raft log store ("" = the default) and no workers running:
// benchmarks drive attempts by hand or start a pool of their own. Raft's
// start-up chatter (a single node's first election) is kept out of the
// output; errors still show.
func benchEnv(b *testing.B, store string, tools ...plugins.Tool) *env {
	b.Helper()
	reg, err := plugins.NewRegistry(tools...)
	if err != nil {
		b.Fatal(err)
	}
	e := &env{t: b, dir: b.TempDir(), addr: freeAddr(b), tools: reg, ttl: 30 * time.Second,
		log: hclog.New(&hclog.LoggerOptions{Output: logWriter{b}, Level: hclog.Error})}
	cfg := nodeConfig(e.dir, e.addr, e.log)
	cfg.LogStore = store
	n, err := cluster.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	e.node = n
	b.Cleanup(e.close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		b.Fatal(err)
	}
	e.exec = NewExecutor(n, runtime(b), e.tools, time.Now, e.log)
	return e
}

// benchPushAgent registers an agent version with its module (in chunks when
// large), allowing tools.
func benchPushAgent(b *testing.B, e *env, name, wasmPath string, tools ...string) cluster.Agent {
	b.Helper()
	wasm, err := os.ReadFile(wasmPath)
	if err != nil {
		b.Fatal(err)
	}
	ag, err := cluster.ProposeAgent(context.Background(), e.node, cluster.Agent{Name: name, Version: "v1",
		Manifest: cluster.AgentManifest{Tools: tools, Timeout: 20 * time.Second}}, wasm, time.Now().UnixNano())
	if err != nil {
		b.Fatal(err)
	}
	return ag
}

// benchAgent builds one of testdata/agents as a reactor next to the other
// test agents (TestMain removes them), once per binary: an attempt then
// starts from the agent's snapshot, as production agents built for Orloj
// do, and the benchmarks measure the calls rather than a Go runtime
// starting in every attempt.
type benchAgent struct {
	name string
	once sync.Once
	err  error
}

var (
	callloopAgent = &benchAgent{name: "callloop"}
	stepsReactor  = &benchAgent{name: "steps"}
)

func (a *benchAgent) path(b *testing.B) string {
	b.Helper()
	agentPath(b, "steps") // makes buildDir
	out := filepath.Join(buildDir, a.name+"-reactor.wasm")
	a.once.Do(func() {
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/agents/"+a.name)
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if o, err := cmd.CombinedOutput(); err != nil {
			a.err = fmt.Errorf("build %s: %v\n%s", a.name, err, o)
		}
	})
	if a.err != nil {
		b.Fatal(a.err)
	}
	return out
}

func callloopPath(b *testing.B) string { return callloopAgent.path(b) }

// claimTask registers agent (tools allowed), submits a task and claims it.
func (e *env) claimTask(id string, agent cluster.Agent, input any) *cluster.Claim {
	e.t.Helper()
	in, _ := json.Marshal(input)
	e.apply(&cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: agent.Name, Version: agent.Version, Input: in}, Now: time.Now().UnixNano()})
	c, ok := e.apply(&cluster.ClaimTask{Node: "bench", TTL: time.Hour, Now: time.Now().UnixNano()}).(*cluster.Claim)
	if !ok || c.Task.ID != id {
		e.t.Fatalf("claim of %s: %+v", id, c)
	}
	return c
}

func reportLatency(b *testing.B, durs []time.Duration) {
	if len(durs) == 0 {
		return
	}
	slices.Sort(durs)
	pct := func(p int) float64 { return float64(durs[(len(durs)-1)*p/100]) / 1e3 }
	b.ReportMetric(pct(50), "p50-µs")
	b.ReportMetric(pct(99), "p99-µs")
}

// resultOf returns a JSON string result of about size bytes.
func resultOf(size int) json.RawMessage {
	return json.RawMessage(`"` + strings.Repeat("x", max(size-2, 0)) + `"`)
}

var benchParams = json.RawMessage(`{"document":"https://files.example.com/blobs/invoice-000001.pdf","lang":"en"}`)

// countingTool answers at once with body and counts invocations.
func countingTool(name string, body json.RawMessage, n *atomic.Int64) plugins.Tool {
	return plugins.NewStub(name, plugins.Idempotent, func(context.Context, plugins.Call) (plugins.Result, error) {
		n.Add(1)
		return plugins.Result{Body: body}, nil
	})
}

// BenchmarkReplayedCall: a tool call whose RESULT is in the ledger.
func BenchmarkReplayedCall(b *testing.B) {
	for _, size := range []int{100, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("direct/result=%dB", size), func(b *testing.B) { benchReplayDirect(b, size, nil) })
	}
	// The same with tracing on: a span per call, exported to nothing.
	b.Run("direct-traced/result=100B", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()), sdktrace.WithIDGenerator(telemetry.IDGenerator()))
		defer tp.Shutdown(context.Background())
		benchReplayDirect(b, 100, NewTracing(tp, "n1"))
	})
	for _, size := range []int{100, 1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("guest/result=%dB", size), func(b *testing.B) { benchReplayGuest(b, size, guestLedger) })
	}
	// The same guest against a dispatcher that answers every call at once
	// from memory: what the guest, the SDK and the sandbox cost per call
	// without the ledger.
	b.Run("guest-nop/result=100B", func(b *testing.B) { benchReplayGuest(b, 100, guestNop) })
	// No call at all: the guest only encodes each request as the SDK does.
	b.Run("guest-encode-only", func(b *testing.B) { benchReplayGuest(b, 100, guestEncodeOnly) })
}

// nopLedger answers every call with a fixed body and no ledger.
type nopLedger struct {
	*ledgerDispatcher
	body []byte
}

func (n nopLedger) Call(context.Context, abi.CallRequest) ([]byte, error) { return n.body, nil }

// benchReplayDirect: ledgerDispatcher.Call on a recorded call: identify,
// allow-list, a Badger read of the record, decode, journal event. Between
// calls the dispatcher forgets which calls it has seen (a map clear), so the
// same recorded call is looked up each time, as a retry would.
func benchReplayDirect(b *testing.B, size int, tracing *Tracing) {
	var invoked atomic.Int64
	e := benchEnv(b, "", countingTool("fetch", resultOf(size), &invoked))
	ag := e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "bench", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"fetch"}}},
		Module: []byte("not run"), Now: time.Now().UnixNano()}).(cluster.Agent)
	claim := e.claimTask("replay", ag, nil)
	d, err := newLedgerDispatcher(e.node, e.tools, claim, ag, time.Now, e.log)
	if err != nil {
		b.Fatal(err)
	}
	d.tracing = tracing
	ctx, span := tracing.startAttempt(context.Background(), claim)
	defer tracing.endAttempt(span, AttemptReport{Succeeded: true})
	req := abi.CallRequest{Tool: "fetch", Params: benchParams}
	if _, err := d.Call(ctx, req); err != nil { // records it
		b.Fatal(err)
	}
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		clear(d.occurrences)
		d.events, d.eventBytes = d.events[:0], 0
		res, err := d.Call(ctx, req)
		if err != nil || len(res) != size {
			b.Fatalf("replay: %d bytes, %v", len(res), err)
		}
	}
	b.StopTimer()
	if invoked.Load() != 1 {
		b.Fatalf("tool invoked %d times, want 1 (replays must not invoke)", invoked.Load())
	}
}

// What the guest's calls are served by, in benchReplayGuest.
const (
	guestLedger     = iota // calls served by the ledger (replayed)
	guestNop               // calls answered from memory, no ledger
	guestEncodeOnly        // no calls: the guest only encodes the requests
)

// benchReplayGuest: a Go agent (testdata/agents/callloop) makes n calls, all
// recorded by an earlier attempt, in one sandbox run; the same agent making
// no calls is run alternately. ns/call = (time with n calls - time with none)
// / n: the guest's SDK encoding, the host function, request decoding and
// canonicalization, the dispatcher's ledger hit and the copy back.
func benchReplayGuest(b *testing.B, size int, mode int) {
	nop := mode != guestLedger
	const n = 100
	var invoked atomic.Int64
	e := benchEnv(b, "", countingTool("fetch", resultOf(size), &invoked))
	ag := benchPushAgent(b, e, "callloop", callloopPath(b), "fetch")
	mod, err := e.exec.module(context.Background(), ag)
	if err != nil {
		b.Fatal(err)
	}
	rt := runtime(b)
	ctx := context.Background()
	run := func(claim *cluster.Claim) time.Duration {
		d, err := newLedgerDispatcher(e.node, e.tools, claim, ag, time.Now, e.log)
		if err != nil {
			b.Fatal(err)
		}
		var disp sandbox.Dispatcher = d
		if nop {
			disp = nopLedger{d, resultOf(size)}
		}
		t0 := time.Now()
		res := rt.Run(ctx, mod, sandbox.RunConfig{TaskID: claim.Task.ID, Dispatcher: disp, Timeout: time.Minute})
		took := time.Since(t0)
		if res.Outcome != sandbox.OutcomeSuccess {
			b.Fatalf("run: %v %v %s", res.Outcome, res.Err, res.Stderr)
		}
		return took
	}
	in := map[string]any{"tool": "fetch", "params": benchParams, "n": n}
	if mode == guestEncodeOnly {
		in["mode"] = "encode"
	}
	calls := e.claimTask("calls", ag, in)
	none := e.claimTask("none", ag, map[string]any{"tool": "fetch", "params": benchParams, "n": 0})
	run(calls) // records the n calls
	if !nop && invoked.Load() != n {
		b.Fatalf("first run invoked %d, want %d", invoked.Load(), n)
	}
	var with, without time.Duration
	b.ResetTimer()
	for b.Loop() {
		with += run(calls)
		without += run(none)
	}
	b.StopTimer()
	if !nop && invoked.Load() != n {
		b.Fatalf("tool invoked %d times during replays", invoked.Load()-n)
	}
	b.ReportMetric(float64(with-without)/float64(b.N*n), "ns/call")
}

// BenchmarkRecordedCall: a new call through ledgerDispatcher.Call: ledger
// miss, INTENT through Raft, the tool (answering at once), RESULT through
// Raft. One caller at a time, so each call pays two full Raft rounds.
func BenchmarkRecordedCall(b *testing.B) {
	for _, store := range benchStores {
		b.Run("store="+store, func(b *testing.B) { benchRecordedCall(b, store) })
	}
}

// benchStores are the Raft log stores compared end to end.
var benchStores = []string{cluster.LogStoreBolt, cluster.LogStoreWAL}

func benchRecordedCall(b *testing.B, store string) {
	var invoked atomic.Int64
	e := benchEnv(b, store, countingTool("fetch", resultOf(1<<10), &invoked))
	ag := e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "bench", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"fetch"}}},
		Module: []byte("not run"), Now: time.Now().UnixNano()}).(cluster.Agent)
	claim := e.claimTask("record", ag, nil)
	d, err := newLedgerDispatcher(e.node, e.tools, claim, ag, time.Now, e.log)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	req := abi.CallRequest{Tool: "fetch", Params: benchParams}
	durs := make([]time.Duration, 0, 1024)
	b.ResetTimer()
	for b.Loop() {
		d.events, d.eventBytes = d.events[:0], 0
		t0 := time.Now()
		// Same params each time: the occurrence count makes each a new call.
		if _, err := d.Call(ctx, req); err != nil {
			b.Fatal(err)
		}
		durs = append(durs, time.Since(t0))
	}
	b.StopTimer()
	if int(invoked.Load()) != len(durs) {
		b.Fatalf("tool invoked %d times for %d calls", invoked.Load(), len(durs))
	}
	reportLatency(b, durs)
}

// sixSteps is the input of the steps agent for a 6-call task: six tools,
// as a document pipeline would call them.
var sixTools = []string{"fetch", "ocr", "classify", "extract", "record", "notify"}

func sixSteps(i int) map[string]any {
	steps := make([]any, len(sixTools))
	for k, t := range sixTools {
		steps[k] = map[string]any{"tool": t, "params": map[string]any{"doc": i, "step": k}}
	}
	return map[string]any{"steps": steps}
}

// taskBench is a node with its own pool whose attempts are reported to the
// waiters of their task.
type taskBench struct {
	e       *env
	mu      sync.Mutex
	waiters map[string]chan AttemptReport
	seq     atomic.Int64
}

// newTaskBench starts a pool running the steps agent, built as a reactor,
// or as a command module with command set.
func newTaskBench(b *testing.B, store string, workers int, command ...bool) *taskBench {
	b.Helper()
	tools := make([]plugins.Tool, len(sixTools))
	for k, name := range sixTools {
		tools[k] = plugins.NewStub(name, plugins.Idempotent, func(_ context.Context, c plugins.Call) (plugins.Result, error) {
			return plugins.Result{Body: json.RawMessage(`{"ok":true,"step":"` + name + `"}`)}, nil
		})
	}
	tb := &taskBench{e: benchEnv(b, store, tools...), waiters: map[string]chan AttemptReport{}}
	module := stepsReactor.path(b)
	if len(command) > 0 && command[0] {
		module = agentPath(b, "steps")
	}
	benchPushAgent(b, tb.e, "steps", module, sixTools...)
	cfg := DefaultPoolConfig()
	cfg.NodeID, cfg.Workers, cfg.Logger = "n1", workers, tb.e.log
	cfg.OnAttempt = func(r AttemptReport) {
		tb.mu.Lock()
		ch := tb.waiters[r.TaskID]
		delete(tb.waiters, r.TaskID)
		tb.mu.Unlock()
		if ch != nil {
			ch <- r
		}
	}
	p, err := NewPool(cfg, tb.e.node, tb.e.exec)
	if err != nil {
		b.Fatal(err)
	}
	tb.e.pool = p // stopped by the env's cleanup
	p.Start(context.Background())
	for range 3 { // compile (from the file cache) and warm up
		tb.run(b)
	}
	return tb
}

// run submits one 6-call task and waits until it has succeeded.
func (tb *taskBench) run(b *testing.B) time.Duration {
	n := tb.seq.Add(1)
	id := fmt.Sprintf("t-%08d", n)
	in, _ := json.Marshal(sixSteps(int(n)))
	ch := make(chan AttemptReport, 1)
	tb.mu.Lock()
	tb.waiters[id] = ch
	tb.mu.Unlock()
	t0 := time.Now()
	_, err := tb.e.node.Apply(context.Background(), &cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: "steps", Version: "v1", Input: in}, Now: time.Now().UnixNano()})
	if err != nil {
		b.Error(err)
		return 0
	}
	select {
	case r := <-ch:
		if !r.Succeeded {
			b.Errorf("task %s: attempt %d failed: %v (%s)", id, r.Attempt, r.Err, r.Result.Stderr)
		}
	case <-time.After(30 * time.Second):
		b.Errorf("task %s: not done after 30s", id)
	}
	return time.Since(t0)
}

// BenchmarkTask6Calls: a 6-call task end to end, submit → succeeded.
// "seq" submits one task at a time to a pool of 4 workers (the default);
// "par64" keeps 64 tasks in flight. ns/op is wall time per task;
// raft-entries/task counts every log entry the node wrote meanwhile (submit,
// claims, intents, results, completion, and claims that found nothing).
func BenchmarkTask6Calls(b *testing.B) {
	for _, store := range benchStores {
		b.Run("seq/store="+store+"/workers=4", func(b *testing.B) {
			tb := newTaskBench(b, store, 4)
			durs := make([]time.Duration, 0, 256)
			first := tb.e.node.Raft().LastIndex()
			b.ResetTimer()
			start := time.Now()
			for b.Loop() {
				durs = append(durs, tb.run(b))
				if b.Failed() {
					b.FailNow()
				}
			}
			b.ReportMetric(float64(len(durs))/time.Since(start).Seconds(), "tasks/s")
			b.ReportMetric(float64(tb.e.node.Raft().LastIndex()-first)/float64(len(durs)), "raft-entries/task")
			reportLatency(b, durs)
		})
	}
	for _, c := range []struct {
		store   string
		workers int
		command bool
	}{{cluster.LogStoreBolt, 8, false}, {cluster.LogStoreWAL, 4, false}, {cluster.LogStoreWAL, 8, false}, {cluster.LogStoreWAL, 16, false},
		{cluster.LogStoreWAL, 8, true}} {
		name := fmt.Sprintf("par64/store=%s/workers=%d", c.store, c.workers)
		if c.command {
			name += "/agent=command"
		}
		b.Run(name, func(b *testing.B) {
			tb := newTaskBench(b, c.store, c.workers, c.command)
			const clients = 64
			var next atomic.Int64
			lat := make([][]time.Duration, clients)
			var wg sync.WaitGroup
			first := tb.e.node.Raft().LastIndex()
			b.ResetTimer()
			start := time.Now()
			for c := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(b.N) && !b.Failed() {
						lat[c] = append(lat[c], tb.run(b))
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if b.Failed() {
				b.FailNow()
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "tasks/s")
			b.ReportMetric(float64(tb.e.node.Raft().LastIndex()-first)/float64(b.N), "raft-entries/task")
			reportLatency(b, slices.Concat(lat...))
		})
	}
}

// BenchmarkTask6CallsAfterHistory is BenchmarkTask6Calls' seq case on a
// node that has already run N tasks (64 at a time): nothing a task costs
// should grow with the tasks that finished before it.
func BenchmarkTask6CallsAfterHistory(b *testing.B) {
	for _, history := range []int{0, 2000, 8000} {
		b.Run(fmt.Sprintf("finished=%d", history), func(b *testing.B) {
			tb := newTaskBench(b, cluster.LogStoreWAL, 4)
			var next atomic.Int64
			var wg sync.WaitGroup
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for next.Add(1) <= int64(history) && !b.Failed() {
						tb.run(b)
					}
				}()
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
			durs := make([]time.Duration, 0, 256)
			b.ResetTimer()
			for b.Loop() {
				durs = append(durs, tb.run(b))
				if b.Failed() {
					b.FailNow()
				}
			}
			reportLatency(b, durs)
		})
	}
}

// BenchmarkCallBatch: eight calls of one attempt, one after another with
// Call against one CallBatch, through a real node's ledger (WAL). With a
// tool that takes 50 ms, ns/op is the wall time of the eight; "one" is a
// single call. With an instant tool, ns/call is what the ledger costs each
// call, alone or in a batch.
func BenchmarkCallBatch(b *testing.B) {
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{{"tool=50ms", 50 * time.Millisecond}, {"tool=instant", 0}} {
		for _, mode := range []string{"one", "seq8", "batch8"} {
			b.Run(tc.name+"/"+mode, func(b *testing.B) { benchCallBatch(b, tc.delay, mode) })
		}
	}
}

func benchCallBatch(b *testing.B, delay time.Duration, mode string) {
	var invoked atomic.Int64
	tool := plugins.NewStub("slow", plugins.Idempotent, func(ctx context.Context, _ plugins.Call) (plugins.Result, error) {
		invoked.Add(1)
		if delay > 0 {
			time.Sleep(delay) // the tool's own latency, which the batch overlaps
		}
		return plugins.Result{Body: resultOf(1 << 10)}, nil
	})
	e := benchEnv(b, cluster.LogStoreWAL, tool)
	ag := e.apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "bench", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"slow"}}},
		Module: []byte("not run"), Now: time.Now().UnixNano()}).(cluster.Agent)
	d, err := newLedgerDispatcher(e.node, e.tools, e.claimTask("batch", ag, nil), ag, time.Now, e.log)
	if err != nil {
		b.Fatal(err)
	}
	n := 8
	if mode == "one" {
		n = 1
	}
	reqs := make([]abi.CallRequest, n)
	for i := range reqs {
		reqs[i] = abi.CallRequest{Tool: "slow", Params: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}
	}
	ctx := context.Background()
	for b.Loop() {
		d.events, d.eventBytes = d.events[:0], 0
		switch mode {
		case "batch8":
			for _, r := range d.CallBatch(ctx, reqs) {
				if r.Err != nil {
					b.Fatal(r.Err)
				}
			}
		default:
			for _, r := range reqs {
				if _, err := d.Call(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	if got := int(invoked.Load()); got != b.N*n {
		b.Fatalf("tool invoked %d times for %d calls", got, b.N*n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/call")
}
