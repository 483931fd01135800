package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/sandbox"
)

// Defaults for zero Config fields.
const (
	DefaultMaxBodyBytes    = 1 << 20
	DefaultMaxModuleBytes  = 64 << 20
	DefaultMaxWait         = 5 * time.Minute
	DefaultReadyMaxLag     = 1024
	DefaultReadyMaxContact = 5 * time.Second
)

// defaultWait is /wait's timeout when the request names none.
const defaultWait = 30 * time.Second

// Config configures the API server. Node, Runtime and Token are required.
type Config struct {
	Node *cluster.Node
	// Writes is the write chain the API proposes through (the daemon's:
	// metrics, lease history, forwarder). nil proposes on Node, timed by
	// Metrics.
	Writes host.Cluster
	// CatchUp, if set, lets a follower take client writes: before a write
	// is validated against this replica (does the agent exist, which
	// version is newest, which tasks are dead-lettered), CatchUp brings it
	// up to the leader (host.Forwarder.CatchUp), and the command goes to
	// the leader through Writes, which must be able to reach it. nil: a
	// follower answers writes 421 not_leader, naming the leader. Membership
	// changes (join, promote, remove, transfer) are the leader's either way.
	CatchUp func(context.Context) error
	// Runtime validates uploaded modules (Compile) before they are proposed.
	Runtime *sandbox.Runtime
	// Token is the bearer token every /v1 route requires.
	Token string
	// Clock chooses "now" for the commands the API proposes.
	Clock  func() time.Time
	Logger hclog.Logger
	// MaxBodyBytes caps JSON request bodies (default 1 MiB).
	MaxBodyBytes int64
	// MaxModuleBytes caps agent uploads (default 64 MiB).
	MaxModuleBytes int64
	// Metrics, if set, counts requests and times proposals; /metrics serves
	// its registry (else prometheus.DefaultGatherer).
	Metrics *host.Metrics
	// NewTaskID names submitted tasks (default: 26-character, time-sortable
	// random IDs).
	NewTaskID func() string
	// Peers asks other members about themselves on their cluster ports
	// (host.NewClusterClient: mTLS with this node's certificate); nil
	// lists other members without asking them.
	Peers *http.Client
	// MaxWait caps /v1/tasks/{id}/wait (default 5m); longer waits are cut to it.
	MaxWait time.Duration
	// ReadyMaxLag is how many committed entries a follower may not yet have
	// applied and still be ready (default 1024).
	ReadyMaxLag uint64
	// Tools, if set, names this node's built-in tools: a declared tool may
	// not take one's name, and an agent's manifest may name only those and
	// declared tools. nil checks neither.
	Tools func() []string
	// ReadyMaxContact is how long a follower may go without hearing from
	// the leader and still be ready (default 5s).
	ReadyMaxContact time.Duration
	// MaxEventStreams caps the GET /v1/events streams open at once
	// (default 64); past it a stream is refused 503.
	MaxEventStreams int
	// EventBacklog is how many recent task state changes the node keeps
	// for streams that resume or fall behind (default 4096).
	EventBacklog int
	// EventHeartbeat is how often an idle stream gets a comment, so
	// proxies keep it open (default 15s).
	EventHeartbeat time.Duration
}

// Validate names the first bad field.
func (c Config) Validate() error {
	switch {
	case c.Node == nil:
		return errors.New("api config: Node is nil")
	case c.Runtime == nil:
		return errors.New("api config: Runtime is nil (agent uploads are validated with it)")
	case c.Token == "":
		return errors.New("api config: Token is empty")
	case c.CatchUp != nil && c.Writes == nil:
		return errors.New("api config: CatchUp is set but Writes is nil (a follower's writes need a chain that reaches the leader)")
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("api config: MaxBodyBytes is %d; must be >= 0 (0 means %d)", c.MaxBodyBytes, DefaultMaxBodyBytes)
	case c.MaxModuleBytes < 0:
		return fmt.Errorf("api config: MaxModuleBytes is %d; must be >= 0 (0 means %d)", c.MaxModuleBytes, DefaultMaxModuleBytes)
	case c.MaxWait < 0:
		return fmt.Errorf("api config: MaxWait is %s; must be >= 0 (0 means %s)", c.MaxWait, DefaultMaxWait)
	case c.ReadyMaxContact < 0:
		return fmt.Errorf("api config: ReadyMaxContact is %s; must be >= 0 (0 means %s)", c.ReadyMaxContact, DefaultReadyMaxContact)
	case c.MaxEventStreams < 0:
		return fmt.Errorf("api config: MaxEventStreams is %d; must be >= 0 (0 means %d)", c.MaxEventStreams, DefaultMaxEventStreams)
	case c.EventBacklog < 0:
		return fmt.Errorf("api config: EventBacklog is %d; must be >= 0 (0 means %d)", c.EventBacklog, DefaultEventBacklog)
	case c.EventHeartbeat < 0:
		return fmt.Errorf("api config: EventHeartbeat is %s; must be >= 0 (0 means %s)", c.EventHeartbeat, DefaultEventHeartbeat)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.Logger == nil {
		c.Logger = hclog.NewNullLogger()
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxModuleBytes == 0 {
		c.MaxModuleBytes = DefaultMaxModuleBytes
	}
	if c.NewTaskID == nil {
		clock := c.Clock
		c.NewTaskID = func() string { return cluster.NewTaskID(clock()) }
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.ReadyMaxLag == 0 {
		c.ReadyMaxLag = DefaultReadyMaxLag
	}
	if c.ReadyMaxContact == 0 {
		c.ReadyMaxContact = DefaultReadyMaxContact
	}
	if c.MaxEventStreams == 0 {
		c.MaxEventStreams = DefaultMaxEventStreams
	}
	if c.EventBacklog == 0 {
		c.EventBacklog = DefaultEventBacklog
	}
	if c.EventHeartbeat == 0 {
		c.EventHeartbeat = DefaultEventHeartbeat
	}
	return c
}

// Server is the API as an http.Handler. It is safe for concurrent use.
type Server struct {
	cfg      Config
	node     *cluster.Node
	fsm      *cluster.FSM
	c        host.Cluster // Writes, or node with proposals timed when Metrics is set
	log      hclog.Logger
	mux      *http.ServeMux
	tokenSum [sha256.Size]byte
	metrics  http.Handler
	hub      *eventHub // recent task state changes, for GET /v1/events
	console  *console  // the web console's sessions (console.go)

	closeOnce sync.Once
	closing   chan struct{} // closed by Close: long-polls answer at once
}

// New builds the server from cfg.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	writes := cfg.Writes
	if writes == nil {
		writes = cfg.Metrics.Instrument(cfg.Node)
	}
	s := &Server{
		cfg: cfg, node: cfg.Node, fsm: cfg.Node.FSM(), c: writes,
		log: cfg.Logger.Named("api"), mux: http.NewServeMux(),
		tokenSum: sha256.Sum256([]byte(cfg.Token)), closing: make(chan struct{}),
	}
	s.metrics = promhttp.HandlerFor(cfg.Metrics.Gatherer(), promhttp.HandlerOpts{
		ErrorLog: promLogger{s.log}, ErrorHandling: promhttp.ContinueOnError,
	})
	s.hub = newEventHub(s.fsm, cfg.EventBacklog, cfg.MaxEventStreams)
	s.console = newConsole(cfg.Token)
	s.routes()
	return s, nil
}

// Close ends every long-poll and event stream in flight (each long-poll
// answers with the task as it is) and makes new ones answer at once. Call
// it before shutting the HTTP server down, so a drain is not held up by
// waiters. Safe to call twice.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.hub.close()
	})
}

func (s *Server) routes() {
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", s.metrics)

	s.handle("POST /v1/agents", s.pushAgent)
	s.handle("GET /v1/agents", s.listAgents)
	s.handle("GET /v1/agents/{name}", s.showAgent)

	s.handle("POST /v1/tools", s.pushTool)
	s.handle("POST /v1/modules", s.uploadModule)
	s.handle("GET /v1/tools", s.listTools)
	s.handle("GET /v1/tools/{name}", s.showTool)
	s.handle("DELETE /v1/tools/{name}", s.removeTool)

	s.handle("POST /v1/tasks", s.submitTask)
	s.handle("GET /v1/tasks", s.listTasks)
	s.handle("GET /v1/tasks/{id}", s.getTask)
	s.handle("GET /v1/tasks/{id}/events", s.taskEvents)
	s.handle("GET /v1/tasks/{id}/calls", s.taskCalls)
	s.handle("GET /v1/tasks/{id}/wait", s.waitTask)
	s.handle("GET /v1/tasks/counts", s.countTasks)
	s.handle("GET /v1/events", s.events)
	s.handle("POST /v1/tasks/{id}/cancel", s.cancelTask)
	s.handle("POST /v1/tasks/{id}/signals/{name}", s.signalTask)

	s.handle("GET /v1/dlq", s.listDLQ)
	s.handle("GET /v1/dlq/{id}", s.showDLQ)
	s.handle("POST /v1/dlq/{id}/retry", s.retryDLQ)
	s.handle("POST /v1/dlq/{id}/discard", s.discardDLQ)
	s.handle("POST /v1/dlq/{id}/resolve", s.resolveDLQ)
	s.handle("POST /v1/dlq/retry", s.bulkRetryDLQ)
	s.handle("POST /v1/dlq/discard", s.bulkDiscardDLQ)

	s.handle("POST /v1/schedules", s.createSchedule)
	s.handle("GET /v1/schedules", s.listSchedules)
	s.handle("GET /v1/schedules/{name}", s.showSchedule)
	s.handle("POST /v1/schedules/{name}/pause", s.pauseSchedule)
	s.handle("POST /v1/schedules/{name}/resume", s.resumeSchedule)
	s.handle("DELETE /v1/schedules/{name}", s.deleteSchedule)
	s.handle("GET /v1/approvals", s.listApprovals)
	s.handle("GET /v1/approvals/{id}", s.showApproval)
	s.handle("POST /v1/approvals/{id}/approve", s.approveCall)
	s.handle("POST /v1/approvals/{id}/deny", s.denyCall)

	s.handle("GET /v1/leases", s.listLeases)

	s.handle("GET /v1/cluster/members", s.members)
	s.handleLeader("POST /v1/cluster/join", s.join)
	s.handleLeader("POST /v1/cluster/remove", s.remove)
	s.handleLeader("POST /v1/cluster/promote", s.promote)
	s.handleLeader("POST /v1/cluster/transfer", s.transfer)
	s.handle("GET /v1/cluster/state", s.state)
	s.handle("GET /v1/cluster/self", s.self)

	s.consoleRoutes()
}

// handle registers a handler that answers errors as JSON. On a follower, a
// write first catches the replica up with the leader, since the handler
// validates against it (an agent pushed a moment ago must be found), and
// then proposes through the write chain, which forwards to the leader;
// without CatchUp, a follower answers 421 naming the leader.
func (s *Server) handle(pattern string, h func(http.ResponseWriter, *http.Request) error) {
	write := strings.HasPrefix(pattern, "POST ") || strings.HasPrefix(pattern, "DELETE ")
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if write && s.node.Role() != cluster.RoleLeader {
			if s.cfg.CatchUp == nil {
				s.fail(w, r, s.notLeader())
				return
			}
			if err := s.cfg.CatchUp(r.Context()); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// handleLeader registers a write only the leader serves: membership
// changes act on the leader's Raft configuration, not through a command a
// follower could forward. A follower answers 421 naming the leader.
func (s *Server) handleLeader(pattern string, h func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if s.node.Role() != cluster.RoleLeader {
			s.fail(w, r, s.notLeader())
			return
		}
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	})
}

// ServeHTTP authenticates /v1 requests, routes them, and answers unknown
// routes and methods with JSON errors like every other failure.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	_, pattern := s.mux.Handler(r)
	route := pattern
	if route == "" {
		route = "unmatched"
	}
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			ae := s.internal(r, "handler panicked", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			if !rec.wrote {
				s.reply(rec, ae.status, ae.body)
			}
		}
		d := time.Since(start)
		s.cfg.Metrics.ObserveHTTP(route, rec.status, d)
		s.log.Debug("request", "method", r.Method, "path", r.URL.Path, "route", route, "status", rec.status, "duration_ms", d.Milliseconds())
	}()

	if r.URL.Path == "/v1" || strings.HasPrefix(r.URL.Path, "/v1/") {
		if !s.authorized(r) {
			switch s.console.authorize(r, s.cfg.Clock()) {
			case sessionNone:
				rec.Header().Set("WWW-Authenticate", `Bearer realm="orloj"`)
				s.reply(rec, http.StatusUnauthorized, ErrorBody{Error: "missing or wrong bearer token; send Authorization: Bearer <token>", Code: CodeUnauthorized})
				return
			case sessionNoCSRF:
				s.reply(rec, http.StatusForbidden, ErrorBody{Error: "a console session's " + r.Method + " needs its CSRF token in the " + csrfHeader + " header", Code: CodeForbidden})
				return
			}
		}
	}
	if pattern == "" {
		s.unmatched(rec, r)
		return
	}
	s.mux.ServeHTTP(rec, r)
}

// unmatched runs the mux's own answer (404, 405 with Allow, or a redirect
// to a cleaned path) and turns the 404 and 405 into JSON.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request) {
	h, _ := s.mux.Handler(r)
	probe := &probeWriter{header: http.Header{}}
	h.ServeHTTP(probe, r)
	switch probe.status {
	case http.StatusNotFound:
		s.reply(w, http.StatusNotFound, ErrorBody{Error: fmt.Sprintf("no route %s %s", r.Method, r.URL.Path), Code: CodeNotFound})
	case http.StatusMethodNotAllowed:
		allow := probe.header.Get("Allow")
		w.Header().Set("Allow", allow)
		s.reply(w, http.StatusMethodNotAllowed, ErrorBody{Error: fmt.Sprintf("method %s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow), Code: "method_not_allowed"})
	default:
		for k, v := range probe.header {
			w.Header()[k] = v
		}
		w.WriteHeader(probe.status)
		_, _ = w.Write(probe.body.Bytes())
	}
}

// authorized compares digests of the tokens in constant time, so neither
// the content nor the length of the real token leaks through timing.
func (s *Server) authorized(r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(got[:], s.tokenSum[:]) == 1
}

// reply writes v as JSON with status.
func (s *Server) reply(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		id := host.NewErrorID()
		s.log.Error("encode response", "error_id", id, "type", fmt.Sprintf("%T", v), "error", err)
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{Error: fmt.Sprintf("internal error encoding the response (id %s); the server log has the details", id), Code: CodeInternal, ErrorID: id})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// statusRecorder remembers the status written, for metrics and logs.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	if !r.wrote {
		r.status, r.wrote = http.StatusOK, true
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the real writer (Flush, deadlines).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// probeWriter captures what the mux would answer to an unmatched request.
type probeWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (p *probeWriter) Header() http.Header { return p.header }
func (p *probeWriter) WriteHeader(code int) {
	if p.status == 0 {
		p.status = code
	}
}
func (p *probeWriter) Write(b []byte) (int, error) {
	if p.status == 0 {
		p.status = http.StatusOK
	}
	return p.body.Write(b)
}

// promLogger routes promhttp's error log into hclog.
type promLogger struct{ l hclog.Logger }

func (p promLogger) Println(v ...any) { p.l.Error("serve metrics", "error", fmt.Sprint(v...)) }
