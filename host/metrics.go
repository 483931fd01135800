package host

import (
	"context"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
)

// Metrics is the node's Prometheus instrumentation. Build it with NewMetrics;
// a nil *Metrics is valid and records nothing, so callers never check.
//
// Two kinds of series live here, and they add up differently across a cluster:
//   - counted by this node's own work (attempts, tool calls, latencies, API
//     requests): sum them across nodes;
//   - counted by the FSM as it applies the log (orloj_lease_*, orloj_retries_*,
//     orloj_tasks_submitted_total, ...) and read from the replicated state at
//     scrape time (orloj_tasks, orloj_dlq_size): every replica reports the
//     whole cluster, so take the max (or one node's), never the sum.
type Metrics struct {
	fsm    atomic.Pointer[cluster.FSM]
	gather prometheus.Gatherer // nil if the Registerer cannot gather

	attempts    *prometheus.CounterVec
	attemptTime *prometheus.HistogramVec
	instantiate prometheus.Histogram
	calls       *prometheus.CounterVec
	callTime    *prometheus.HistogramVec
	applyTime   *prometheus.HistogramVec
	httpReqs    *prometheus.CounterVec
	httpTime    *prometheus.HistogramVec
	forwarded   *prometheus.CounterVec

	submitted   prometheus.Counter
	ended       *prometheus.CounterVec
	retries     prometheus.Counter
	deadLetters *prometheus.CounterVec
	grants      prometheus.Counter
	renewals    prometheus.Counter
	expiries    prometheus.Counter
	takeovers   prometheus.Counter
	waits       *prometheus.CounterVec
	wakes       *prometheus.CounterVec
	effects     effectMetrics

	tokens      *prometheus.CounterVec
	agentTokens *prometheus.CounterVec
	tokenMu     sync.Mutex
	tokenPairs  map[[2]string]bool // the agent and model pairs agentTokens keeps
	budgetTrips *prometheus.CounterVec

	commandNames sync.Map // reflect.Type → snake_case label
}

// NewMetrics creates the metrics and registers them with reg (nil means
// prometheus.DefaultRegisterer). It panics if they are registered twice on one
// registry, as prometheus.MustRegister does: that is a wiring bug.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := &Metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_attempts_total",
			Help: "Attempts this node ran, by how they ended: succeeded, an error class, lease_lost, or error (the end could not be reported).",
		}, []string{"outcome"}),
		attemptTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orloj_attempt_duration_seconds",
			Help:    "Wall time of an attempt on this node, from claim to reported end, by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}, []string{"outcome"}),
		instantiate: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "orloj_sandbox_instantiate_duration_seconds",
			Help: "Time the sandbox spent instantiating and running a guest to exit (a command module runs during instantiation).",
			// Go guests take ~3 ms to start and exit; agents that call tools take longer.
			Buckets: prometheus.ExponentialBuckets(0.001, 3, 10),
		}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_tool_calls_total",
			Help: "Tool calls made by guests on this node, by tool and outcome (invoked, replayed, in_doubt, denied, error).",
		}, []string{"tool", "outcome"}),
		callTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "orloj_tool_call_duration_seconds",
			Help: "Latency of a tool call as the guest sees it, ledger writes included, by tool and outcome.",
			// Replays answer in microseconds, invocations in milliseconds to seconds.
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"tool", "outcome"}),
		applyTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orloj_raft_apply_duration_seconds",
			Help:    "Time from proposing a command on this node until it is committed and applied here, by command.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 12),
		}, []string{"command"}),
		httpReqs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_http_requests_total",
			Help: "API requests served by this node, by route pattern and status code.",
		}, []string{"route", "code"}),
		httpTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orloj_http_request_duration_seconds",
			Help:    "API request latency on this node, by route pattern (long-polls included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"route"}),
		forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_forwarded_commands_total",
			Help: "Commands other nodes' workers sent this node to propose, by command and result: applied, rejected (by the state machine), refused (not leader, not allowed, bad token or body) or error.",
		}, []string{"command", "result"}),

		submitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orloj_tasks_submitted_total",
			Help: "Tasks created (idempotent resubmissions not counted). Counted by every replica.",
		}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_tasks_ended_total",
			Help: "Tasks that reached succeeded, dead_letter, discarded or cancelled. Counted by every replica.",
		}, []string{"state"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orloj_retries_total",
			Help: "Retries scheduled with backoff after a failed or expired attempt. Counted by every replica.",
		}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_dead_letters_total",
			Help: "Tasks moved to the dead-letter queue, by error class. Counted by every replica.",
		}, []string{"class"}),
		grants: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orloj_lease_grants_total",
			Help: "Leases granted (each starts an attempt). Counted by every replica.",
		}),
		renewals: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orloj_lease_renewals_total",
			Help: "Lease renewals accepted. Counted by every replica.",
		}),
		expiries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orloj_lease_expiries_total",
			Help: "Leases the leader expired because their holder stopped renewing. Counted by every replica.",
		}),
		takeovers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orloj_lease_takeovers_total",
			Help: "Leases granted on a task whose previous lease expired: another attempt took over. Counted by every replica.",
		}),
		waits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_waits_total",
			Help: "Attempts that suspended at a durable wait, by kind (sleep, signal). Counted by every replica.",
		}, []string{"kind"}),
		wakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_wakes_total",
			Help: "Waiting tasks queued again, by reason (time: a wake time or timeout came; signal: the awaited signal arrived). Counted by every replica.",
		}, []string{"reason"}),
	}
	m.effects = newEffectMetrics(reg)
	if g, ok := reg.(prometheus.Gatherer); ok {
		m.gather = g
	}
	reg.MustRegister(m.attempts, m.attemptTime, m.instantiate, m.calls, m.callTime, m.applyTime,
		m.httpReqs, m.httpTime, m.forwarded, m.submitted, m.ended, m.retries, m.deadLetters,
		m.grants, m.renewals, m.expiries, m.takeovers, m.waits, m.wakes, stateCollector{m})
	m.tokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orloj_model_tokens_total",
		Help: "Model tokens spent by calls this node invoked (replays cost none), by tool and kind (prompt, completion, and cached: the part of prompt read from the provider's cache).",
	}, []string{"tool", "kind"})
	m.budgetTrips = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orloj_budget_exceeded_total",
		Help: "Calls or effects refused on this node because a task's budget ran out, by budget (calls, tokens, effects, duration).",
	}, []string{"budget"})
	m.agentTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "orloj_agent_tokens_total",
		Help: "Model tokens spent by calls this node invoked, by agent, model and kind (prompt, completion, cached). At most 1,024 agent and model pairs are kept apart; the rest count as agent and model \"other\".",
	}, []string{"agent", "model", "kind"})
	m.tokenPairs = map[[2]string]bool{}
	reg.MustRegister(m.tokens, m.budgetTrips, m.agentTokens)
	return m
}

// maxTokenPairs bounds the agent and model label pairs of
// orloj_agent_tokens_total: a model name comes from the guest's params or
// the provider's answer, and each pair is a series kept for the node's
// lifetime.
const maxTokenPairs = 1024

// tokenLabels are the agent and model labels of a call's tokens: the pair
// itself while fewer than maxTokenPairs are kept, else "other".
func (m *Metrics) tokenLabels(agent, model string) (string, string) {
	m.tokenMu.Lock()
	defer m.tokenMu.Unlock()
	p := [2]string{agent, model}
	if m.tokenPairs[p] {
		return agent, model
	}
	if len(m.tokenPairs) >= maxTokenPairs {
		return "other", "other"
	}
	m.tokenPairs[p] = true
	return agent, model
}

// ObserveTokens counts the model tokens of one invoked call. tool must be
// a registered tool's name.
func (m *Metrics) ObserveTokens(tool string, prompt, completion int64) {
	if m == nil {
		return
	}
	m.tokens.WithLabelValues(tool, "prompt").Add(float64(max(prompt, 0)))
	m.tokens.WithLabelValues(tool, "completion").Add(float64(max(completion, 0)))
}

// ObserveUsage counts the model tokens of one invoked call, as
// ObserveTokens does, and the prompt tokens the provider read from its
// cache (kind="cached", a part of kind="prompt"). tool must be a
// registered tool's name.
func (m *Metrics) ObserveUsage(tool, agent string, u plugins.Usage) {
	if m == nil {
		return
	}
	m.ObserveTokens(tool, u.PromptTokens, u.CompletionTokens)
	m.tokens.WithLabelValues(tool, "cached").Add(float64(max(u.CachedTokens, 0)))
	a, model := m.tokenLabels(agent, u.Model)
	m.agentTokens.WithLabelValues(a, model, "prompt").Add(float64(max(u.PromptTokens, 0)))
	m.agentTokens.WithLabelValues(a, model, "completion").Add(float64(max(u.CompletionTokens, 0)))
	m.agentTokens.WithLabelValues(a, model, "cached").Add(float64(max(u.CachedTokens, 0)))
}

// ObserveBudgetExceeded counts a budget that ran out.
func (m *Metrics) ObserveBudgetExceeded(kind cluster.BudgetKind) {
	if m == nil {
		return
	}
	m.budgetTrips.WithLabelValues(string(kind)).Inc()
}

// Gatherer returns the registry the metrics were registered with when it can
// also gather (a *prometheus.Registry can), else prometheus.DefaultGatherer:
// what a /metrics handler should serve.
func (m *Metrics) Gatherer() prometheus.Gatherer {
	if m == nil || m.gather == nil {
		return prometheus.DefaultGatherer
	}
	return m.gather
}

// AttachFSM makes the metrics follow a replica: the task and DLQ gauges are
// read from f at scrape time, and the lease and retry counters count the
// commands f applies from now on. Call it once the node is open.
func (m *Metrics) AttachFSM(f *cluster.FSM) {
	if m == nil || f == nil {
		return
	}
	m.fsm.Store(f)
	f.SetObserver(m.observeCommand)
}

// observeCommand counts what an applied command did. It runs on Raft's apply
// goroutine: counters only, no I/O.
func (m *Metrics) observeCommand(t cluster.MessageType, resp any) {
	if _, rejected := resp.(error); rejected {
		return
	}
	switch t {
	case cluster.MsgSubmitTask:
		if r, ok := resp.(cluster.SubmitResult); ok && !r.Existing {
			m.submitted.Inc()
		}
	case cluster.MsgClaimTask:
		c, ok := resp.(*cluster.Claim)
		if !ok || c == nil {
			return // nothing was runnable
		}
		m.grants.Inc()
		if h := c.Task.History; len(h) >= 2 && h[len(h)-2].Outcome == string(cluster.ClassExpired) {
			m.takeovers.Inc()
		}
	case cluster.MsgRenewLease:
		m.renewals.Inc()
	case cluster.MsgSuspend:
		if r, ok := resp.(cluster.SuspendResult); ok && r.Record == nil && r.Task.Wait != nil {
			m.waits.WithLabelValues(string(r.Task.Wait.Kind)).Inc()
		}
	case cluster.MsgWakeTask:
		switch r := resp.(type) {
		case cluster.Task:
			m.wakes.WithLabelValues("time").Inc()
		case int: // a batch: how many it woke
			m.wakes.WithLabelValues("time").Add(float64(r))
		}
	case cluster.MsgSendSignal:
		if r, ok := resp.(cluster.SignalResult); ok && r.Delivered {
			m.wakes.WithLabelValues("signal").Inc()
		}
	case cluster.MsgExpireLease:
		if tk, ok := resp.(cluster.Task); ok {
			m.expiries.Inc()
			m.attemptEnded(tk)
		}
	case cluster.MsgFailAttempt:
		if tk, ok := resp.(cluster.Task); ok {
			m.attemptEnded(tk)
		}
	case cluster.MsgCompleteTask, cluster.MsgDiscardDLQ, cluster.MsgCancelTask:
		if tk, ok := resp.(cluster.Task); ok {
			m.ended.WithLabelValues(string(tk.State)).Inc()
		}
	}
}

// attemptEnded counts where a failed or expired attempt sent its task.
func (m *Metrics) attemptEnded(tk cluster.Task) {
	switch tk.State {
	case cluster.StateRetryPending:
		m.retries.Inc()
	case cluster.StateDeadLetter:
		class := "unknown"
		if tk.Error != nil {
			class = string(tk.Error.Class)
		}
		m.deadLetters.WithLabelValues(class).Inc()
		m.ended.WithLabelValues(string(tk.State)).Inc()
	}
}

// ObserveAttempt records how an attempt run by this node ended and how long
// it took.
func (m *Metrics) ObserveAttempt(rep AttemptReport, d time.Duration) {
	if m == nil {
		return
	}
	outcome := rep.outcome()
	m.attempts.WithLabelValues(outcome).Inc()
	m.attemptTime.WithLabelValues(outcome).Observe(d.Seconds())
	if rep.Result.Duration > 0 {
		m.instantiate.Observe(rep.Result.Duration.Seconds())
	}
}

// ObserveCall records one tool call. tool must come from a bounded set (a
// registered tool name), never straight from the guest.
func (m *Metrics) ObserveCall(tool string, outcome CallOutcome, d time.Duration) {
	if m == nil {
		return
	}
	m.calls.WithLabelValues(tool, string(outcome)).Inc()
	m.callTime.WithLabelValues(tool, string(outcome)).Observe(d.Seconds())
}

// ObserveApply records how long a proposal took to commit and apply.
func (m *Metrics) ObserveApply(cmd cluster.Command, d time.Duration) {
	if m == nil {
		return
	}
	m.applyTime.WithLabelValues(m.commandName(cmd)).Observe(d.Seconds())
}

// ObserveHTTP records one API request; route is the matched pattern (a
// bounded set), not the raw path.
func (m *Metrics) ObserveHTTP(route string, code int, d time.Duration) {
	if m == nil {
		return
	}
	m.httpReqs.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.httpTime.WithLabelValues(route).Observe(d.Seconds())
}

// Instrument wraps c so that every Apply through it is timed in
// orloj_raft_apply_duration_seconds. A nil Metrics, or a c it already
// wraps, is returned as is.
func (m *Metrics) Instrument(c Cluster) Cluster {
	if m == nil {
		return c
	}
	if ic, ok := c.(instrumented); ok && ic.m == m {
		return c
	}
	return instrumented{Cluster: c, m: m}
}

type instrumented struct {
	Cluster
	m *Metrics
}

func (c instrumented) Apply(ctx context.Context, cmd cluster.Command) (any, error) {
	start := time.Now()
	r, err := c.Cluster.Apply(ctx, cmd)
	// A follower refuses at once; timing that would only blur the histogram.
	if !errors.Is(err, cluster.ErrNotLeader) {
		c.m.ObserveApply(cmd, time.Since(start))
	}
	return r, err
}

// commandName turns *cluster.ClaimTask into "claim_task", once per type.
func (m *Metrics) commandName(cmd cluster.Command) string {
	t := reflect.TypeOf(cmd)
	if n, ok := m.commandNames.Load(t); ok {
		return n.(string)
	}
	name := t.String()
	if t.Kind() == reflect.Pointer {
		name = t.Elem().Name()
	} else if t.Name() != "" {
		name = t.Name()
	}
	n := snakeCase(name)
	m.commandNames.Store(t, n)
	return n
}

// snakeCase: "ClaimTask" → "claim_task", "RetryDLQ" → "retry_dlq".
func snakeCase(s string) string {
	var b strings.Builder
	rs := []rune(s)
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 && (unicode.IsLower(rs[i-1]) || (i+1 < len(rs) && unicode.IsLower(rs[i+1]) && unicode.IsUpper(rs[i-1]))) {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

// stateCollector reads task counts from the attached replica at scrape time,
// so the gauges can never drift from the state they describe.
type stateCollector struct{ m *Metrics }

var (
	tasksDesc = prometheus.NewDesc("orloj_tasks", "Tasks by state, read from this replica at scrape time.", []string{"state"}, nil)
	dlqDesc   = prometheus.NewDesc("orloj_dlq_size", "Tasks in the dead-letter queue, read from this replica at scrape time.", nil, nil)
	fenceDesc = prometheus.NewDesc("orloj_fence_rejections_total", "Writes the FSM refused for a stale fencing token.", nil, nil)
)

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- tasksDesc
	ch <- dlqDesc
	ch <- fenceDesc
}

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	f := c.m.fsm.Load()
	if f == nil {
		return
	}
	// The FSM keeps the counts as it applies: a scrape costs O(states),
	// however many finished tasks the node keeps.
	counts := f.TaskCounts("")
	for _, s := range cluster.TaskStates() {
		ch <- prometheus.MustNewConstMetric(tasksDesc, prometheus.GaugeValue, float64(counts[s]), string(s))
	}
	ch <- prometheus.MustNewConstMetric(dlqDesc, prometheus.GaugeValue, float64(counts[cluster.StateDeadLetter]))
	ch <- prometheus.MustNewConstMetric(fenceDesc, prometheus.CounterValue, float64(f.FenceRejections()))
}

// ObserveForwarded counts a command another node sent to be proposed here;
// cmd is nil when it could not be decoded. A nil Metrics records nothing.
func (m *Metrics) ObserveForwarded(cmd cluster.Command, result string) {
	if m == nil {
		return
	}
	name := "unknown"
	if cmd != nil {
		name = m.commandName(cmd)
	}
	m.forwarded.WithLabelValues(name, result).Inc()
}
