package daemon

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/sandbox"
	"github.com/orloj/orloj/telemetry"
)

// Start's setup steps, in the order Daemon.steps lists them. Each builds
// one part of the node from the parts before it and records it on d, so
// closeAll can release whatever was built when a later step fails.

func (d *Daemon) setupDataDir() error { return prepareDataDir(d.cfg.DataDir) }

func (d *Daemon) setupToken() (err error) {
	d.token, err = loadToken(d.cfg.DataDir, d.cfg.Token)
	return err
}

func (d *Daemon) setupListener() (err error) {
	d.ln, err = net.Listen("tcp", d.cfg.APIAddr)
	return err
}

// setupCredentials loads or obtains the node's certificate, and wraps the
// API listener in TLS when asked.
func (d *Daemon) setupCredentials() (err error) {
	if d.pki, err = d.credentials(d.ln.Addr().String()); err != nil {
		return err
	}
	if d.cfg.APITLS {
		d.ln = tls.NewListener(d.ln, d.pki.ServerTLS(tls.NoClientCert))
	}
	return nil
}

func (d *Daemon) setupHistory() (err error) {
	if d.cfg.HistoryFile != "" {
		d.history, err = cluster.OpenHistory(d.cfg.HistoryFile, d.cfg.NodeID)
	}
	return err
}

func (d *Daemon) setupNode() (err error) {
	if d.node, err = cluster.Open(d.cfg.clusterConfig(d.pki, d.history)); err != nil {
		return err
	}
	if m, ok := d.node.FSM().Member(d.cfg.NodeID); ok && m.Removed {
		return d.removedErr()
	}
	return nil
}

func (d *Daemon) removedErr() error {
	return fmt.Errorf("%w: %s; to rejoin, wipe %s and start it with --join", ErrRemoved, d.cfg.NodeID, d.cfg.DataDir)
}

func (d *Daemon) setupSandbox() (err error) {
	d.rt, err = sandbox.New(d.ctx, sandbox.Config{CacheDir: d.cfg.CacheDir, MaxModuleBytes: d.cfg.MaxModuleBytes})
	return err
}

// setupMetrics uses a registry per daemon, not the global one: tests run
// several daemons in one process.
func (d *Daemon) setupMetrics() error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	d.metrics = host.NewMetrics(reg)
	d.metrics.AttachFSM(d.node.FSM())
	return nil
}

// setupTracing builds the trace pipeline the OTEL_* environment asks for:
// none unless an OTLP endpoint is set.
func (d *Daemon) setupTracing() (err error) {
	d.tracing, err = telemetry.Setup(d.ctx, telemetry.Options{NodeID: d.cfg.NodeID, Logger: d.log})
	if d.tracing != nil {
		d.log.Info("exporting traces over OTLP/HTTP")
	}
	return err
}

// setupWrites builds the one chain every proposal of this node goes
// through — workers, executor, kv tool, outbox, API: timed by the metrics,
// recorded in the lease history, sent to whichever node leads.
func (d *Daemon) setupWrites() error {
	dial := d.cfg.dialer()
	d.peers = host.NewNodeClient(d.node, dial)
	d.fwd = host.NewForwarder(d.node, dial, d.log)
	d.writes = d.metrics.Instrument(d.fwd)
	return nil
}

// setupTools registers the built-in tools; the kv tool proposes through
// the write chain.
func (d *Daemon) setupTools() error {
	cfg := d.cfg
	httpTool, err := plugins.NewHTTP(plugins.HTTPConfig{AllowHosts: cfg.HTTPAllow})
	if err != nil {
		return fmt.Errorf("http tool: %w", err)
	}
	kv, err := host.NewKVBackend(d.writes, func() int64 { return cfg.Clock().UnixNano() })
	if err != nil {
		return fmt.Errorf("kv tool: %w", err)
	}
	tools := []plugins.Tool{httpTool, plugins.NewKV(kv)}
	for _, t := range cfg.HTTPTools {
		ht, err := plugins.NewHTTP(plugins.HTTPConfig{Name: t.Name, Semantics: t.Semantics, AllowHosts: cfg.HTTPAllow})
		if err != nil {
			return fmt.Errorf("http tool %s: %w", t.Name, err)
		}
		tools = append(tools, ht)
	}
	if mc, ok := cfg.modelConfig(); ok {
		m, err := plugins.NewModel(mc)
		if err != nil {
			return fmt.Errorf("model tool: %w", err)
		}
		tools = append(tools, m)
		d.log.Info("model tool", "endpoints", strings.Join(m.Endpoints(), ","))
	}
	if d.tools, err = plugins.NewRegistry(tools...); err != nil {
		return err
	}
	// Declared tools come from the replicated definitions; their secrets
	// from this node only: ORLOJ_SECRET_<NAME>, or DATA_DIR/secrets/<name>.
	d.declared = host.NewDeclaredTools(d.writes, plugins.NodeSecrets{Dir: filepath.Join(cfg.DataDir, SecretsDir)}).
		WithSandbox(d.rt, cfg.Logger).
		WithMCP(host.MCPOptions{Dir: filepath.Join(cfg.DataDir, "mcp", "declared"), Commands: cfg.MCPCommands, Go: d.routines.Go})
	return d.setupMCP()
}

// setupMCP starts the MCP servers, each registering its tools as it lists
// them (at start, and later when a server first reached late or its list
// changes). A server not reached within its timeout does not hold up the
// node: it is retried in the background.
// They start at once, so a node with several waits for the slowest, not
// the sum.
func (d *Daemon) setupMCP() error {
	servers := make([]*mcp.Server, len(d.cfg.MCPServers))
	errs := make([]error, len(d.cfg.MCPServers))
	var wg sync.WaitGroup
	for i, cfg := range d.cfg.MCPServers {
		wg.Add(1)
		d.routines.Go("start mcp server "+cfg.Name, func() {
			defer wg.Done()
			servers[i], errs[i] = mcp.Start(cfg, mcp.Options{Logger: d.log, WorkDir: filepath.Join(d.cfg.DataDir, "mcp", cfg.Name),
				Go: d.routines.Go, Register: d.tools.Register})
		})
	}
	wg.Wait()
	for _, s := range servers {
		if s != nil {
			d.mcp = append(d.mcp, s) // closed by closeAll, also when another failed
		}
	}
	return errors.Join(errs...)
}

// closeMCP closes the MCP servers at once (a stdio server may take a
// couple of seconds to end); after the workers, whose calls use them.
func (d *Daemon) closeMCP() {
	var wg sync.WaitGroup
	for _, s := range d.mcp {
		wg.Add(1)
		d.routines.Go("close mcp server "+s.Name(), func() { defer wg.Done(); s.Close() })
	}
	wg.Add(1)
	d.routines.Go("close declared mcp servers", func() { defer wg.Done(); d.declared.Close() })
	wg.Wait()
	d.mcp = nil
}

func (d *Daemon) setupPool() (err error) {
	cfg := d.cfg
	exec := host.NewExecutor(d.writes, d.rt, d.tools, cfg.Clock, cfg.Logger, host.WithMetrics(d.metrics),
		host.WithBatchConcurrency(cfg.BatchConcurrency), host.WithDeclaredTools(d.declared),
		host.WithTracing(host.NewTracing(d.tracing.TracerProvider(), cfg.NodeID)))
	pcfg := host.DefaultPoolConfig()
	pcfg.NodeID, pcfg.Workers, pcfg.LeaseTTL = cfg.NodeID, cfg.Workers, cfg.LeaseTTL
	pcfg.Clock, pcfg.Logger, pcfg.Metrics = cfg.Clock, cfg.Logger, d.metrics
	d.pool, err = host.NewPool(pcfg, d.writes, exec)
	return err
}

func (d *Daemon) setupAPI() (err error) {
	cfg := d.cfg
	// A follower takes client writes: it catches up with the leader, then
	// forwards them through the write chain.
	d.api, err = api.New(api.Config{Node: d.node, Writes: d.writes, CatchUp: d.fwd.CatchUp, Runtime: d.rt, Metrics: d.metrics,
		Token: d.token, Peers: d.peers, Clock: cfg.Clock, Logger: cfg.Logger,
		MaxModuleBytes: cfg.MaxModuleBytes, MaxBodyBytes: cfg.MaxBodyBytes, Tools: d.tools.Names})
	return err
}

// startServers serves the API and the cluster port's internal routes.
func (d *Daemon) startServers() error {
	log := d.cfg.Logger
	d.isrv = &http.Server{
		Handler:           host.InternalHandler(d.node, d.metrics, d.api.Internal(), log),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          log.Named("internal").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	iln := d.node.InternalListener()
	d.routines.Go("cluster port server", func() {
		if err := d.isrv.Serve(iln); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			d.fatal(fmt.Errorf("cluster port server: %w", err))
		}
	})
	d.srv = &http.Server{
		Handler:           d.api,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Long polls (task wait) end when the daemon stops, not when their
		// timeout does.
		BaseContext: func(net.Listener) context.Context { return d.ctx },
		ErrorLog:    log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	d.routines.Go("api server", func() {
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.fatal(fmt.Errorf("api server: %w", err))
		}
	})
	return nil
}

// startServices starts the workers, the membership upkeep and the
// background services.
func (d *Daemon) startServices() error {
	cfg := d.cfg
	d.pool.Start(context.Background())
	d.routines.Go("register this node", func() { d.registerSelf(d.ctx) })
	if cfg.Join != "" {
		d.routines.Go("join", func() { d.join(d.ctx) })
	}
	ocfg := host.DefaultOutboxConfig()
	ocfg.Clock, ocfg.Logger, ocfg.Metrics, ocfg.Declared = cfg.Clock, cfg.Logger, d.metrics, d.declared
	outbox, err := host.NewOutbox(d.writes, d.tools, d.node.IsLeader, ocfg)
	if err != nil {
		return err
	}
	d.services = append(d.services, outbox)
	if cfg.DLQWebhook != "" {
		hook, err := host.NewDLQWebhook(d.node, cfg.webhookConfig())
		if err != nil {
			return err
		}
		d.services = append(d.services, hook)
	}
	if cfg.ApprovalWebhook != "" {
		hook, err := host.NewApprovalWebhook(d.node, cfg.approvalWebhookConfig())
		if err != nil {
			return err
		}
		d.services = append(d.services, hook)
	}
	for i, s := range d.services {
		if err := s.Start(d.ctx); err != nil {
			d.services = d.services[:i] // only the started ones are stopped
			return err
		}
	}
	return nil
}
