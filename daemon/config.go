package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/sandbox"
)

// Config configures one node: what `orlojd serve` runs. Start from
// DefaultConfig; Validate names the first bad field.
type Config struct {
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
	// Retention is how long finished tasks are kept after they end, with
	// their ledger and journal; 0 keeps them forever. The leader's setting
	// is the one that acts.
	Retention time.Duration

	// HTTPAllow lists the hosts the http tool may reach; empty allows none.
	HTTPAllow []string
	// HTTPTools are further http tools, each with its own name and
	// semantics and the same allowed hosts: an endpoint that charges a card
	// is a tool named "payments" declared unsafe, so a call left in doubt
	// stops for a person instead of being sent again.
	HTTPTools []HTTPTool
	// MCPServers are MCP servers whose tools this node offers, each tool as
	// "<server>/<tool>"; a stdio server is started in DataDir/mcp/<name>.
	MCPServers []mcp.ServerConfig
	// MCPCommands are the commands declared MCP servers may run on this
	// node (a definition comes over the API; the operator decides what
	// runs). Declared URL servers need none.
	MCPCommands []string
	// BatchConcurrency bounds how many calls of one call_batch an attempt
	// runs at once; 0 means host.DefaultBatchConcurrency.
	BatchConcurrency int
	// ModelURL, if set, is the model tool's endpoint named
	// plugins.DefaultModelEndpoint, the one a call naming none goes to: an
	// API root (e.g. https://api.openai.com/v1) speaking ModelProvider.
	ModelURL      string
	ModelProvider plugins.ModelProvider // "" means plugins.ProviderOpenAI
	ModelKey      string                // the endpoint's API key; "" sends none
	Model         string                // the model asked for when a call names none
	// ModelEndpoints are further model endpoints, which calls pick by name.
	// The model tool is registered when ModelURL is set or this is not
	// empty. Their keys are read from the environment at start, never
	// logged, never in an error.
	ModelEndpoints []plugins.ModelEndpoint

	// DLQWebhook, if set, receives a JSON host.DLQNotice for each task
	// entering the dead-letter queue. Only the leader sends; failures are
	// retried with capped exponential backoff (WebhookBase doubling up to
	// WebhookCap, full jitter).
	DLQWebhook string
	// ApprovalWebhook, if set, receives a JSON host.ApprovalNotice for each
	// call that waits for a person's approval.
	ApprovalWebhook string
	WebhookBase     time.Duration
	WebhookCap      time.Duration

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

	Clock  func() time.Time
	Logger hclog.Logger

	// plaintext turns mTLS off on the cluster port, for A/B benchmarks
	// only: settable only in builds with the orloj_bench_plaintext tag.
	plaintext bool
}

// plaintextHook applies plaintext to the cluster config; nil unless built
// with the orloj_bench_plaintext tag.
var plaintextHook func(*cluster.Config)

// HTTPTool is an extra http tool: a name agents call and what repeating a
// call means to the service behind it.
type HTTPTool struct {
	Name      string
	Semantics plugins.Semantics
}

// ParseHTTPTool reads NAME:SEMANTICS, e.g. "payments:unsafe".
func ParseHTTPTool(s string) (HTTPTool, error) {
	name, sem, ok := strings.Cut(s, ":")
	if !ok || name == "" || sem == "" {
		return HTTPTool{}, fmt.Errorf("%q: want NAME:SEMANTICS, e.g. payments:unsafe", s)
	}
	return HTTPTool{Name: name, Semantics: plugins.Semantics(sem)}, nil
}

// DefaultConfig is a single node on loopback with data in ./orloj-data:
// what `orlojd serve` runs with no flags.
func DefaultConfig() Config {
	return Config{
		DataDir:          "orloj-data",
		APIAddr:          "127.0.0.1:7070",
		RaftAddr:         "127.0.0.1:7071",
		Workers:          4,
		BatchConcurrency: host.DefaultBatchConcurrency,
		LeaseTTL:         30 * time.Second,
		Retention:        cluster.DefaultRetention,
		WebhookBase:      time.Second,
		WebhookCap:       5 * time.Minute,
		MaxModuleBytes:   sandbox.DefaultMaxModuleBytes,
		MaxBodyBytes:     1 << 20,
		RaftHeartbeat:    cluster.DefaultConfig().HeartbeatTimeout,
		RaftElection:     cluster.DefaultConfig().ElectionTimeout,
		Clock:            time.Now,
	}
}

// ConfigError is a Config field that Validate refused. The CLI maps Field
// back to the flag, variable or file key the value came from.
type ConfigError struct {
	Field string // the Config field, e.g. "LeaseTTL"
	Msg   string
}

func (e *ConfigError) Error() string { return "daemon config: " + e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) error {
	return &ConfigError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate reports the first bad field by name.
func (c Config) Validate() error {
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
	case c.BatchConcurrency < 0:
		return fieldErr("BatchConcurrency", "is %d, want at least 1 (0: the default, %d)", c.BatchConcurrency, host.DefaultBatchConcurrency)
	case c.Retention < 0:
		return fieldErr("Retention", "%s is negative; 0 keeps finished tasks forever", c.Retention)
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
	names := map[string]bool{plugins.HTTPToolName: true, plugins.KVToolName: true, plugins.ModelToolName: true}
	for i, t := range c.HTTPTools {
		if names[t.Name] {
			return fieldErr("HTTPTools", "[%d]: %q is already a tool of this node", i, t.Name)
		}
		names[t.Name] = true
		if err := (plugins.HTTPConfig{Name: t.Name, Semantics: t.Semantics, AllowHosts: c.HTTPAllow}).Validate(); err != nil {
			return fieldErr("HTTPTools", "[%d]: %v", i, err)
		}
	}
	servers := map[string]bool{}
	for i, m := range c.MCPServers {
		if err := m.Validate(); err != nil {
			return fieldErr("MCPServers", "[%d] %q: %v", i, m.Name, err)
		}
		if servers[m.Name] {
			return fieldErr("MCPServers", "[%d]: %q is given twice", i, m.Name)
		}
		servers[m.Name] = true
	}
	for i, cmd := range c.MCPCommands {
		if cmd == "" || strings.ContainsRune(cmd, 0) {
			return fieldErr("MCPCommands", "[%d]: %q is not a command", i, cmd)
		}
	}
	if err := c.validateModel(); err != nil {
		return err
	}
	if c.ApprovalWebhook != "" {
		if err := c.approvalWebhookConfig().Validate(); err != nil {
			return fieldErr("ApprovalWebhook", "%v", err)
		}
	}
	if c.DLQWebhook != "" {
		err := c.webhookConfig().Validate()
		switch {
		case errors.Is(err, host.ErrBadWebhookURL):
			return fieldErr("DLQWebhook", "%v", err)
		case err != nil:
			return fieldErr("WebhookBase", "WebhookBase %s, WebhookCap %s: %v", c.WebhookBase, c.WebhookCap, err)
		}
	}
	return nil
}

// validateModel checks the model settings: the default endpoint by its
// own fields, the others as a list.
func (c Config) validateModel() error {
	if c.ModelProvider != "" && !c.ModelProvider.Valid() {
		return fieldErr("ModelProvider", "%q: want one of %v", c.ModelProvider, plugins.ModelProviders)
	}
	if c.ModelURL != "" {
		if c.Model == "" {
			return fieldErr("Model", "is required when ModelURL is set")
		}
		if err := (plugins.ModelConfig{BaseURL: c.ModelURL, Model: c.Model, APIKey: c.ModelKey, Provider: c.ModelProvider}).Validate(); err != nil {
			return fieldErr("ModelURL", "%v", err)
		}
	}
	for i, e := range c.ModelEndpoints {
		if err := e.Validate(); err != nil {
			return fieldErr("ModelEndpoints", "[%d] %q: %v", i, e.Name, err)
		}
	}
	if mc, ok := c.modelConfig(); ok {
		if err := mc.Validate(); err != nil {
			// What is left is the list as a whole: a name given twice.
			return fieldErr("ModelEndpoints", "%v", err)
		}
	}
	return nil
}

// modelConfig is the model tool's config, and whether there is a model
// tool at all.
func (c Config) modelConfig() (plugins.ModelConfig, bool) {
	mc := plugins.ModelConfig{BaseURL: c.ModelURL, APIKey: c.ModelKey, Model: c.Model, Provider: c.ModelProvider,
		Endpoints: c.ModelEndpoints}
	return mc, c.ModelURL != "" || len(c.ModelEndpoints) > 0
}

// webhookConfig is the DLQ webhook's config, its state file under the
// data dir.
func (c Config) webhookConfig() host.WebhookConfig {
	return host.WebhookConfig{URL: c.DLQWebhook,
		Policy:    cluster.RetryPolicy{Base: c.WebhookBase, Factor: 2, Cap: c.WebhookCap},
		StateFile: filepath.Join(c.DataDir, dlqNotifiedFile), Clock: c.Clock, Logger: c.Logger}
}

// approvalWebhookConfig is the approval webhook's, the DLQ's spacing, its
// own state file.
func (c Config) approvalWebhookConfig() host.WebhookConfig {
	wc := c.webhookConfig()
	wc.URL, wc.StateFile = c.ApprovalWebhook, filepath.Join(c.DataDir, approvalNotifiedFile)
	return wc
}

// clusterConfig is the cluster.Config this node opens its member with.
func (c Config) clusterConfig(pki *cluster.PKI, history *cluster.History) cluster.Config {
	cc := cluster.DefaultConfig()
	cc.NodeID, cc.DataDir, cc.RaftAddr = c.NodeID, c.DataDir, c.RaftAddr
	cc.Bootstrap = c.Join == ""
	cc.Clock, cc.Logger, cc.PKI, cc.History = c.Clock, c.Logger, pki, history
	cc.Retention = c.Retention
	if c.RaftHeartbeat > 0 {
		cc.HeartbeatTimeout = c.RaftHeartbeat
		cc.ElectionTimeout = max(cc.ElectionTimeout, c.RaftHeartbeat)
		cc.LeaderLeaseTimeout = min(cc.LeaderLeaseTimeout, c.RaftHeartbeat/2)
	}
	if c.RaftElection > 0 {
		cc.ElectionTimeout = c.RaftElection
	}
	dial := c.dialer()
	cc.Dial = func(addr string, timeout time.Duration) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		return dial(ctx, addr)
	}
	if c.plaintext && plaintextHook != nil {
		plaintextHook(&cc)
	}
	return cc
}

// dialer dials node-to-node connections, rewritten through DialMap.
func (c Config) dialer() cluster.DialFunc {
	var d net.Dialer
	m := c.DialMap
	return func(ctx context.Context, addr string) (net.Conn, error) {
		if to, ok := m[addr]; ok {
			addr = to
		}
		return d.DialContext(ctx, "tcp", addr)
	}
}
