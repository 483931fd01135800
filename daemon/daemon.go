// Package daemon owns one node's composition and lifecycle: the order in
// which its parts are built (data dir, token, listener, credentials, Raft
// member, sandbox, metrics, tracing, the write chain, tools, workers, API,
// servers, background services), the goroutines it runs, and how it drains
// and closes. It sits above host and host/api and wires them; it holds no
// policy of its own. `orlojd serve` is a Config and a Daemon.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/sandbox"
	"github.com/orloj/orloj/telemetry"
)

// The webhooks' files under the data dir: which notices were delivered,
// so a restart does not repeat them.
const (
	dlqNotifiedFile      = "dlq-notified.json"
	approvalNotifiedFile = "approval-notified.json"
)

// ErrRemoved is why a node stops, or refuses to start, after it was removed
// from the cluster: cluster's refusal of a removed node, one sentinel for both.
var ErrRemoved = cluster.ErrRemoved

// tracingFlushTimeout bounds how long a stopping node waits for its last
// spans to reach the collector.
const tracingFlushTimeout = 5 * time.Second

// ErrStarted is Start called twice, or after Stop: a daemon starts once.
var ErrStarted = errors.New("daemon: Start called twice or after Stop")

// service is a background loop the daemon starts after everything else and
// stops, in reverse order, before it closes anything.
type service interface {
	Start(ctx context.Context) error
	Stop()
}

// Daemon is one node: Raft member, worker pool, API listener and the
// background services (the outbox and, on the leader, the DLQ webhook).
// New, then Start; Stop drains.
type Daemon struct {
	cfg Config
	log hclog.Logger

	mu      sync.Mutex
	started bool
	stopped bool

	// Built by Start's setup steps, in this order.
	token    string
	ln       net.Listener
	pki      *cluster.PKI
	history  *cluster.History
	node     *cluster.Node
	rt       *sandbox.Runtime
	metrics  *host.Metrics
	tracing  *telemetry.Provider // nil: traces are off
	fwd      *host.Forwarder
	writes   host.Cluster // the write chain: metrics → forwarder (history) → node
	peers    *http.Client // node-to-node routes, mTLS
	tools    *plugins.Registry
	declared *host.DeclaredTools
	mcp      []*mcp.Server // MCP servers, their tools in tools
	pool     *host.Pool
	api      *api.Server
	srv      *http.Server // the API listener
	isrv     *http.Server // the cluster port's internal HTTP side
	services []service

	ctx    context.Context // ends at Stop: background loops, long polls
	cancel context.CancelFunc
	// startCtx ends when Stop is called, even while Start runs: a join
	// still looking for the cluster gives up.
	startCtx   context.Context
	abortStart context.CancelFunc
	routines   host.Routines // every goroutine the daemon starts
	errc       chan error    // fatal errors after Start
}

// New checks cfg; Start opens and runs the node.
func New(cfg Config) (*Daemon, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	// The OTEL_* environment is checked here, before anything is opened;
	// setupTracing builds what it asks for.
	if _, err := telemetry.Enabled(); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.RaftAddr
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.DataDir, "compile")
	}
	ctx, cancel := context.WithCancel(context.Background())
	startCtx, abortStart := context.WithCancel(context.Background())
	d := &Daemon{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, startCtx: startCtx, abortStart: abortStart,
		errc: make(chan error, 1)}
	d.routines = host.Routines{Logger: cfg.Logger, OnPanic: func(pe *host.PanicError) { d.fatal(pe) }}
	return d, nil
}

// setupStep is one step of Start. Each may use what earlier steps built.
type setupStep struct {
	name string
	run  func() error
}

// steps is Start's order. Why this order: the API port is bound before
// Raft starts, so a taken port fails first; credentials come before the
// member (a joining node enrolls first); the write chain before the tools,
// because the kv tool proposes through it; the API after the tools it
// lists; services last, once everything they use exists.
func (d *Daemon) steps() []setupStep {
	return []setupStep{
		{"data dir", d.setupDataDir},
		{"admin token", d.setupToken},
		{"api listener", d.setupListener},
		{"credentials", d.setupCredentials},
		{"lease history", d.setupHistory},
		{"cluster member", d.setupNode},
		{"sandbox", d.setupSandbox},
		{"metrics", d.setupMetrics},
		{"tracing", d.setupTracing},
		{"write chain", d.setupWrites},
		{"tools", d.setupTools},
		{"workers", d.setupPool},
		{"api", d.setupAPI},
		{"servers", d.startServers},
		{"services", d.startServices},
	}
}

// Start opens the stores, joins or bootstraps the cluster, and starts
// serving and claiming. On error everything it opened is closed again.
func (d *Daemon) Start() (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.stopped {
		return ErrStarted
	}
	defer func() {
		if err != nil {
			d.stopped = true // what was opened is closed; a daemon starts once
			d.closeAll()
		}
	}()
	for _, s := range d.steps() {
		if err := s.run(); err != nil {
			return fmt.Errorf("start: %s: %w", s.name, err)
		}
	}
	d.started = true
	d.log.Info("node started", "node", d.cfg.NodeID, "api_addr", d.ln.Addr().String(), "raft_addr", d.cfg.RaftAddr,
		"data_dir", d.cfg.DataDir, "workers", d.cfg.Workers, "lease_ttl", d.cfg.LeaseTTL, "tools", strings.Join(d.tools.Names(), ","),
		"joining", d.cfg.Join)
	return nil
}

// Stop drains the node: claim nothing more, let running attempts finish for
// up to grace (then cancel them; their leases lapse and the tasks are
// retried), close the API listener, close the node. Safe to call twice or
// before Start.
func (d *Daemon) Stop(grace time.Duration) error {
	d.abortStart()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopped {
		return nil
	}
	d.stopped = true
	if !d.started {
		d.cancel()
		return nil
	}
	d.log.Info("draining", "grace", grace)
	start := time.Now()
	d.pool.Stop(grace)
	d.log.Info("workers stopped", "waited", time.Since(start).Round(time.Millisecond))
	return d.closeAll()
}

// closeAll releases whatever Start opened, in reverse order.
func (d *Daemon) closeAll() error {
	var errs []error
	for i := len(d.services) - 1; i >= 0; i-- {
		d.services[i].Stop()
	}
	d.closeMCP()
	d.cancel()
	// The API holds long polls (task wait): end them now rather than hold
	// up the shutdown below.
	if d.api != nil {
		d.api.Close()
	}
	if d.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := d.srv.Shutdown(ctx); err != nil {
			errs = append(errs, d.srv.Close())
		}
		cancel()
	} else if d.ln != nil {
		errs = append(errs, d.ln.Close())
	}
	if d.isrv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		if err := d.isrv.Shutdown(ctx); err != nil {
			d.isrv.Close()
		}
		cancel()
	}
	if d.pool != nil {
		d.pool.Stop(0) // a failed Start may have left it unstarted: a no-op then
	}
	d.routines.Wait()
	// After the workers: the spans of the attempts they ended are queued.
	ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
	if err := d.tracing.Shutdown(ctx); err != nil {
		d.log.Warn("traces not flushed", "error", err) // a collector's trouble is no reason to fail the stop
	}
	cancel()
	if d.node != nil {
		if err := d.node.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close node: %w", err))
		}
	}
	if d.fwd != nil {
		d.fwd.Close()
	}
	if d.peers != nil {
		d.peers.CloseIdleConnections()
	}
	if err := d.history.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close history: %w", err))
	}
	if d.rt != nil {
		if err := d.rt.Close(context.Background()); err != nil {
			errs = append(errs, fmt.Errorf("close sandbox: %w", err))
		}
	}
	return errors.Join(errs...)
}

// fatal reports an error that stops the daemon from serving; the first one
// wins.
func (d *Daemon) fatal(err error) {
	select {
	case d.errc <- err:
	default:
	}
}

// Err delivers an error that stopped the daemon from serving (the API
// listener failing, a removal, a panic in one of its goroutines); the
// caller should Stop it.
func (d *Daemon) Err() <-chan error { return d.errc }

// Token is the admin token the API accepts.
func (d *Daemon) Token() string { return d.token }

// APIAddr is the address the API listens on (useful with port 0).
func (d *Daemon) APIAddr() string {
	if d.ln == nil {
		return d.cfg.APIAddr
	}
	return d.ln.Addr().String()
}

// Node is the Raft member, for tests and embedding.
func (d *Daemon) Node() *cluster.Node { return d.node }
