// Command dbos-peer runs the end-to-end benchmark workload on DBOS Transact for
// Go, so that Orloj can be compared with it on the same box and the same load.
//
// A task is a durable workflow of six sequential steps; each step is an HTTP
// POST to the step server that must answer 200. Phase 1 runs -clients
// goroutines, each starting a workflow and waiting for its result, until
// -duration has passed; phase 2 runs -sequential workflows one after another.
// Phase boundaries are marked on stderr (PHASE parallel, PHASE sequential,
// PHASE done) so that a caller can sample CPU between them; the result is one
// JSON line on stdout.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dbos-inc/dbos-transact-golang/dbos"
)

// stepsPerTask is fixed by the workload every system runs.
const stepsPerTask = 6

// appName names the DBOS application in the system database.
const appName = "orloj-bench-peer"

// Phase markers written to stderr; the orchestrator matches them exactly.
const (
	phaseParallel   = "PHASE parallel"
	phaseSequential = "PHASE sequential"
	phaseDone       = "PHASE done"
)

// errUsage marks a configuration the flags cannot describe.
var errUsage = errors.New("usage")

type config struct {
	dbURL          string
	stepsURL       *url.URL
	clients        int
	duration       time.Duration
	sequential     int
	warmup         int
	connectTimeout time.Duration
	stepTimeout    time.Duration
}

// parseConfig reads the flags; every refusal names the flag at fault.
func parseConfig(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("dbos-peer", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	var stepsURL string
	fs.StringVar(&c.dbURL, "db", "", "PostgreSQL URL of the DBOS system database (required)")
	fs.StringVar(&stepsURL, "steps-url", "", "base URL of the step server, e.g. http://127.0.0.1:8081 (required)")
	fs.IntVar(&c.clients, "clients", 16, "concurrent clients in the parallel phase")
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "length of the parallel phase")
	fs.IntVar(&c.sequential, "sequential", 50, "workflows run one after another in the sequential phase")
	fs.IntVar(&c.warmup, "warmup", 5, "workflows run before the measured phases")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "how long to try reaching PostgreSQL at start-up")
	fs.DurationVar(&c.stepTimeout, "step-timeout", 10*time.Second, "timeout of one step's HTTP request")
	if err := fs.Parse(args); err != nil {
		return config{}, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	if c.dbURL == "" {
		return config{}, fmt.Errorf("%w: -db is required", errUsage)
	}
	if stepsURL == "" {
		return config{}, fmt.Errorf("%w: -steps-url is required", errUsage)
	}
	u, err := url.Parse(stepsURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return config{}, fmt.Errorf("%w: -steps-url %q is not an http(s) URL with a host", errUsage, stepsURL)
	}
	c.stepsURL = u
	switch {
	case c.clients < 1:
		return config{}, fmt.Errorf("%w: -clients must be at least 1, got %d", errUsage, c.clients)
	case c.duration <= 0:
		return config{}, fmt.Errorf("%w: -duration must be positive, got %s", errUsage, c.duration)
	case c.sequential < 0:
		return config{}, fmt.Errorf("%w: -sequential must not be negative, got %d", errUsage, c.sequential)
	case c.warmup < 0:
		return config{}, fmt.Errorf("%w: -warmup must not be negative, got %d", errUsage, c.warmup)
	case c.connectTimeout <= 0:
		return config{}, fmt.Errorf("%w: -connect-timeout must be positive, got %s", errUsage, c.connectTimeout)
	case c.stepTimeout <= 0:
		return config{}, fmt.Errorf("%w: -step-timeout must be positive, got %s", errUsage, c.stepTimeout)
	}
	return c, nil
}

// result is the one JSON line printed on stdout.
type result struct {
	System    string  `json:"system"`
	Tasks     int     `json:"tasks"`
	Seconds   float64 `json:"seconds"`
	TasksPerS float64 `json:"tasks_per_s"`
	P50Ms     float64 `json:"p50_ms"`
	P95Ms     float64 `json:"p95_ms"`
	SeqTasks  int     `json:"seq_tasks"`
	SeqP50Ms  float64 `json:"seq_p50_ms"`
	SeqP95Ms  float64 `json:"seq_p95_ms"`
	Errors    int     `json:"errors"`
}

func main() {
	cfg, err := parseConfig(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dbos-peer: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, cfg)
	if res != nil {
		line, jerr := json.Marshal(res)
		if jerr != nil {
			fmt.Fprintf(os.Stderr, "dbos-peer: encoding the result: %v\n", jerr)
			os.Exit(1)
		}
		fmt.Println(string(line))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "dbos-peer: %v\n", err)
		os.Exit(1)
	}
}

// run launches DBOS, runs the warm-up and both phases, and shuts DBOS down.
// It returns the result whenever the phases ran, with an error if any
// workflow failed.
func run(ctx context.Context, cfg config) (*result, error) {
	// DBOS logs to stdout by default; stdout carries only the result line.
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	dctx, err := dbos.NewContext(ctx, dbos.Config{
		AppName:                appName,
		DatabaseURL:            cfg.dbURL,
		Logger:                 logger,
		SystemDBStartupTimeout: cfg.connectTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("cannot open the DBOS system database at %s (is PostgreSQL running? scripts/pg-private.sh start DIR PORT): %w", redact(cfg.dbURL), err)
	}
	w := &worker{
		stepsURL: cfg.stepsURL,
		http: &http.Client{
			Timeout: cfg.stepTimeout,
			// One kept-alive connection per client, as every peer gets.
			Transport: &http.Transport{
				MaxIdleConns:        cfg.clients * 2,
				MaxIdleConnsPerHost: cfg.clients * 2,
				IdleConnTimeout:     time.Minute,
			},
		},
	}
	dbos.RegisterWorkflow(dctx, w.task, dbos.WithWorkflowName("bench_task"))
	if err := dbos.Launch(dctx); err != nil {
		return nil, fmt.Errorf("launching DBOS: %w", err)
	}
	defer func() {
		if err := dbos.Shutdown(dctx, 5*time.Second); err != nil {
			fmt.Fprintf(os.Stderr, "dbos-peer: shutting DBOS down: %v\n", err)
		}
	}()

	prefix, err := runPrefix()
	if err != nil {
		return nil, err
	}
	b := &bench{dctx: dctx, w: w, prefix: prefix}

	for range cfg.warmup {
		if _, err := b.one(); err != nil {
			return nil, fmt.Errorf("warm-up workflow failed: %w", err)
		}
	}

	marker(phaseParallel)
	par := b.parallel(cfg.clients, cfg.duration)
	marker(phaseSequential)
	seq := b.sequential(cfg.sequential)
	marker(phaseDone)

	res := &result{
		System:   "dbos",
		Tasks:    len(par.lat),
		Seconds:  round3(par.elapsed.Seconds()),
		P50Ms:    ms(percentile(par.lat, 50)),
		P95Ms:    ms(percentile(par.lat, 95)),
		SeqTasks: len(seq.lat),
		SeqP50Ms: ms(percentile(seq.lat, 50)),
		SeqP95Ms: ms(percentile(seq.lat, 95)),
		Errors:   par.errors + seq.errors,
	}
	if par.elapsed > 0 {
		res.TasksPerS = round3(float64(len(par.lat)) / par.elapsed.Seconds())
	}
	if first := cmpOr(par.firstErr, seq.firstErr); first != nil {
		return res, fmt.Errorf("%d workflows failed; first: %w", res.Errors, first)
	}
	return res, nil
}

// worker holds what the workflow's steps share.
type worker struct {
	stepsURL *url.URL
	http     *http.Client
}

// task is the benchmark workflow: stepsPerTask durable steps, one after
// another, each one POST to the step server. It returns the steps done.
func (w *worker) task(ctx dbos.Context, steps int) (int, error) {
	id, err := dbos.GetWorkflowID(ctx)
	if err != nil {
		return 0, fmt.Errorf("workflow id: %w", err)
	}
	for n := 1; n <= steps; n++ {
		_, err := dbos.RunAsStep(ctx, func(sctx context.Context) (int, error) {
			return w.effect(sctx, id, n)
		}, dbos.WithStepName("effect_"+strconv.Itoa(n)))
		if err != nil {
			return n - 1, fmt.Errorf("step %d: %w", n, err)
		}
	}
	return steps, nil
}

// effect is one step's side effect: POST <steps-url>/effect?job=ID&step=N
// with an Idempotency-Key, as every peer sends it.
func (w *worker) effect(ctx context.Context, job string, step int) (int, error) {
	u := *w.stepsURL
	u.Path = joinPath(u.Path, "effect")
	u.RawQuery = url.Values{"job": {job}, "step": {strconv.Itoa(step)}}.Encode()
	body := fmt.Appendf(nil, `{"job":%q,"step":%d}`, job, step)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", job+"/"+strconv.Itoa(step))
	resp, err := w.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("POST %s: %w", u.Redacted(), err)
	}
	// Drain so the connection is reused.
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("POST %s: status %d, want 200", u.Redacted(), resp.StatusCode)
	}
	return resp.StatusCode, nil
}

type bench struct {
	dctx   dbos.Context
	w      *worker
	prefix string
	seq    atomic.Int64
	// failed stops the load at the first failed workflow: the run is
	// invalid then, and going on would only flood the log.
	failed atomic.Bool
}

func (b *bench) stopped() bool { return b.failed.Load() || b.dctx.Err() != nil }

// one starts a workflow directly (not through a queue) and waits for its
// result; it returns the time from start to result.
func (b *bench) one() (time.Duration, error) {
	id := b.prefix + "-" + strconv.FormatInt(b.seq.Add(1), 10)
	start := time.Now()
	h, err := dbos.RunWorkflow(b.dctx, b.w.task, stepsPerTask, dbos.WithWorkflowID(id))
	if err != nil {
		return 0, fmt.Errorf("starting workflow %s: %w", id, err)
	}
	done, err := h.GetResult()
	if err != nil {
		return 0, fmt.Errorf("workflow %s: %w", id, err)
	}
	if done != stepsPerTask {
		return 0, fmt.Errorf("workflow %s: %d steps done, want %d", id, done, stepsPerTask)
	}
	return time.Since(start), nil
}

type phase struct {
	lat      []time.Duration
	elapsed  time.Duration
	errors   int
	firstErr error
}

// parallel runs clients loops of start-then-wait until d has passed or a
// workflow fails; elapsed runs until the last workflow started before the
// deadline has finished.
func (b *bench) parallel(clients int, d time.Duration) phase {
	var (
		mu  sync.Mutex
		out phase
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range clients {
		wg.Go(func() {
			var lat []time.Duration
			var errs int
			var first error
			for time.Now().Before(deadline) && !b.stopped() {
				l, err := b.one()
				if err != nil {
					b.failed.Store(true)
					errs++
					first = cmpOr(first, err)
					continue
				}
				lat = append(lat, l)
			}
			mu.Lock()
			out.lat = append(out.lat, lat...)
			out.errors += errs
			out.firstErr = cmpOr(out.firstErr, first)
			mu.Unlock()
		})
	}
	wg.Wait()
	out.elapsed = time.Since(start)
	return out
}

// sequential runs n workflows one after another; it runs none once a
// workflow has failed.
func (b *bench) sequential(n int) phase {
	var out phase
	start := time.Now()
	for range n {
		if b.stopped() {
			if err := b.dctx.Err(); err != nil {
				out.errors++
				out.firstErr = cmpOr(out.firstErr, fmt.Errorf("interrupted: %w", context.Cause(b.dctx)))
			}
			break
		}
		l, err := b.one()
		if err != nil {
			b.failed.Store(true)
			out.errors++
			out.firstErr = cmpOr(out.firstErr, err)
			continue
		}
		out.lat = append(out.lat, l)
	}
	out.elapsed = time.Since(start)
	return out
}

// marker writes a phase marker on stderr, which is unbuffered.
func marker(m string) {
	fmt.Fprintln(os.Stderr, m)
}

// runPrefix makes workflow IDs unique per run, so that a rerun on the same
// database starts new workflows instead of returning recorded results.
func runPrefix() (string, error) {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("random run id: %w", err)
	}
	return "bench-" + hex.EncodeToString(b[:]), nil
}

// percentile is the nearest-rank p-th percentile of d; it sorts d.
func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	rank := (p*len(d) + 99) / 100 // ceil(p/100 * n)
	return d[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return float64(int64(f*1000+0.5)) / 1000 }

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func joinPath(base, elem string) string {
	if base == "" || base[len(base)-1] != '/' {
		return base + "/" + elem
	}
	return base + elem
}

// redact hides a password in a URL before it is printed.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" {
		return "(the -db value)"
	}
	return u.Redacted()
}
