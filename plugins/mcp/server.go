package mcp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	mcpsdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/orloj/orloj/plugins"
)

// Defaults of Options.
const (
	DefaultRestartBase = 500 * time.Millisecond
	DefaultRestartCap  = 30 * time.Second
)

// maxTools bounds the tools taken from one server's list: each becomes a
// registry entry for the node's lifetime.
const maxTools = 1024

// ErrServerDown is a call made while the server is not connected (a stdio
// server restarting, an HTTP server not reached yet) that stayed so for the
// call's timeout. Nothing was sent.
var ErrServerDown = errors.New("mcp server not connected")

// Options are what the node gives a server beyond its definition.
type Options struct {
	Logger hclog.Logger // nil logs nothing
	// WorkDir is a stdio server's working directory and HOME, created
	// (0700) if missing; required for a command.
	WorkDir string
	// Go launches the server's background goroutines under a name; default
	// plain goroutines. A node passes its own launcher, which tracks them
	// and survives their panics.
	Go func(name string, f func())
	// Register is told of each tool the first time the server lists it
	// (at start, on a tools/list_changed, when a server is first reached
	// late), to add it to the node's registry. It may be called from a
	// background goroutine, also while Start runs.
	Register func(plugins.Tool) error
	// Headers go on every request to a URL server (a declared server's
	// headers, its secrets resolved by the node).
	Headers http.Header
	// HTTPClient sends a URL server's requests; default a client of its
	// own. Its transport is wrapped, never modified.
	HTTPClient *http.Client
	// RestartBase and RestartCap bound the delay before reconnecting, or
	// restarting a command, after the server was lost: it doubles from
	// RestartBase up to RestartCap, with jitter, and starts over once a
	// connection has lasted RestartCap.
	RestartBase, RestartCap time.Duration
}

// Server is one MCP server and the Orloj tools it provides. Start it with
// an Options.Register that adds tools to the node's registry; Close it when
// the node stops.
type Server struct {
	cfg    ServerConfig
	opts   Options
	log    hclog.Logger
	client *mcpsdk.Client
	path   string // a command's resolved path

	mu       sync.Mutex
	sess     *mcpsdk.ClientSession // nil while not connected
	up       chan struct{}         // closed while sess is set
	tools    map[string]*Tool      // every tool ever listed, by MCP name
	listed   map[string]bool       // the names of the latest tools/list
	reached  bool                  // a tools/list has succeeded
	restarts int

	relist chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

// Start checks cfg, starts connecting (starting the command of a stdio
// server) in the background and waits until the server's tools are listed
// or cfg.Timeout has passed. A server not reached by then is not an error:
// it is retried with backoff, and its tools reach Options.Register when it
// is. A definition that cannot work (a command not found) is an error.
func Start(cfg ServerConfig, opts Options) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	if opts.Go == nil {
		opts.Go = func(_ string, f func()) { go f() }
	}
	if opts.RestartBase <= 0 {
		opts.RestartBase = DefaultRestartBase
	}
	if opts.RestartCap < opts.RestartBase {
		opts.RestartCap = max(DefaultRestartCap, opts.RestartBase)
	}
	s := &Server{cfg: cfg, opts: opts, log: opts.Logger.Named("mcp").With("mcp_server", cfg.Name),
		up: make(chan struct{}), tools: map[string]*Tool{}, listed: map[string]bool{},
		relist: make(chan struct{}, 1), done: make(chan struct{})}
	if cfg.Transport() == TransportStdio {
		if opts.WorkDir == "" {
			return nil, fmt.Errorf("mcp server %s: no working directory for its command", cfg.Name)
		}
		path, err := exec.LookPath(cfg.Command)
		if err != nil {
			return nil, fmt.Errorf("mcp server %s: command: %w", cfg.Name, err)
		}
		s.path = path
		if err := os.MkdirAll(opts.WorkDir, 0o700); err != nil {
			return nil, fmt.Errorf("mcp server %s: working directory: %w", cfg.Name, err)
		}
	}
	s.client = mcpsdk.NewClient(&mcpsdk.Implementation{Name: "orlojd", Version: "v1"}, &mcpsdk.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcpsdk.ToolListChangedRequest) { s.askRelist() },
	})
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	up := s.up // the first session's, taken before the loop can replace it
	opts.Go("mcp server "+cfg.Name, func() { defer close(s.done); s.run(ctx) })
	select {
	case <-up:
	case <-time.After(cfg.Timeout):
		s.log.Warn("mcp server not reached yet; its tools are added when it is", "waited", cfg.Timeout)
	}
	return s, nil
}

// Name is the server's name, the prefix of its tools.
func (s *Server) Name() string { return s.cfg.Name }

// Tools returns the server's tools as of its latest tools/list, sorted.
func (s *Server) Tools() []plugins.Tool {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []plugins.Tool
	for _, name := range slices.Sorted(maps.Keys(s.listed)) {
		out = append(out, s.tools[name])
	}
	return out
}

// Tool returns the tool called name ("<server>/<tool>") if the server's
// latest tools/list has it. reached is false until a tools/list has
// succeeded: until then the server's tools are not known, not absent.
func (s *Server) Tool(name string) (t plugins.Tool, reached bool) {
	mcpName, ok := strings.CutPrefix(name, s.cfg.Name+"/")
	s.mu.Lock()
	defer s.mu.Unlock()
	if ok && s.listed[mcpName] {
		return s.tools[mcpName], true
	}
	return nil, s.reached
}

// Restarts is how many times the server was lost and reconnected (a stdio
// command restarted).
func (s *Server) Restarts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restarts
}

// Close ends the connection (a stdio server's stdin is closed, then it is
// terminated) and waits for the background loop. Safe to call twice.
func (s *Server) Close() {
	s.cancel()
	<-s.done
}

func (s *Server) askRelist() {
	select {
	case s.relist <- struct{}{}:
	default: // one is pending already
	}
}

// run connects, serves and reconnects until ctx ends.
func (s *Server) run(ctx context.Context) {
	delay := s.opts.RestartBase
	for {
		began := time.Now()
		err := s.safeSession(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(began) >= s.opts.RestartCap {
			delay = s.opts.RestartBase
		}
		// Full jitter over the upper half: servers of many nodes that died
		// together do not come back in step.
		wait := delay/2 + rand.N(delay/2+1)
		s.log.Warn("mcp server lost; reconnecting", "error", err, "retry_in", wait.Round(time.Millisecond),
			"transport", s.cfg.Transport())
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		delay = min(2*delay, s.opts.RestartCap)
		s.mu.Lock()
		s.restarts++
		s.mu.Unlock()
	}
}

// safeSession is session with a panic turned into its error: a server
// that trips the client up costs a reconnect, not the node.
func (s *Server) safeSession(ctx context.Context) (err error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("recovered from a panic in the mcp session", "panic", clip(fmt.Sprint(r)))
			s.log.Debug("stack of the recovered panic", "stack", string(debug.Stack()))
			s.setSession(nil)
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return s.session(ctx)
}

// session runs one connection: connect, list, serve calls until it ends.
func (s *Server) session(ctx context.Context) error {
	sess, err := s.connect(ctx)
	if err != nil {
		return err
	}
	waitc := make(chan error, 1)
	s.opts.Go("mcp session "+s.cfg.Name, func() { waitc <- sess.Wait() })
	if err := s.list(ctx, sess); err != nil {
		sess.Close()
		<-waitc
		return err
	}
	s.setSession(sess)
	s.log.Info("mcp server connected", "transport", s.cfg.Transport(), "tools", len(s.Tools()))
	defer s.setSession(nil)
	for {
		select {
		case <-ctx.Done():
			sess.Close()
			<-waitc
			return ctx.Err()
		case err := <-waitc:
			if err == nil {
				err = errors.New("connection closed")
			}
			return err
		case <-s.relist:
			if err := s.list(ctx, sess); err != nil {
				s.log.Warn("mcp tools/list after list_changed failed; keeping the previous list", "error", err)
			}
		}
	}
}

func (s *Server) setSession(sess *mcpsdk.ClientSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case sess != nil:
		s.sess = sess
		close(s.up)
	case s.sess != nil: // not dropped already
		s.sess, s.up = nil, make(chan struct{})
	}
}

// drop forgets sess if it is the current session: it was found closed.
func (s *Server) drop(sess *mcpsdk.ClientSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == sess {
		s.sess, s.up = nil, make(chan struct{})
	}
}

// connected returns the session, waiting for one until ctx ends.
func (s *Server) connected(ctx context.Context) (*mcpsdk.ClientSession, error) {
	for {
		s.mu.Lock()
		sess, up := s.sess, s.up
		s.mu.Unlock()
		if sess != nil {
			return sess, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrServerDown, context.Cause(ctx))
		}
	}
}

func (s *Server) connect(ctx context.Context) (*mcpsdk.ClientSession, error) {
	var t mcpsdk.Transport
	switch s.cfg.Transport() {
	case TransportHTTP:
		t = &mcpsdk.StreamableClientTransport{Endpoint: s.cfg.URL, HTTPClient: s.httpClient()}
	default:
		t = &mcpsdk.CommandTransport{Command: s.command(), TerminateDuration: 2 * time.Second}
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	sess, err := s.client.Connect(cctx, t, nil)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return sess, nil
}

// command is a fresh exec.Cmd for the stdio server: only its declared
// environment, its own working directory, its stderr in the node's log.
func (s *Server) command() *exec.Cmd {
	cmd := exec.Command(s.path, s.cfg.Args...)
	cmd.Dir = s.opts.WorkDir
	env := []string{"HOME=" + s.opts.WorkDir}
	if p, ok := os.LookupEnv("PATH"); ok {
		env = append(env, "PATH="+p)
	}
	for _, k := range slices.Sorted(maps.Keys(s.cfg.Env)) {
		env = append(env, k+"="+s.cfg.Env[k])
	}
	cmd.Env = env
	cmd.Stderr = &lineLogger{log: s.log}
	setProcAttr(cmd)
	return cmd
}

// list replaces the tool list with the server's.
func (s *Server) list(ctx context.Context, sess *mcpsdk.ClientSession) error {
	lctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	var got []*mcpsdk.Tool
	for t, err := range sess.Tools(lctx, nil) {
		if err != nil {
			return fmt.Errorf("tools/list: %w", err)
		}
		got = append(got, t)
	}
	listed := map[string]bool{}
	var added []plugins.Tool
	s.mu.Lock()
	if len(got) > maxTools {
		s.log.Warn("mcp server lists more tools than a server may have; the rest are skipped", "listed", len(got), "limit", maxTools)
		got = got[:maxTools]
	}
	for _, mt := range got {
		def, err := s.newDef(mt)
		if err != nil {
			s.log.Warn("mcp tool skipped", "tool", mt.Name, "error", err)
			continue
		}
		listed[mt.Name] = true
		if t, ok := s.tools[mt.Name]; ok {
			t.def.Store(def)
			continue
		}
		t := &Tool{srv: s, name: s.cfg.Name + "/" + mt.Name}
		t.def.Store(def)
		s.tools[mt.Name] = t
		added = append(added, t)
	}
	s.listed, s.reached = listed, true
	s.mu.Unlock()
	for name := range s.cfg.Tools {
		if !listed[name] {
			s.log.Warn("semantics given for a tool the server does not list", "tool", name)
		}
	}
	for _, t := range added {
		if s.opts.Register == nil {
			continue
		}
		if err := s.opts.Register(t); err != nil {
			s.log.Warn("mcp tool not registered", "tool", t.Name(), "error", err)
		} else {
			s.log.Debug("mcp tool added", "tool", t.Name(), "semantics", t.Semantics())
		}
	}
	return nil
}

func (s *Server) isListed(mcpName string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.listed[mcpName]
}
