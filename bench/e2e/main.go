// Command e2e is `make bench-e2e`: the end-to-end comparison of Orloj with
// a peer on one machine, in one run. Every system gets the same workload: a
// task of six sequential durable steps, each an HTTP POST to a loopback
// step server that answers 200 at once; `-clients` clients submit a task
// and wait for it, over and over, for `-duration`; then `-sequential` tasks
// one after another. It prints, per system, tasks/s, p50 and p95 of each
// phase, CPU per task summed over the system's processes (for Orloj the
// orlojd process; for DBOS its application and every PostgreSQL process)
// and their peak memory (proportional set size, sampled), then the ratios
// of each peer to Orloj from the same round. Rounds alternate the order.
//
// The load generator and the step server run in this process and are not
// counted for any system.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

type options struct {
	orlojd, agent string
	// baseline is an earlier build measured in the same run (its own
	// binary and agent), for before/after ratios.
	baseOrlojd, baseAgent string
	workers               []int
	nodes                 []int
	peer                  string
	peerBin               string
	pgScript              string
	clients               int
	duration              time.Duration
	sequential            int
	warmup                int
	rounds                int
	keep                  bool
	pprof                 int // node i serves its profiler on 127.0.0.1:pprof+i; 0: off
}

func main() {
	var o options
	var workers string
	flag.StringVar(&o.orlojd, "orlojd", "", "orlojd binary (default: build ./cmd/orlojd)")
	flag.StringVar(&o.agent, "agent", "", "six-step agent module (default: build ./chaos/testdata/sixcalls as a pre-initialized reactor)")
	flag.StringVar(&o.baseOrlojd, "baseline-orlojd", "", "an earlier orlojd to measure in the same run, as \"orloj baseline\"")
	flag.StringVar(&o.baseAgent, "baseline-agent", "", "the agent module for -baseline-orlojd (default: -agent)")
	flag.StringVar(&workers, "workers", "4", "orlojd --workers, comma-separated for several configurations")
	var nodes string
	flag.StringVar(&nodes, "nodes", "1", "cluster sizes, comma-separated; clients spread over every node")
	flag.StringVar(&o.peer, "peer", "", `peer to compare with: "" (Orloj only) or "dbos"`)
	flag.StringVar(&o.peerBin, "peer-bin", "", "the peer's program (default: build bench/peers/<peer>)")
	flag.StringVar(&o.pgScript, "pg-script", "scripts/pg-private.sh", "starts and stops a private PostgreSQL (dbos)")
	flag.IntVar(&o.clients, "clients", 16, "concurrent clients in the parallel phase")
	flag.DurationVar(&o.duration, "duration", 20*time.Second, "length of the parallel phase")
	flag.IntVar(&o.sequential, "sequential", 50, "tasks in the sequential phase")
	flag.IntVar(&o.warmup, "warmup", 10, "tasks run before measuring, spread over the nodes (not counted)")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds; each alternates the order of the systems")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary data directories")
	flag.IntVar(&o.pprof, "pprof-port", 0, "node i serves Go's profiler on 127.0.0.1:PORT+i (0: off)")
	flag.Parse()
	o.workers = positiveList("workers", workers)
	o.nodes = positiveList("nodes", nodes)
	if o.peer != "" && o.peer != "dbos" {
		fatalf("-peer: %q is not a known peer (dbos)", o.peer)
	}
	if o.clients < 1 || o.sequential < 1 || o.duration <= 0 || o.rounds < 1 {
		fatalf("-clients, -sequential, -duration and -rounds must be positive")
	}
	if err := run(o); err != nil {
		fatalf("%v", err)
	}
}

func positiveList(name, v string) []int {
	var out []int
	for _, w := range strings.Split(v, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(w), &n); err != nil || n < 1 || (name == "nodes" && n > 9) {
			fatalf("-%s: %q is not a positive number (nodes: at most 9)", name, w)
		}
		out = append(out, n)
	}
	return out
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench-e2e: "+format+"\n", args...)
	os.Exit(1)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// system is one configuration measured.
type system struct {
	name string
	run  func(ctx context.Context, steps string) (result, error)
}

func run(o options) error {
	work, err := os.MkdirTemp("", "orloj-bench-e2e")
	if err != nil {
		return err
	}
	if !o.keep {
		defer os.RemoveAll(work)
	}
	if o.orlojd == "" {
		o.orlojd = filepath.Join(work, "orlojd")
		progress("building orlojd")
		if err := goBuild("", o.orlojd, "./cmd/orlojd"); err != nil {
			return err
		}
	}
	if o.agent == "" {
		o.agent = filepath.Join(work, "sixcalls.wasm")
		progress("building the six-step agent")
		if err := goBuild("wasip1-reactor", o.agent, "./chaos/testdata/sixcalls"); err != nil {
			return err
		}
	}
	if o.baseAgent == "" {
		o.baseAgent = o.agent
	}
	var systems []system
	for _, n := range o.nodes {
		for _, w := range o.workers {
			name := fmt.Sprintf("orloj %d node%s, %d workers", n, map[bool]string{true: "s"}[n > 1], w)
			systems = append(systems, system{name: name, run: func(ctx context.Context, steps string) (result, error) {
				return runOrloj(ctx, o, o.orlojd, o.agent, work, n, w, steps)
			}})
			if o.baseOrlojd != "" {
				systems = append(systems, system{name: "baseline " + name, run: func(ctx context.Context, steps string) (result, error) {
					return runOrloj(ctx, o, o.baseOrlojd, o.baseAgent, work, n, w, steps)
				}})
			}
		}
	}
	if o.peer == "dbos" {
		if o.peerBin == "" {
			o.peerBin = filepath.Join(work, "dbos-peer")
			progress("building the DBOS peer")
			if err := goBuildIn("bench/peers/dbos", "", o.peerBin, "."); err != nil {
				return err
			}
		}
		systems = append(systems, system{name: "dbos on postgresql", run: func(ctx context.Context, steps string) (result, error) {
			return runDBOS(ctx, o, work, steps)
		}})
	}

	steps, stop, err := startStepServer()
	if err != nil {
		return err
	}
	defer stop()

	ctx := context.Background()
	var rounds [][]result
	for r := range o.rounds {
		order := slices.Clone(systems)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		var got []result
		for _, s := range order {
			progress("round %d/%d: %s", r+1, o.rounds, s.name)
			res, err := s.run(ctx, steps)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r+1, s.name, err)
			}
			res.System = s.name
			progress("  %s", res.short())
			got = append(got, res)
		}
		rounds = append(rounds, got)
	}
	report(os.Stdout, o, rounds)
	return nil
}

func goBuild(goos, out, pkg string) error { return goBuildIn("", goos, out, pkg) }

func goBuildIn(dir, goos, out, pkg string) error {
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if goos == "wasip1-reactor" {
		cmd.Args = []string{"go", "build", "-trimpath", "-buildmode=c-shared", "-o", out, pkg}
		goos = "wasip1"
	}
	if dir != "" {
		cmd.Env = append(cmd.Env, "GOFLAGS=-mod=mod") // a peer's own module
	}
	if goos == "wasip1" {
		cmd.Env = append(cmd.Env, "GOOS=wasip1", "GOARCH=wasm")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, b)
	}
	return nil
}

// startStepServer answers every POST with 200 at once, as the workload's
// durable steps expect.
func startStepServer() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write([]byte("ok"))
	})}
	go srv.Serve(ln)
	return "http://" + ln.Addr().String(), func() { srv.Close() }, nil
}

// result is what one system did in one round.
type result struct {
	System    string  `json:"system"`
	Tasks     int     `json:"tasks"`
	Seconds   float64 `json:"seconds"`
	TasksPerS float64 `json:"tasks_per_s"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	SeqTasks  int     `json:"seq_tasks"`
	SeqP50    float64 `json:"seq_p50_ms"`
	SeqP95    float64 `json:"seq_p95_ms"`
	Errors    int     `json:"errors"`
	// Measured here, from /proc.
	CPUPerTask float64 `json:"-"` // ms of CPU, all the system's processes, both phases
	PeakMiB    float64 `json:"-"`
	PeakAnon   float64 `json:"-"` // MiB, anonymous memory only
}

func (r result) short() string {
	return fmt.Sprintf("%.1f tasks/s, p50 %.1f ms, seq p50 %.1f ms, %.2f ms CPU/task, peak %.0f MiB (anonymous %.0f), %d errors",
		r.TasksPerS, r.P50, r.SeqP50, r.CPUPerTask, r.PeakMiB, r.PeakAnon, r.Errors)
}

func report(w io.Writer, o options, rounds [][]result) {
	fmt.Fprintf(w, "\nworkload: 6 sequential HTTP steps per task; %d clients for %s, then %d sequential; %d warm-up tasks\n\n",
		o.clients, o.duration, o.sequential, o.warmup)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tsystem\ttasks/s\tp50 ms\tp95 ms\tseq p50 ms\tseq p95 ms\tCPU ms/task\tpeak MiB\tanon MiB\terrors\t")
	for i, got := range rounds {
		for _, r := range got {
			fmt.Fprintf(tw, "%d\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.2f\t%.0f\t%.0f\t%d\t\n",
				i+1, r.System, r.TasksPerS, r.P50, r.P95, r.SeqP50, r.SeqP95, r.CPUPerTask, r.PeakMiB, r.PeakAnon, r.Errors)
		}
	}
	tw.Flush()
	// Ratios of every Orloj configuration to each peer, same round.
	for i, got := range rounds {
		for _, base := range got {
			if !strings.HasPrefix(base.System, "orloj") {
				continue
			}
			for _, r := range got {
				if strings.HasPrefix(r.System, "orloj") {
					continue
				}
				fmt.Fprintf(w, "round %d: %s ÷ %s: throughput %.2f×, p50 %.2f×, seq p50 %.2f×, CPU per task %.2f×\n", i+1,
					base.System, r.System, base.TasksPerS/r.TasksPerS, base.P50/r.P50, base.SeqP50/r.SeqP50, base.CPUPerTask/r.CPUPerTask)
			}
		}
	}
}

// load drives one system through both phases. task runs one task to its
// end; mark is called at each phase boundary (for CPU samples).
func load(ctx context.Context, o options, task func(ctx context.Context, n int) error, mark func(phase string)) (result, error) {
	var n atomic.Int64
	for range o.warmup {
		if err := task(ctx, int(n.Add(1))); err != nil {
			return result{}, fmt.Errorf("warm-up: %w", err)
		}
	}
	var res result
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	mark("parallel")
	start := time.Now()
	deadline := start.Add(o.duration)
	var wg sync.WaitGroup
	for range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := task(ctx, int(n.Add(1))); err != nil {
					if errs.Add(1) == 1 {
						progress("  first error: %v", err)
					}
					continue
				}
				d := time.Since(t0)
				mu.Lock()
				lat = append(lat, d)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	res.Tasks, res.Seconds = len(lat), elapsed.Seconds()
	res.TasksPerS = float64(len(lat)) / elapsed.Seconds()
	res.P50, res.P95 = pct(lat, 50), pct(lat, 95)
	mark("sequential")
	var seq []time.Duration
	for range o.sequential {
		t0 := time.Now()
		if err := task(ctx, int(n.Add(1))); err != nil {
			errs.Add(1)
			continue
		}
		seq = append(seq, time.Since(t0))
	}
	mark("done")
	res.SeqTasks, res.SeqP50, res.SeqP95 = len(seq), pct(seq, 50), pct(seq, 95)
	res.Errors = int(errs.Load())
	return res, nil
}

func pct(d []time.Duration, p int) float64 {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, (len(s)*p+99)/100-1)
	return float64(s[max(i, 0)]) / float64(time.Millisecond)
}

// orlojNode is one started `orlojd serve`.
type orlojNode struct {
	cmd      *exec.Cmd
	dir      string
	raftAddr string
	client   *client
	logs     *bytes.Buffer
}

func (n *orlojNode) stop() {
	n.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-done
	}
}

const benchToken = "bench-e2e-token"

// startOrlojd starts a node; join is a member's Raft address ("" starts a
// cluster) with the member's data dir, for the join token.
func startOrlojd(ctx context.Context, bin, work string, workers int, join *orlojNode, pprof string) (*orlojNode, error) {
	dir, err := os.MkdirTemp(work, "orloj-data")
	if err != nil {
		return nil, err
	}
	apiAddr := freeAddr()
	n := &orlojNode{dir: dir, raftAddr: freeAddr(), logs: &bytes.Buffer{}}
	args := []string{"serve", "--data-dir", dir, "--api-addr", apiAddr, "--raft-addr", n.raftAddr,
		"--workers", fmt.Sprint(workers), "--http-allow", "127.0.0.1", "--log-level", "warn"}
	if join != nil {
		args = append(args, "--node-id", filepath.Base(dir), "--join", join.raftAddr,
			"--join-token-file", filepath.Join(join.dir, cluster.JoinTokenFile))
	}
	if pprof != "" {
		args = append(args, "--pprof-addr", pprof)
	}
	n.cmd = exec.Command(bin, args...)
	n.cmd.Env = append(os.Environ(), "ORLOJ_TOKEN="+benchToken)
	n.cmd.Stdout, n.cmd.Stderr = n.logs, n.logs
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	n.client = &client{base: "http://" + apiAddr, token: benchToken, hc: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	if err := n.client.ready(ctx, time.Minute); err != nil {
		n.stop()
		return nil, fmt.Errorf("%w\norlojd log:\n%s", err, n.logs.String())
	}
	return n, nil
}

func runOrloj(ctx context.Context, o options, bin, agent, work string, nodes, workers int, steps string) (result, error) {
	var all []*orlojNode
	defer func() {
		for i := len(all) - 1; i >= 0; i-- {
			all[i].stop()
		}
	}()
	for i := range nodes {
		var join *orlojNode
		if i > 0 {
			join = all[0]
		}
		pprof := ""
		if o.pprof > 0 {
			pprof = fmt.Sprintf("127.0.0.1:%d", o.pprof+i)
		}
		n, err := startOrlojd(ctx, bin, work, workers, join, pprof)
		if err != nil {
			return result{}, fmt.Errorf("node %d: %w", i+1, err)
		}
		all = append(all, n)
	}
	if nodes > 1 {
		if err := awaitVoters(ctx, all[0].client, nodes); err != nil {
			return result{}, err
		}
	}
	wasm, err := os.ReadFile(agent)
	if err != nil {
		return result{}, err
	}
	if err := all[0].client.do(ctx, http.MethodPost, "/v1/agents?name=sixcalls&version=v1&tools=http", "application/wasm", wasm, nil); err != nil {
		return result{}, fmt.Errorf("push agent: %w", err)
	}
	// Each task goes to the next node: clients talk to any node.
	task := func(ctx context.Context, n int) error {
		c := all[n%len(all)].client
		in, _ := json.Marshal(map[string]string{"url": steps, "job": fmt.Sprintf("j-%d", n)})
		var tv api.TaskView
		if err := c.do(ctx, http.MethodPost, "/v1/tasks", "application/json", mustJSON(api.SubmitRequest{Agent: "sixcalls", Version: "v1", Input: in}), &tv); err != nil {
			return fmt.Errorf("submit: %w", err)
		}
		for {
			if err := c.do(ctx, http.MethodGet, "/v1/tasks/"+tv.ID+"/wait?timeout=60s", "", nil, &tv); err != nil {
				return fmt.Errorf("wait %s: %w", tv.ID, err)
			}
			switch {
			case tv.State == cluster.StateSucceeded:
				return nil
			case tv.State.Final() || tv.State == cluster.StateDeadLetter:
				return fmt.Errorf("task %s ended %s", tv.ID, tv.State)
			}
		}
	}
	var pids []int
	for _, n := range all {
		pids = append(pids, n.cmd.Process.Pid)
	}
	pm := newProcMeter(pids)
	defer pm.stop()
	res, err := load(ctx, o, task, pm.mark)
	if err != nil {
		return res, err
	}
	res.CPUPerTask = pm.cpuPerTask(res.Tasks + res.SeqTasks)
	res.PeakMiB, res.PeakAnon = pm.peakMiB()
	return res, nil
}

// awaitVoters waits until the cluster has want voters.
func awaitVoters(ctx context.Context, c *client, want int) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ms []api.MemberView
		err := c.do(ctx, http.MethodGet, "/v1/cluster/members", "", nil, &ms)
		voters := 0
		for _, m := range ms {
			if m.Suffrage == "voter" {
				voters++
			}
		}
		if err == nil && voters == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster has %d voters of %d after 2m (last error: %v)", voters, want, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatalf("no free port: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}

type client struct {
	base, token string
	hc          *http.Client
}

func (c *client) ready(ctx context.Context, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := c.hc.Get(c.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("orlojd not ready after %s (last: %v)", within, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *client) do(ctx context.Context, method, path, ctype string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(raw))
	}
	if out != nil {
		return json.Unmarshal(raw, out)
	}
	return nil
}

func runDBOS(ctx context.Context, o options, work, steps string) (result, error) {
	// Not under work: the server runs as another user when we are root,
	// and work is owner-only. The script hands the directory to it.
	dir, err := os.MkdirTemp("", "orloj-bench-pg")
	if err != nil {
		return result{}, err
	}
	if !o.keep {
		defer os.RemoveAll(dir)
	}
	port := strings.Split(freeAddr(), ":")[1]
	out, err := exec.CommandContext(ctx, "bash", o.pgScript, "start", dir, port).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return result{}, fmt.Errorf("start postgresql: %w\n%s", err, ee.Stderr)
		}
		return result{}, fmt.Errorf("start postgresql: %w", err)
	}
	defer exec.Command("bash", o.pgScript, "stop", dir).Run()
	dbURL := lastLine(string(out))
	postmaster, err := readPID(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return result{}, err
	}
	cmd := exec.CommandContext(ctx, o.peerBin, "-db", dbURL, "-steps-url", steps, "-clients", fmt.Sprint(o.clients),
		"-duration", o.duration.String(), "-sequential", fmt.Sprint(o.sequential), "-warmup", fmt.Sprint(o.warmup))
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return result{}, err
	}
	if err := cmd.Start(); err != nil {
		return result{}, err
	}
	pm := newProcMeter([]int{cmd.Process.Pid, postmaster})
	defer pm.stop()
	var tail []string
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		line := sc.Text()
		if phase, ok := strings.CutPrefix(line, "PHASE "); ok {
			pm.mark(strings.TrimSpace(phase))
			continue
		}
		tail = append(tail, line)
		if len(tail) > 20 {
			tail = tail[1:]
		}
	}
	if err := cmd.Wait(); err != nil {
		return result{}, fmt.Errorf("dbos peer: %w\n%s", err, strings.Join(tail, "\n"))
	}
	var res result
	if err := json.Unmarshal([]byte(lastLine(stdout.String())), &res); err != nil {
		return result{}, fmt.Errorf("dbos peer printed %q: %w", stdout.String(), err)
	}
	res.CPUPerTask = pm.cpuPerTask(res.Tasks + res.SeqTasks)
	res.PeakMiB, res.PeakAnon = pm.peakMiB()
	return res, nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("postgresql pid: %w", err)
	}
	var pid int // the first line
	if _, err := fmt.Sscan(string(b), &pid); err != nil {
		return 0, fmt.Errorf("postgresql pid file %s: %w", path, err)
	}
	return pid, nil
}
