package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// TokenFile is the name, under the data dir, of the file holding the admin
// token. The CLI reads it when it runs on the same machine.
const TokenFile = "token"

// dlqNotifiedFile remembers, under the data dir, which dead letters the
// webhook has been told about, so a restart does not repeat them.
const dlqNotifiedFile = "dlq-notified.json"

// ErrRemoved is why a node stops, or refuses to start, after it was removed
// from the cluster: cluster's refusal of a removed node, one sentinel for both.
var ErrRemoved = cluster.ErrRemoved

// DaemonConfig configures one node: what `orlojd serve` runs. Start from
// DefaultDaemonConfig; Validate names the first bad field.
type DaemonConfig struct {
	// NodeID is this node's Raft server ID; "" means RaftAddr.
	NodeID string
	// DataDir holds the Raft log, the FSM state, the compile cache and the
	// admin token.
	DataDir  string
	APIAddr  string // host:port the HTTP API listens on
	RaftAddr string // host:port the Raft transport binds and advertises
	// Join is the cluster (Raft) address of a member of an existing
	// cluster. The node starts without bootstrapping and asks that member
	// to add it. "" starts (or restarts) a cluster of its own.
	Join string
	// JoinToken is the cluster's join token (DATA_DIR/join-token on a
	// member): a node joining for the first time presents it to get its
	// certificate. A node that already holds one ignores it.
	JoinToken string
	// Token is the admin token, for people and the CLI only; it never
	// travels between nodes. "" reads DataDir/token, creating it with a
	// random token on first start.
	Token string
	// APITLS serves the API over TLS with the node's certificate (the CLI
	// trusts DATA_DIR/ca.pem).
	APITLS bool

	Workers  int           // concurrent attempts on this node
	LeaseTTL time.Duration // renewed every TTL/3; a crashed node costs one TTL

	// HTTPAllow lists the hosts the http tool may reach; empty allows none.
	HTTPAllow []string
	// ModelURL, if set, registers the model tool against this
	// OpenAI-compatible API root (e.g. https://api.openai.com/v1).
	ModelURL string
	ModelKey string // sent as a bearer token; "" sends none
	Model    string // the model asked for when a call names none

	// DLQWebhook, if set, receives a JSON DLQNotice for each task entering
	// the dead-letter queue. Only the leader sends; failures are retried
	// with capped exponential backoff (WebhookBase doubling up to
	// WebhookCap, full jitter).
	DLQWebhook  string
	WebhookBase time.Duration
	WebhookCap  time.Duration

	// MaxModuleBytes caps an uploaded module; MaxBodyBytes any other body.
	MaxModuleBytes int64
	MaxBodyBytes   int64
	// CacheDir is the sandbox's compile cache; "" means DataDir/compile.
	CacheDir string

	// RaftHeartbeat and RaftElection are Raft's heartbeat and election
	// timeouts; zero keeps cluster.DefaultConfig's (see docs/RATIONALE.md,
	// "Failover timing").
	RaftHeartbeat time.Duration
	RaftElection  time.Duration

	// DialMap rewrites the addresses this node dials for Raft and for
	// forwarding to the leader (real address → address to dial). Fault
	// tests route each pair of nodes through a proxy they can cut.
	DialMap map[string]string
	// HistoryFile, if set, receives every lease operation this node
	// proposes (cluster.History), for linearizability checks.
	HistoryFile string

	// API builds the HTTP API over the started node. cmd/orlojd passes one
	// that calls host/api, which imports host and so cannot be called from
	// here. nil serves /healthz and /readyz only. A handler with a Close
	// method has it called when the daemon stops, before the listener
	// closes, to end its long polls.
	API APIFactory

	Clock  func() time.Time
	Logger hclog.Logger

	// plaintext turns mTLS off on the cluster port, for A/B benchmarks
	// only: settable only in builds with the orloj_bench_plaintext tag.
	plaintext bool
}

// plaintextHook applies plaintext to the cluster config; nil unless built
// with the orloj_bench_plaintext tag.
var plaintextHook func(*cluster.Config)

// APIFactory builds the HTTP handler of a daemon from its parts.
type APIFactory func(APIDeps) (http.Handler, error)

// APIDeps is what the HTTP API needs from the daemon.
type APIDeps struct {
	Node           *cluster.Node
	Runtime        *sandbox.Runtime // validates uploads with the node's own rules
	Tools          *plugins.Registry
	Metrics        *Metrics // its Gatherer is what /metrics serves
	Token          string
	Peers          *http.Client // node-to-node routes on other members' cluster ports (mTLS)
	Clock          func() time.Time
	Logger         hclog.Logger
	MaxModuleBytes int64
	MaxBodyBytes   int64
}

// DefaultDaemonConfig is a single node on loopback with data in
// ./orloj-data: what `orlojd serve` runs with no flags.
func DefaultDaemonConfig() DaemonConfig {
	return DaemonConfig{
		DataDir:        "orloj-data",
		APIAddr:        "127.0.0.1:7070",
		RaftAddr:       "127.0.0.1:7071",
		Workers:        4,
		LeaseTTL:       30 * time.Second,
		WebhookBase:    time.Second,
		WebhookCap:     5 * time.Minute,
		MaxModuleBytes: sandbox.DefaultMaxModuleBytes,
		MaxBodyBytes:   1 << 20,
		RaftHeartbeat:  cluster.DefaultConfig().HeartbeatTimeout,
		RaftElection:   cluster.DefaultConfig().ElectionTimeout,
		Clock:          time.Now,
	}
}

// ConfigError is a DaemonConfig field that Validate refused. The CLI maps
// Field back to the flag, variable or file key the value came from.
type ConfigError struct {
	Field string // the DaemonConfig field, e.g. "LeaseTTL"
	Msg   string
}

func (e *ConfigError) Error() string { return "daemon config: " + e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate reports the first bad field by name.
func (c DaemonConfig) Validate() error {
	if c.DataDir == "" {
		return fieldErr("DataDir", "is empty")
	}
	for _, a := range []struct{ field, v string }{{"APIAddr", c.APIAddr}, {"RaftAddr", c.RaftAddr}} {
		if _, port, err := net.SplitHostPort(a.v); err != nil || port == "" {
			return fieldErr(a.field, "%q is not host:port", a.v)
		}
	}
	if c.Join != "" {
		if _, port, err := net.SplitHostPort(c.Join); err != nil || port == "" || strings.Contains(c.Join, "/") {
			return fieldErr("Join", "%q is not host:port (the cluster address of a member)", c.Join)
		}
	}
	if strings.ContainsAny(c.JoinToken, " \t\r\n") {
		return fieldErr("JoinToken", "has white space")
	}
	if strings.ContainsAny(c.Token, " \t\r\n") {
		return fieldErr("Token", "has white space")
	}
	switch {
	case c.Workers < 1:
		return fieldErr("Workers", "is %d, want at least 1", c.Workers)
	case c.LeaseTTL < 100*time.Millisecond:
		return fieldErr("LeaseTTL", "%s is below 100ms", c.LeaseTTL)
	case c.MaxModuleBytes <= 0:
		return fieldErr("MaxModuleBytes", "is %d, want a positive size", c.MaxModuleBytes)
	case c.MaxBodyBytes <= 0:
		return fieldErr("MaxBodyBytes", "is %d, want a positive size", c.MaxBodyBytes)
	case c.Clock == nil:
		return fieldErr("Clock", "is nil")
	case c.RaftHeartbeat < 0 || (c.RaftHeartbeat > 0 && c.RaftHeartbeat < 5*time.Millisecond):
		return fieldErr("RaftHeartbeat", "%s: want 0 (default) or at least 5ms", c.RaftHeartbeat)
	case c.RaftElection < 0 || (c.RaftElection > 0 && c.RaftElection < c.RaftHeartbeat):
		return fieldErr("RaftElection", "%s: want 0 (default) or at least RaftHeartbeat (%s)", c.RaftElection, c.RaftHeartbeat)
	}
	if err := (plugins.HTTPConfig{AllowHosts: c.HTTPAllow}).Validate(); err != nil {
		return fieldErr("HTTPAllow", "%v", err)
	}
	if c.ModelURL != "" {
		if c.Model == "" {
			return fieldErr("Model", "is required when ModelURL is set")
		}
		if err := (plugins.ModelConfig{BaseURL: c.ModelURL, Model: c.Model, APIKey: c.ModelKey}).Validate(); err != nil {
			return fieldErr("ModelURL", "%v", err)
		}
	}
	if c.DLQWebhook != "" {
		u, err := url.Parse(c.DLQWebhook)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fieldErr("DLQWebhook", "%q is not an absolute http or https URL", c.DLQWebhook)
		}
		if c.WebhookBase <= 0 || c.WebhookCap < c.WebhookBase {
			return fieldErr("WebhookBase", "want 0 < WebhookBase (%s) <= WebhookCap (%s)", c.WebhookBase, c.WebhookCap)
		}
	}
	return nil
}

// Daemon is one node: Raft member, worker pool, API listener and, on the
// leader, the DLQ webhook. NewDaemon, then Start; Stop drains.
type Daemon struct {
	cfg DaemonConfig
	log hclog.Logger

	mu      sync.Mutex
	started bool
	stopped bool

	token   string
	fwd     *Forwarder
	peers   *http.Client // node-to-node routes, mTLS
	isrv    *http.Server // the cluster port's internal HTTP side
	history *cluster.History
	ln      net.Listener
	node    *cluster.Node
	rt      *sandbox.Runtime
	tools   *plugins.Registry
	metrics *Metrics
	pool    *Pool
	handler http.Handler
	srv     *http.Server

	ctx    context.Context // ends at Stop: background loops, long polls
	cancel context.CancelFunc
	// startCtx ends when Stop is called, even while Start runs: a join
	// still looking for the cluster gives up.
	startCtx   context.Context
	abortStart context.CancelFunc
	wg         sync.WaitGroup
	errc       chan error // fatal errors after Start
}

// NewDaemon checks cfg; Start opens and runs the node.
func NewDaemon(cfg DaemonConfig) (*Daemon, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.NodeID == "" {
		cfg.NodeID = cfg.RaftAddr
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = filepath.Join(cfg.DataDir, "compile")
	}
	ctx, cancel := context.WithCancel(context.Background())
	startCtx, abortStart := context.WithCancel(context.Background())
	return &Daemon{cfg: cfg, log: cfg.Logger, ctx: ctx, cancel: cancel, startCtx: startCtx, abortStart: abortStart,
		errc: make(chan error, 1)}, nil
}

// Start opens the stores, joins or bootstraps the cluster, and starts
// serving and claiming. On error everything it opened is closed again.
func (d *Daemon) Start() (err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started || d.stopped {
		return errors.New("daemon: Start called twice or after Stop")
	}
	defer func() {
		if err != nil {
			d.stopped = true // what was opened is closed; a daemon starts once
			d.closeAll()
		}
	}()
	cfg := d.cfg
	if err := prepareDataDir(cfg.DataDir); err != nil {
		return err
	}
	if d.token, err = loadToken(cfg.DataDir, cfg.Token); err != nil {
		return err
	}
	// Bind the API first: a taken port should fail before Raft starts.
	if d.ln, err = net.Listen("tcp", cfg.APIAddr); err != nil {
		return fmt.Errorf("api listener: %w", err)
	}
	// A joining node gets its certificate before its transport starts.
	pki, err := d.credentials(d.ln.Addr().String())
	if err != nil {
		return err
	}
	if cfg.APITLS {
		d.ln = tls.NewListener(d.ln, pki.ServerTLS(tls.NoClientCert))
	}

	ccfg := cluster.DefaultConfig()
	ccfg.NodeID, ccfg.DataDir, ccfg.RaftAddr = cfg.NodeID, cfg.DataDir, cfg.RaftAddr
	ccfg.Bootstrap = cfg.Join == ""
	ccfg.Clock, ccfg.Logger, ccfg.PKI = cfg.Clock, cfg.Logger, pki
	if cfg.RaftHeartbeat > 0 {
		ccfg.HeartbeatTimeout = cfg.RaftHeartbeat
		ccfg.ElectionTimeout = max(ccfg.ElectionTimeout, cfg.RaftHeartbeat)
		ccfg.LeaderLeaseTimeout = min(ccfg.LeaderLeaseTimeout, cfg.RaftHeartbeat/2)
	}
	if cfg.RaftElection > 0 {
		ccfg.ElectionTimeout = cfg.RaftElection
	}
	dial := dialVia(cfg.DialMap)
	ccfg.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return dial(ctx, "tcp", addr)
	}
	if cfg.HistoryFile != "" {
		if d.history, err = cluster.OpenHistory(cfg.HistoryFile, cfg.NodeID); err != nil {
			return err
		}
		ccfg.History = d.history
	}
	if cfg.plaintext && plaintextHook != nil {
		plaintextHook(&ccfg)
	}
	if d.node, err = cluster.Open(ccfg); err != nil {
		return fmt.Errorf("open node: %w", err)
	}
	if m, ok := d.node.FSM().Member(cfg.NodeID); ok && m.Removed {
		return fmt.Errorf("%w: %s; to rejoin, wipe %s and start it with --join", ErrRemoved, cfg.NodeID, cfg.DataDir)
	}
	if d.rt, err = sandbox.New(d.ctx, sandbox.Config{CacheDir: cfg.CacheDir, MaxModuleBytes: cfg.MaxModuleBytes}); err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	// A registry per daemon, not the global one: tests run several daemons
	// in one process.
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.metrics = NewMetrics(reg)
	d.metrics.AttachFSM(d.node.FSM())
	// Workers on every node propose through the leader.
	d.peers = NewNodeClient(d.node, clusterDialer(cfg.DialMap))
	d.fwd = NewForwarder(d.node, clusterDialer(cfg.DialMap), cfg.Logger)
	// The tools after the forwarder: the kv tool proposes through it.
	if d.tools, err = d.buildTools(d.fwd); err != nil {
		return err
	}
	exec := NewExecutor(d.fwd, d.rt, d.tools, cfg.Clock, cfg.Logger, WithMetrics(d.metrics))
	pcfg := DefaultPoolConfig()
	pcfg.NodeID, pcfg.Workers, pcfg.LeaseTTL = cfg.NodeID, cfg.Workers, cfg.LeaseTTL
	pcfg.Clock, pcfg.Logger, pcfg.Metrics = cfg.Clock, cfg.Logger, d.metrics
	if d.pool, err = NewPool(pcfg, d.fwd, exec); err != nil {
		return err
	}

	handler := http.Handler(d.healthHandler())
	if cfg.API != nil {
		if handler, err = cfg.API(APIDeps{Node: d.node, Runtime: d.rt, Tools: d.tools, Metrics: d.metrics, Token: d.token, Peers: d.peers,
			Clock: cfg.Clock, Logger: cfg.Logger, MaxModuleBytes: cfg.MaxModuleBytes, MaxBodyBytes: cfg.MaxBodyBytes}); err != nil {
			return fmt.Errorf("build api: %w", err)
		}
	}
	d.handler = handler
	d.serveInternal(handler)
	d.srv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Long polls (task wait) end when the daemon stops, not when their
		// timeout does.
		BaseContext: func(net.Listener) context.Context { return d.ctx },
		ErrorLog:    cfg.Logger.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.fatal(fmt.Errorf("api server: %w", err))
		}
	}()

	d.pool.Start(context.Background())
	d.wg.Add(1)
	go func() { defer d.wg.Done(); d.registerSelf(d.ctx) }()
	ocfg := DefaultOutboxConfig()
	ocfg.Clock, ocfg.Logger, ocfg.Metrics = cfg.Clock, cfg.Logger, d.metrics
	outbox, err := NewOutbox(d.node, d.tools, d.node.IsLeader, ocfg)
	if err != nil {
		return err
	}
	d.wg.Add(1)
	go func() { defer d.wg.Done(); outbox.Run(d.ctx) }()
	if cfg.DLQWebhook != "" {
		n := newDLQNotifier(d.node, cfg, d.log)
		d.wg.Add(1)
		go func() { defer d.wg.Done(); n.run(d.ctx) }()
	}
	if cfg.Join != "" {
		d.wg.Add(1)
		go func() { defer d.wg.Done(); d.join(d.ctx) }()
	}
	d.started = true
	d.log.Info("node started", "node", cfg.NodeID, "api_addr", d.ln.Addr().String(), "raft_addr", cfg.RaftAddr,
		"data_dir", cfg.DataDir, "workers", cfg.Workers, "lease_ttl", cfg.LeaseTTL, "tools", strings.Join(d.tools.Names(), ","),
		"joining", cfg.Join)
	return nil
}

// buildTools registers the built-in tools; the kv tool proposes through c.
func (d *Daemon) buildTools(c Cluster) (*plugins.Registry, error) {
	cfg := d.cfg
	httpTool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: cfg.HTTPAllow})
	if err != nil {
		return nil, fmt.Errorf("http tool: %w", err)
	}
	kv, err := NewKVBackend(c, func() int64 { return cfg.Clock().UnixNano() })
	if err != nil {
		return nil, fmt.Errorf("kv tool: %w", err)
	}
	tools := []plugins.Tool{httpTool, plugins.NewKV(kv)}
	if cfg.ModelURL != "" {
		m, err := plugins.NewModel(plugins.ModelConfig{BaseURL: cfg.ModelURL, APIKey: cfg.ModelKey, Model: cfg.Model})
		if err != nil {
			return nil, fmt.Errorf("model tool: %w", err)
		}
		tools = append(tools, m)
	}
	return plugins.NewRegistry(tools...)
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
	d.cancel()
	// An API that holds long polls (task wait) can end them now rather than
	// hold up the shutdown below.
	if c, ok := d.handler.(interface{ Close() }); ok {
		c.Close()
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
	d.wg.Wait()
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

func (d *Daemon) fatal(err error) {
	select {
	case d.errc <- err:
	default:
	}
}

// Err delivers an error that stopped the daemon from serving (the API
// listener failing); the caller should Stop it.
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

// healthHandler serves /healthz and /readyz when no API factory is given.
func (d *Daemon) healthHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"status":"ok"}`)
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if !d.node.LeaderInfo().Known() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"status":"no leader"}`)
			return
		}
		io.WriteString(w, `{"status":"ready"}`)
	})
	return mux
}

// awaitCaughtUp waits until this node has heard from a leader and applied
// every entry the leader had committed by then.
func (d *Daemon) awaitCaughtUp(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		if st := d.node.SelfStatus(); st.Leader.Known() {
			if c := st.CommitIndex; c > 0 {
				return d.node.FSM().WaitApplied(ctx, c)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("catch up with the leader: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// registerSelf records this node's API address (through the leader), so
// followers can send clients and forwarded commands to whichever node
// leads. It checks again now and then: a restore or a rejoin may have
// replaced the record.
func (d *Daemon) registerSelf(ctx context.Context) {
	want := cluster.Member{ID: d.cfg.NodeID, APIAddr: d.ln.Addr().String(), RaftAddr: d.cfg.RaftAddr}
	for {
		// Wake on applied entries only while the record is missing (start,
		// join); once it is there, a check a second is enough.
		var wake <-chan struct{}
		removed := false
		_ = catchPanic(d.log, "register this node", func() error {
			m, ok := d.node.FSM().Member(want.ID)
			switch {
			case ok && m.Removed:
				removed = true
			case ok && m == want:
			default:
				wake = d.node.FSM().Changed()
				if d.node.LeaderInfo().Known() {
					if _, err := d.fwd.Apply(ctx, &cluster.SetMember{Member: want, Now: d.cfg.Clock().UnixNano()}); err != nil {
						d.log.Debug("record this node's API address", "error", err)
					}
				}
			}
			return nil
		})
		if removed {
			d.pool.Stop(0)
			d.fatal(fmt.Errorf("%w: %s; to rejoin, wipe %s and start it with --join", ErrRemoved, want.ID, d.cfg.DataDir))
			return
		}
		t := time.NewTimer(time.Second) // also how soon a removal is noticed
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// dialVia returns a dialer that rewrites addresses found in m.
func dialVia(m map[string]string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	var d net.Dialer
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if to, ok := m[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, network, addr)
	}
}

// loadToken returns the admin token: the given one, else the token file's,
// else a new random one written to the token file (mode 0600). A given token
// is written to the file too, so the CLI on this machine finds the one the
// API accepts.
func loadToken(dataDir, given string) (string, error) {
	path := filepath.Join(dataDir, TokenFile)
	if given != "" {
		if err := cluster.WriteFileAtomic(path, []byte(given+"\n"), 0o600); err != nil {
			return "", fmt.Errorf("write token file: %w", err)
		}
		return given, nil
	}
	b, err := os.ReadFile(path)
	if err == nil {
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return "", fmt.Errorf("token file %s is empty; delete it to generate a new token", path)
		}
		return tok, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read token file: %w", err)
	}
	raw := make([]byte, 24)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	if err := cluster.WriteFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write token file: %w", err)
	}
	return tok, nil
}

// DLQNotice is the JSON body the DLQ webhook receives, once per entry of a
// task into the dead-letter queue. Key is stable across retries and leader
// changes (it is also sent as the Idempotency-Key header): delivery is at
// least once, so receivers dedupe on it.
type DLQNotice struct {
	Event    string    `json:"event"` // "task.dead_letter"
	Key      string    `json:"key"`
	TaskID   string    `json:"task_id"`
	Agent    string    `json:"agent"`
	Version  string    `json:"version"`
	Class    string    `json:"class"`
	Message  string    `json:"message"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`   // when the task entered the DLQ
	Node     string    `json:"node"` // the node that sent the notice
}

// dlqNotifier watches the replicated state on its own goroutine (never in
// the FSM's apply path) and POSTs a notice for each dead letter it has not
// yet delivered. Only the leader sends, so a healthy cluster sends each
// notice once; a leader change may repeat one whose delivery was in flight.
type dlqNotifier struct {
	node   *cluster.Node
	url    string
	policy cluster.RetryPolicy
	clock  func() time.Time
	log    hclog.Logger
	client *http.Client
	path   string // the delivered set, persisted

	delivered map[string]bool
	failures  map[string]int       // failed deliveries by key
	nextAt    map[string]time.Time // earliest next try by key
}

// A scan of the DLQ reads every task (the FSM has no cheaper read of the
// dead-letter index yet); these bound how often one runs.
const (
	dlqMinScanInterval = time.Second
	dlqIdleScan        = 5 * time.Second // also notices leadership changes
)

func newDLQNotifier(node *cluster.Node, cfg DaemonConfig, log hclog.Logger) *dlqNotifier {
	n := &dlqNotifier{
		node: node, url: cfg.DLQWebhook, clock: cfg.Clock, log: log.Named("dlq_webhook"),
		policy:   cluster.RetryPolicy{Base: cfg.WebhookBase, Factor: 2, Cap: cfg.WebhookCap},
		client:   &http.Client{Timeout: 10 * time.Second},
		path:     filepath.Join(cfg.DataDir, dlqNotifiedFile),
		failures: map[string]int{}, nextAt: map[string]time.Time{}, delivered: map[string]bool{},
	}
	var keys []string
	if b, err := os.ReadFile(n.path); err == nil {
		if err := json.Unmarshal(b, &keys); err != nil {
			n.log.Warn("unreadable delivered-notices file; notices may repeat", "path", n.path, "error", err)
		}
	}
	for _, k := range keys {
		n.delivered[k] = true
	}
	return n
}

func (n *dlqNotifier) run(ctx context.Context) {
	for {
		changed := n.node.FSM().Changed()
		wait := n.safePass(ctx)
		scanned := time.Now()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			continue // a retry fell due
		case <-changed:
		}
		t.Stop()
		// The log changes on every applied batch: coalesce them, so a busy
		// cluster costs one scan per interval.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(scanned.Add(dlqMinScanInterval))):
		}
	}
}

// noticeKey names one entry of a task into the DLQ: a task retried and dead
// again gets a new notice.
func noticeKey(t cluster.Task) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", t.ID, t.UpdatedAt)))
	return hex.EncodeToString(sum[:16])
}

// safePass is pass, with a panic logged and waited out like an idle scan.
func (n *dlqNotifier) safePass(ctx context.Context) time.Duration {
	wait := dlqIdleScan
	_ = catchPanic(n.log, "dlq webhook pass", func() error { wait = n.pass(ctx); return nil })
	return wait
}

// pass delivers what is due and returns how long to wait before the next.
func (n *dlqNotifier) pass(ctx context.Context) time.Duration {
	if !n.node.IsLeader() {
		return dlqIdleScan
	}
	dead, err := n.node.FSM().DeadLetters(cluster.TaskFilter{})
	if err != nil {
		n.log.Error("list dead letters", "error", err)
		return dlqIdleScan
	}
	current := make(map[string]cluster.Task, len(dead))
	for _, t := range dead {
		current[noticeKey(t)] = t
	}
	dirty := false
	for k := range n.delivered {
		if _, ok := current[k]; !ok {
			delete(n.delivered, k) // left the DLQ: forget, so the file stays small
			dirty = true
		}
	}
	for k := range n.failures {
		if _, ok := current[k]; !ok {
			delete(n.failures, k)
			delete(n.nextAt, k)
		}
	}
	wait := dlqIdleScan
	for _, t := range dead { // oldest first
		k := noticeKey(t)
		if n.delivered[k] {
			continue
		}
		now := n.clock()
		if at, ok := n.nextAt[k]; ok && at.After(now) {
			wait = min(wait, at.Sub(now))
			continue
		}
		if ctx.Err() != nil || !n.node.IsLeader() {
			break
		}
		if err := n.deliver(ctx, k, t); err != nil {
			n.failures[k]++
			delay := cluster.Backoff(n.policy, n.failures[k], mrand.Uint64())
			n.nextAt[k] = now.Add(delay)
			wait = min(wait, delay)
			n.log.Warn("deliver dlq notice", "task", t.ID, "attempt", n.failures[k], "retry_in", delay, "error", err)
			continue
		}
		n.log.Info("dlq notice delivered", "task", t.ID, "attempts", n.failures[k]+1)
		delete(n.failures, k)
		delete(n.nextAt, k)
		n.delivered[k] = true
		dirty = true
	}
	if dirty {
		n.save()
	}
	return max(wait, time.Millisecond)
}

func (n *dlqNotifier) deliver(ctx context.Context, key string, t cluster.Task) error {
	notice := DLQNotice{Event: "task.dead_letter", Key: key, TaskID: t.ID, Agent: t.Agent, Version: t.Version,
		Attempts: t.Attempts, At: time.Unix(0, t.UpdatedAt).UTC(), Node: n.node.ID()}
	if t.Error != nil {
		notice.Class, notice.Message = string(t.Error.Class), t.Error.Message
	}
	body, err := json.Marshal(notice)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("User-Agent", "orlojd")
	resp, err := n.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (n *dlqNotifier) save() {
	keys := make([]string, 0, len(n.delivered))
	for k := range n.delivered {
		keys = append(keys, k)
	}
	b, _ := json.Marshal(keys)
	if err := cluster.WriteFileAtomic(n.path, b, 0o600); err != nil {
		n.log.Warn("save delivered notices; they may repeat after a restart", "error", err)
	}
}
