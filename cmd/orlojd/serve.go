package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/daemon"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/mcp"
	"github.com/orloj/orloj/telemetry"
)

// serveConfig is everything `orlojd serve` can be told. Each field is one
// setting, reachable three ways: a key of the --config JSON file
// (lease_ttl), an environment variable (ORLOJ_LEASE_TTL) and a flag
// (--lease-ttl), merged in that order of precedence.
type serveConfig struct {
	DataDir          string
	APIAddr          string
	RaftAddr         string
	NodeID           string
	Join             string
	JoinToken        string
	JoinTokenFile    string
	Token            string
	TokenFile        string
	APITLS           bool
	Workers          int
	LeaseTTL         time.Duration
	Retention        time.Duration
	HTTPAllow        []string
	HTTPTools        []daemon.HTTPTool
	MCPServers       []mcp.ServerConfig
	MCPCommands      []string
	BatchConcurrency int
	ModelURL         string
	ModelProvider    string
	ModelKeyEnv      string
	Model            string
	ModelEndpoints   []modelEndpointSetting
	DLQWebhook       string
	ApprovalWebhook  string
	MaxModuleBytes   int64
	LogFormat        string
	LogLevel         string
	DrainGrace       time.Duration
	RaftHeartbeat    time.Duration
	RaftElection     time.Duration
	DialMap          []string
	HistoryFile      string
	PprofAddr        string
	GoMemoryLimit    int64 // autoGoMemoryLimit: GOMEMLIMIT if set, else defaultGoMemoryLimit

	// tokenOnCommandLine is set when --token was a flag: serve warns that
	// the process list shows it.
	tokenOnCommandLine bool
}

func defaultServeConfig() serveConfig {
	d := daemon.DefaultConfig()
	return serveConfig{
		DataDir: d.DataDir, APIAddr: d.APIAddr, RaftAddr: d.RaftAddr, Workers: d.Workers, LeaseTTL: d.LeaseTTL, BatchConcurrency: d.BatchConcurrency,
		Retention: d.Retention, ModelKeyEnv: "OPENAI_API_KEY", MaxModuleBytes: d.MaxModuleBytes,
		LogFormat: "text", LogLevel: "info", DrainGrace: 30 * time.Second,
		RaftHeartbeat: d.RaftHeartbeat, RaftElection: d.RaftElection, GoMemoryLimit: autoGoMemoryLimit,
	}
}

// setting is one field of serveConfig under its three names.
type setting struct {
	flag  string // --lease-ttl; the file key is lease_ttl, the variable ORLOJ_LEASE_TTL
	usage string
	field string // the daemon.Config field it feeds, for naming it in errors
	value pflag.Value
}

func (s setting) fileKey() string { return strings.ReplaceAll(s.flag, "-", "_") }
func (s setting) envVar() string  { return "ORLOJ_" + strings.ToUpper(s.fileKey()) }

func (c *serveConfig) settings() []setting {
	return []setting{
		{"data-dir", "directory for the Raft log, state, compile cache and admin token", "DataDir", strValue{&c.DataDir}},
		{"api-addr", "host:port of the HTTP API", "APIAddr", strValue{&c.APIAddr}},
		{"raft-addr", "host:port of the Raft transport", "RaftAddr", strValue{&c.RaftAddr}},
		{"node-id", "this node's ID in the cluster (default the Raft address)", "NodeID", strValue{&c.NodeID}},
		{"join", "cluster (Raft) address of a member of the cluster to join (default: bootstrap a new one)", "Join", strValue{&c.Join}},
		{"join-token", "the cluster's join token (DATA_DIR/join-token on a member), needed on a node's first join; prefer the variable or --join-token-file", "JoinToken", strValue{&c.JoinToken}},
		{"join-token-file", "file holding the join token", "JoinToken", strValue{&c.JoinTokenFile}},
		{"token-file", "file holding the admin token (default: read or create DATA_DIR/token); give every node of a cluster the same one", "Token", strValue{&c.TokenFile}},
		// Hidden: a flag's value is in the process list for every local
		// user; the variable ORLOJ_TOKEN and the file key stay documented.
		{"token", "admin token itself; prefer --token-file or ORLOJ_TOKEN", "Token", strValue{&c.Token}},
		{"api-tls", "serve the API over TLS with the node's certificate (the CLI trusts DATA_DIR/ca.pem)", "APITLS", boolValue{&c.APITLS}},
		{"workers", "attempts this node runs at once", "Workers", intValue{&c.Workers}},
		{"lease-ttl", "lease length; a crashed node's tasks are taken over after it", "LeaseTTL", durValue{&c.LeaseTTL}},
		{"retention", "how long finished tasks are kept, with their ledger and journal (0 keeps them forever)", "Retention", durValue{&c.Retention}},
		{"http-allow", "hosts the http tool may reach, comma-separated (default none)", "HTTPAllow", listValue{&c.HTTPAllow}},
		{"http-tool", "further http tools, NAME:SEMANTICS comma-separated (read_only, idempotent or unsafe), e.g. payments:unsafe; they reach the --http-allow hosts", "HTTPTools", httpToolsValue{&c.HTTPTools}},
		{"mcp-servers", `MCP servers whose tools agents call as SERVER/TOOL, a JSON list of {"name", "url"} (streamable HTTP) or {"name", "command", "args", "env"} (stdio), with optional "tools" (semantics by tool name), "timeout", "max_response_bytes"`, "MCPServers", mcpServersValue{&c.MCPServers}},
		{"mcp-commands", "commands declared MCP servers (orlojd tool push) may run on this node, comma-separated, exactly as their definitions name them (default none)", "MCPCommands", listValue{&c.MCPCommands}},
		{"batch-concurrency", "calls of one call_batch an attempt runs at once", "BatchConcurrency", intValue{&c.BatchConcurrency}},
		{"model-url", "API root of the model tool's default endpoint, e.g. https://api.openai.com/v1 (see --model-provider)", "ModelURL", strValue{&c.ModelURL}},
		{"model-key-env", "environment variable holding the default endpoint's API key", "ModelKey", strValue{&c.ModelKeyEnv}},
		{"model", "model the default endpoint asks for when a call names none", "Model", strValue{&c.Model}},
		{"model-provider", "wire format of --model-url: openai (chat completions) or anthropic (Messages API)", "ModelProvider", strValue{&c.ModelProvider}},
		{"model-endpoints", `further model endpoints, a JSON list of {"name", "provider", "base_url", "key_env", "model", "max_tokens", "prompt_cache"}`, "ModelEndpoints", endpointsValue{&c.ModelEndpoints}},
		{"dlq-webhook", "URL that receives a JSON notice for each task entering the DLQ", "DLQWebhook", strValue{&c.DLQWebhook}},
		{"approval-webhook", "URL that receives a JSON notice for each call that waits for a person's approval", "ApprovalWebhook", strValue{&c.ApprovalWebhook}},
		{"max-module-size", "largest agent module accepted, e.g. 64MiB", "MaxModuleBytes", sizeValue{&c.MaxModuleBytes}},
		{"log-format", "log format: text or json", "", strValue{&c.LogFormat}},
		{"log-level", "log level: trace, debug, info, warn or error", "", strValue{&c.LogLevel}},
		{"drain-grace", "on SIGTERM, how long running attempts may take to finish", "", durValue{&c.DrainGrace}},
		{"raft-heartbeat", "Raft heartbeat timeout; failover takes about two (see docs/RATIONALE.md)", "RaftHeartbeat", durValue{&c.RaftHeartbeat}},
		{"raft-election", "Raft election timeout", "RaftElection", durValue{&c.RaftElection}},
		// Fault testing only, hence hidden.
		{"dial-map", "rewrite dialed addresses, FROM=TO,... (fault tests)", "DialMap", listValue{&c.DialMap}},
		{"history-file", "append lease operations to this file (fault tests)", "HistoryFile", strValue{&c.HistoryFile}},
		{"pprof-addr", "serve Go's profiler (/debug/pprof/) on this loopback host:port (profiling)", "", strValue{&c.PprofAddr}},
		{"go-memory-limit", "soft limit of the Go runtime's memory (agents' linear memories are outside it), e.g. 256MiB; 0 for none; auto: GOMEMLIMIT if set, else 192MiB", "", memLimitValue{&c.GoMemoryLimit}},
	}
}

// The Go runtime's soft memory limit when none is given. The state store
// keeps about 85 MiB of memtables live, so with the default GOGC the heap
// was let grow to twice that between collections; a limit just above what
// is live collects sooner at no measured cost in throughput or CPU
// (docs/BENCHMARKS.md, "A soft memory limit").
const (
	defaultGoMemoryLimit = 192 << 20
	autoGoMemoryLimit    = -1
)

// applyGoMemoryLimit sets the runtime's soft memory limit from the setting
// and returns the limit the runtime now holds (math.MaxInt64: none) and
// where it came from.
func applyGoMemoryLimit(setting int64) (limit int64, source string) {
	switch {
	case setting > 0:
		debug.SetMemoryLimit(setting)
		source = "go-memory-limit"
	case setting == 0:
		debug.SetMemoryLimit(math.MaxInt64)
		source = "go-memory-limit"
	case os.Getenv("GOMEMLIMIT") != "":
		source = "GOMEMLIMIT" // the runtime read it at start
	default:
		debug.SetMemoryLimit(defaultGoMemoryLimit)
		source = "default"
	}
	return debug.SetMemoryLimit(-1), source
}

// memLimitValue is a size, 0, or "auto".
type memLimitValue struct{ p *int64 }

func (v memLimitValue) String() string {
	if *v.p == autoGoMemoryLimit {
		return "auto"
	}
	return sizeValue(v).String()
}
func (v memLimitValue) Set(s string) error {
	switch s {
	case "auto":
		*v.p = autoGoMemoryLimit
		return nil
	case "0":
		*v.p = 0
		return nil
	}
	return sizeValue(v).Set(s)
}
func (v memLimitValue) Type() string { return "size" }

func newServeCmd() *cobra.Command {
	var configFile string
	shown := defaultServeConfig() // the flags' own values; only Changed ones are used
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a node: Raft member, workers and the HTTP API",
		Long: `Run one Orloj node. With no flags it starts a single-node cluster on
127.0.0.1:7070 (API) and 127.0.0.1:7071 (Raft), data in ./orloj-data.

Every setting can also come from a JSON file (--config, keys like
"lease_ttl": "30s") or the environment (ORLOJ_LEASE_TTL=30s); flags beat
the environment, which beats the file.

On first start a random admin token is written to DATA_DIR/token (mode
0600); the CLI on this machine reads it. SIGTERM or SIGINT drains: no new
claims, running attempts get --drain-grace to finish, then the node stops
and exits 0. A second signal stops at once.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadServeConfig(cmd.Flags(), configFile)
			if err != nil {
				return err
			}
			return serve(cmd.ErrOrStderr(), cfg)
		},
	}
	f := cmd.Flags()
	f.StringVar(&configFile, "config", "", "JSON file of settings (default $ORLOJ_CONFIG)")
	for _, s := range shown.settings() {
		f.Var(s.value, s.flag, s.usage+" (env "+s.envVar()+")")
		if _, ok := s.value.(boolValue); ok {
			f.Lookup(s.flag).NoOptDefVal = "true"
		}
	}
	for _, hidden := range []string{"dial-map", "history-file", "token", "pprof-addr"} {
		_ = f.MarkHidden(hidden)
	}
	return cmd
}

// loadServeConfig merges defaults < file < environment < flags.
func loadServeConfig(flags *pflag.FlagSet, configFile string) (serveConfig, error) {
	cfg := defaultServeConfig()
	sets := cfg.settings()
	if configFile == "" {
		configFile = os.Getenv("ORLOJ_CONFIG")
	}
	if configFile != "" {
		if err := applyConfigFile(configFile, sets); err != nil {
			return cfg, err
		}
	}
	for _, s := range sets {
		if v, ok := os.LookupEnv(s.envVar()); ok {
			if err := s.value.Set(v); err != nil {
				return cfg, usagef("%s=%q: %v", s.envVar(), v, err)
			}
		}
	}
	for _, s := range sets {
		if fl := flags.Lookup(s.flag); fl != nil && fl.Changed {
			if err := s.value.Set(fl.Value.String()); err != nil {
				return cfg, usagef("--%s: %v", s.flag, err)
			}
		}
	}
	switch cfg.LogFormat {
	case "text", "json":
	default:
		return cfg, usagef("log format %q (--log-format, ORLOJ_LOG_FORMAT, log_format): want text or json", cfg.LogFormat)
	}
	if hclog.LevelFromString(cfg.LogLevel) == hclog.NoLevel {
		return cfg, usagef("log level %q (--log-level, ORLOJ_LOG_LEVEL, log_level): want trace, debug, info, warn or error", cfg.LogLevel)
	}
	for _, pair := range cfg.DialMap {
		if from, to, ok := strings.Cut(pair, "="); !ok || from == "" || to == "" {
			return cfg, usagef("dial map entry %q (--dial-map): want FROM=TO", pair)
		}
	}
	if cfg.JoinTokenFile != "" {
		if cfg.JoinToken != "" {
			return cfg, usagef("both a join token and --join-token-file (ORLOJ_JOIN_TOKEN_FILE, join_token_file) are set; give one")
		}
		b, err := os.ReadFile(cfg.JoinTokenFile)
		if err != nil {
			return cfg, usagef("--join-token-file: %v", err)
		}
		cfg.JoinToken = strings.TrimSpace(string(b))
	}
	if cfg.DrainGrace < 0 {
		return cfg, usagef("drain grace %s (--drain-grace, ORLOJ_DRAIN_GRACE, drain_grace) is negative", cfg.DrainGrace)
	}
	if fl := flags.Lookup("token"); fl != nil && fl.Changed {
		cfg.tokenOnCommandLine = true
	}
	if err := cfg.readTokenFile(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// readTokenFile resolves --token-file into Token. Giving the token twice,
// differently, is refused rather than one silently winning.
func (c *serveConfig) readTokenFile() error {
	if c.TokenFile == "" {
		return nil
	}
	b, err := os.ReadFile(c.TokenFile)
	if err != nil {
		return usagef("token file (--token-file, ORLOJ_TOKEN_FILE, token_file): %v", err)
	}
	tok := strings.TrimSpace(string(b))
	switch {
	case tok == "":
		return usagef("token file %s (--token-file, ORLOJ_TOKEN_FILE, token_file) is empty", c.TokenFile)
	case c.Token != "" && c.Token != tok:
		return usagef("the admin token is given twice, differently: by the token file %s and by --token, ORLOJ_TOKEN or token; give it once", c.TokenFile)
	}
	c.Token = tok
	return nil
}

// applyConfigFile sets what the JSON object in path names. Unknown keys are
// refused, so a misspelt setting does not silently keep its default.
func applyConfigFile(path string, sets []setting) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return usagef("--config: %v", err)
	}
	// The rules API bodies obey: a key given twice would otherwise let the
	// last one win unseen.
	if err := abi.CheckJSON(b); err != nil {
		return usagef("config file %s: %v", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return usagef("config file %s: not a JSON object: %v", path, err)
	}
	byKey := map[string]setting{}
	for _, s := range sets {
		byKey[s.fileKey()] = s
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first bad key reported is the same every time
	for _, k := range keys {
		s, ok := byKey[k]
		if !ok {
			return usagef("config file %s: unknown key %q", path, k)
		}
		if js, ok := s.value.(jsonSetter); ok {
			if err := js.SetJSON(raw[k]); err != nil {
				return usagef("config file %s: %s: %v", path, k, err)
			}
			continue
		}
		v, err := jsonSettingText(raw[k])
		if err != nil {
			return usagef("config file %s: %s: %v", path, k, err)
		}
		if err := s.value.Set(v); err != nil {
			return usagef("config file %s: %s: %v", path, k, err)
		}
	}
	return nil
}

// jsonSettingText turns a file value into the text a flag would carry:
// strings as they are, numbers as written, arrays of strings comma-joined.
func jsonSettingText(v json.RawMessage) (string, error) {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) > 0 && v[0] == '"':
		var s string
		err := json.Unmarshal(v, &s)
		return s, err
	case len(v) > 0 && v[0] == '[':
		var list []string
		if err := json.Unmarshal(v, &list); err != nil {
			return "", errors.New("want a list of strings")
		}
		return strings.Join(list, ","), nil
	case len(v) > 0 && (v[0] == '-' || (v[0] >= '0' && v[0] <= '9')):
		return string(v), nil
	}
	return "", fmt.Errorf("want a string, number or list of strings, got %s", v)
}

// daemonConfig turns the merged settings into the daemon's config.
func (c serveConfig) daemonConfig(log hclog.Logger) daemon.Config {
	d := daemon.DefaultConfig()
	d.DataDir, d.APIAddr, d.RaftAddr, d.NodeID, d.Join, d.Token = c.DataDir, c.APIAddr, c.RaftAddr, c.NodeID, c.Join, c.Token
	d.JoinToken, d.APITLS = c.JoinToken, c.APITLS
	d.Workers, d.LeaseTTL, d.HTTPAllow, d.Retention = c.Workers, c.LeaseTTL, c.HTTPAllow, c.Retention
	d.HTTPTools, d.BatchConcurrency, d.MCPServers, d.MCPCommands = c.HTTPTools, c.BatchConcurrency, c.MCPServers, c.MCPCommands
	d.ModelURL, d.Model, d.DLQWebhook, d.MaxModuleBytes = c.ModelURL, c.Model, c.DLQWebhook, c.MaxModuleBytes
	d.ApprovalWebhook = c.ApprovalWebhook
	if c.ModelKeyEnv != "" {
		d.ModelKey = os.Getenv(c.ModelKeyEnv)
	}
	d.ModelProvider = plugins.ModelProvider(c.ModelProvider)
	for _, e := range c.ModelEndpoints {
		ep := plugins.ModelEndpoint{Name: e.Name, Provider: plugins.ModelProvider(e.Provider), BaseURL: e.BaseURL,
			Model: e.Model, MaxTokens: e.MaxTokens, PromptCache: e.PromptCache}
		if e.KeyEnv != "" {
			// Keys are read here, once, and never logged: the warning
			// names the variable, not its value.
			if ep.APIKey = os.Getenv(e.KeyEnv); ep.APIKey == "" {
				log.Warn("model endpoint key variable is empty or unset; its requests carry no key", "endpoint", e.Name, "key_env", e.KeyEnv)
			}
		}
		d.ModelEndpoints = append(d.ModelEndpoints, ep)
	}
	d.RaftHeartbeat, d.RaftElection, d.HistoryFile = c.RaftHeartbeat, c.RaftElection, c.HistoryFile
	if len(c.DialMap) > 0 {
		d.DialMap = map[string]string{}
		for _, pair := range c.DialMap {
			from, to, _ := strings.Cut(pair, "=")
			d.DialMap[from] = to
		}
	}
	d.Logger = log
	return d
}

// explainConfigError names where a refused field can be set.
func (c serveConfig) explainConfigError(err error) error {
	if errors.Is(err, telemetry.ErrUnsupported) {
		return usageError{err}
	}
	var ce *daemon.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	for _, s := range c.settings() {
		if s.field == ce.Field {
			return usagef("invalid setting --%s (%s, config key %s): %s", s.flag, s.envVar(), s.fileKey(), ce.Msg)
		}
	}
	return usageError{err}
}

func serve(stderr io.Writer, cfg serveConfig) error {
	log := hclog.New(&hclog.LoggerOptions{
		Name:       "orlojd",
		Level:      hclog.LevelFromString(cfg.LogLevel),
		JSONFormat: cfg.LogFormat == "json",
		Output:     stderr,
	})
	d, err := daemon.New(cfg.daemonConfig(log))
	if err != nil {
		return cfg.explainConfigError(err)
	}
	ownerOnlyUmask() // before Start creates anything in the data dir
	// Listen before starting: a signal during start-up still drains.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	if cfg.tokenOnCommandLine {
		log.Warn("the admin token was given with --token: other local users can read it in the process list; use --token-file or ORLOJ_TOKEN")
	}
	if limit, source := applyGoMemoryLimit(cfg.GoMemoryLimit); limit < math.MaxInt64 {
		log.Info("go memory limit", "bytes", limit, "source", source)
	}
	// Start runs on its own goroutine so a signal can end a join that is
	// still looking for the cluster.
	started := make(chan error, 1)
	go func() { started <- d.Start() }()
	select {
	case err := <-started:
		if err != nil {
			return err
		}
	case sig := <-sigs:
		log.Info("signal received during start-up; stopping", "signal", sig.String())
		_ = d.Stop(0)
		<-started
		return fmt.Errorf("%s during start-up: stopped", sig)
	}
	if cfg.PprofAddr != "" {
		stop, err := servePprof(cfg.PprofAddr, log)
		if err != nil {
			_ = d.Stop(0)
			return err
		}
		defer stop()
	}
	scheme := "http://"
	if cfg.APITLS {
		scheme = "https://"
	}
	log.Info("serving", "api", scheme+d.APIAddr(), "token_file", cfg.DataDir+string(os.PathSeparator)+daemon.TokenFile)

	var cause error
	select {
	case sig := <-sigs:
		log.Info("signal received; draining", "signal", sig.String(), "grace", cfg.DrainGrace)
	case cause = <-d.Err():
		log.Error("stopping", "error", cause)
	}
	done := make(chan error, 1)
	go func() { done <- d.Stop(cfg.DrainGrace) }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("stop: %w", err)
		}
	case sig := <-sigs:
		// Leases of attempts still running lapse; other nodes (or this one,
		// restarted) take the tasks over.
		return fmt.Errorf("%s during drain: stopped without waiting for running attempts", sig)
	}
	if cause != nil {
		return cause
	}
	log.Info("stopped")
	return nil
}

// pflag.Values over serveConfig's fields, so the same parser reads flags,
// environment variables and file values.

type strValue struct{ p *string }

func (v strValue) String() string     { return *v.p }
func (v strValue) Set(s string) error { *v.p = s; return nil }
func (v strValue) Type() string       { return "string" }

type boolValue struct{ p *bool }

func (v boolValue) String() string { return strconv.FormatBool(*v.p) }
func (v boolValue) Set(s string) error {
	b, err := strconv.ParseBool(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not true or false", s)
	}
	*v.p = b
	return nil
}
func (v boolValue) Type() string { return "bool" }

type intValue struct{ p *int }

func (v intValue) String() string { return strconv.Itoa(*v.p) }
func (v intValue) Set(s string) error {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return fmt.Errorf("%q is not a whole number", s)
	}
	*v.p = n
	return nil
}
func (v intValue) Type() string { return "int" }

type durValue struct{ p *time.Duration }

func (v durValue) String() string { return v.p.String() }
func (v durValue) Set(s string) error {
	s = strings.TrimSpace(s)
	// Whole days ("7d"), which time.ParseDuration lacks, for retention.
	if n, ok := strings.CutSuffix(s, "d"); ok {
		if days, err := strconv.Atoi(n); err == nil && days >= 0 && days <= 100*365 {
			*v.p = time.Duration(days) * 24 * time.Hour
			return nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration (like 30s, 2m or 7d)", s)
	}
	*v.p = d
	return nil
}
func (v durValue) Type() string { return "duration" }

type listValue struct{ p *[]string }

func (v listValue) String() string { return strings.Join(*v.p, ",") }
func (v listValue) Set(s string) error {
	var list []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			list = append(list, item)
		}
	}
	*v.p = list
	return nil
}
func (v listValue) Type() string { return "list" }

// httpToolsValue is a list of NAME:SEMANTICS.
type httpToolsValue struct{ p *[]daemon.HTTPTool }

func (v httpToolsValue) String() string {
	var parts []string
	for _, t := range *v.p {
		parts = append(parts, t.Name+":"+string(t.Semantics))
	}
	return strings.Join(parts, ",")
}
func (v httpToolsValue) Set(s string) error {
	var tools []daemon.HTTPTool
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item == "" {
			continue
		}
		t, err := daemon.ParseHTTPTool(item)
		if err != nil {
			return err
		}
		tools = append(tools, t)
	}
	*v.p = tools
	return nil
}
func (v httpToolsValue) Type() string { return "list" }

// jsonSetter is a setting whose file value is JSON of its own shape (a list
// of objects), taken as it is rather than flattened to flag text.
type jsonSetter interface {
	SetJSON(json.RawMessage) error
}

// modelEndpointSetting is one entry of model_endpoints as an operator
// writes it: the key is named by the variable holding it, never given.
type modelEndpointSetting struct {
	Name      string `json:"name"`
	Provider  string `json:"provider,omitempty"`
	BaseURL   string `json:"base_url,omitempty"`
	KeyEnv    string `json:"key_env,omitempty"`
	Model     string `json:"model"`
	MaxTokens int64  `json:"max_tokens,omitempty"`
	// PromptCache asks Anthropic to cache the prompt's prefix.
	PromptCache bool `json:"prompt_cache,omitempty"`
}

// endpointsValue is model_endpoints: JSON in the file, and JSON text in
// the flag and the variable.
type endpointsValue struct{ p *[]modelEndpointSetting }

func (v endpointsValue) String() string {
	if len(*v.p) == 0 {
		return ""
	}
	b, _ := json.Marshal(*v.p) // a slice of plain structs always encodes
	return string(b)
}
func (v endpointsValue) Set(s string) error { return v.SetJSON(json.RawMessage(s)) }
func (v endpointsValue) SetJSON(raw json.RawMessage) error {
	if err := abi.CheckJSON(raw); err != nil {
		return err
	}
	var list []modelEndpointSetting
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&list); err != nil {
		return fmt.Errorf(`want a JSON list of {"name", "provider", "base_url", "key_env", "model", "max_tokens", "prompt_cache"}: %w`, err)
	}
	*v.p = list
	return nil
}
func (v endpointsValue) Type() string { return "json" }

// mcpServersValue is mcp_servers: JSON in the file, and JSON text in the
// flag and the variable. String names the servers only: a definition's
// env may hold a token.
type mcpServersValue struct{ p *[]mcp.ServerConfig }

func (v mcpServersValue) String() string {
	var names []string
	for _, s := range *v.p {
		names = append(names, s.Name)
	}
	return strings.Join(names, ",")
}
func (v mcpServersValue) Set(s string) error { return v.SetJSON(json.RawMessage(s)) }
func (v mcpServersValue) SetJSON(raw json.RawMessage) error {
	if err := abi.CheckJSON(raw); err != nil {
		return err
	}
	var list []mcp.ServerConfig
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf(`want a JSON list of {"name", "url"} or {"name", "command", "args", "env"}: %w`, err)
	}
	*v.p = list
	return nil
}
func (v mcpServersValue) Type() string { return "json" }

type sizeValue struct{ p *int64 }

func (v sizeValue) String() string {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if *v.p >= u.mult && *v.p%u.mult == 0 {
			return strconv.FormatInt(*v.p/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(*v.p, 10)
}
func (v sizeValue) Set(s string) error {
	n, err := parseBytes(s)
	if err != nil {
		return err
	}
	if n > 1<<40 {
		return fmt.Errorf("size %q is too large", s)
	}
	*v.p = int64(n)
	return nil
}
func (v sizeValue) Type() string { return "size" }
