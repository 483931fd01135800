package host

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/telemetry"
)

// The attributes of the spans a node exports. They carry IDs, names and
// outcomes only: never params, results, error texts or headers (size, and
// secrets a tool was given).
const (
	AttrTaskID       = attribute.Key("orloj.task.id")
	AttrAgentName    = attribute.Key("orloj.agent.name")
	AttrAgentVersion = attribute.Key("orloj.agent.version")
	AttrAttempt      = attribute.Key("orloj.attempt.number") // 1 for the first attempt
	AttrLeaseToken   = attribute.Key("orloj.lease.token")
	AttrNode         = attribute.Key("orloj.node.id")
	// AttrAttemptOutcome is how the attempt ended, as orloj_attempts_total
	// counts it: succeeded, suspended, lease_lost, an error class, or error.
	AttrAttemptOutcome = attribute.Key("orloj.attempt.outcome")

	AttrCallID      = attribute.Key("orloj.call.id")
	AttrTool        = attribute.Key("orloj.tool.name")
	AttrCallOutcome = attribute.Key("orloj.call.outcome") // a CallOutcome
	AttrCallStatus  = attribute.Key("orloj.call.status")  // the abi status the guest was answered with
	// Token counts of a call this attempt invoked (a replayed call spent
	// none), and the model that answered.
	AttrPromptTokens     = attribute.Key("orloj.call.tokens.prompt")
	AttrCompletionTokens = attribute.Key("orloj.call.tokens.completion")
	AttrModel            = attribute.Key("orloj.call.model")
)

// Span names: low-cardinality, the agent or tool name after the verb.
const (
	spanAttempt = "attempt "
	spanCall    = "call "
)

// maxModelAttr bounds the model name a provider answered with, in a span.
const maxModelAttr = 128

// tracerName is the instrumentation scope of the host's spans.
const tracerName = "github.com/orloj/orloj/host"

// Tracing turns a node's attempts and tool calls into OpenTelemetry spans:
// one trace per task (its ID is telemetry.TaskTraceID of the task ID, so
// the attempts on every node join it), a root span per attempt, and a
// child span per tool call. The span of a call that reaches its tool is in
// the context the tool is invoked with, so an HTTP tool's request carries
// it as its traceparent. A nil *Tracing records nothing and costs nothing.
type Tracing struct {
	tracer trace.Tracer
	node   string
}

// NewTracing traces with tp, naming node in every attempt span. tp must be
// built with telemetry.IDGenerator for the attempts to share their task's
// trace. A nil or no-op provider gives a nil *Tracing: nothing is done.
func NewTracing(tp trace.TracerProvider, node string) *Tracing {
	switch tp.(type) {
	case nil, noop.TracerProvider, *noop.TracerProvider:
		return nil
	}
	return &Tracing{tracer: tp.Tracer(tracerName), node: node}
}

// WithTracing exports a span per attempt and per tool call through t (nil:
// none).
func WithTracing(t *Tracing) ExecutorOption {
	return func(e *Executor) { e.tracing = t }
}

// startAttempt starts the root span of an attempt in its task's trace.
func (t *Tracing) startAttempt(ctx context.Context, claim *cluster.Claim) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	task, lease := claim.Task, claim.Lease
	ctx = telemetry.WithTraceID(ctx, telemetry.TaskTraceID(task.ID))
	return t.tracer.Start(ctx, spanAttempt+task.Agent, trace.WithNewRoot(), trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(
			AttrTaskID.String(task.ID),
			AttrAgentName.String(task.Agent),
			AttrAgentVersion.String(task.Version),
			AttrAttempt.Int(lease.Attempt),
			AttrLeaseToken.Int64(int64(lease.Token)),
			AttrNode.String(t.node),
		))
}

// endAttempt ends an attempt's span with how it ended.
func (t *Tracing) endAttempt(span trace.Span, rep AttemptReport) {
	if span == nil {
		return
	}
	outcome := rep.outcome()
	span.SetAttributes(AttrAttemptOutcome.String(outcome))
	if !rep.Succeeded && !rep.Suspended {
		span.SetStatus(codes.Error, outcome)
	}
	span.End()
}

// callSpanKey carries the span of a call being invoked, for callEvent to end.
type callSpanKey struct{}

// startCall starts the span of a call that is about to reach its tool, and
// puts it in the context the tool is invoked with. callEvent ends it, and
// endCall if nothing did (the call's end could not be recorded).
func (t *Tracing) startCall(ctx context.Context, id, label string, start time.Time) (context.Context, trace.Span) {
	if t == nil {
		return ctx, nil
	}
	ctx, span := t.tracer.Start(ctx, spanCall+label, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(AttrCallID.String(id), AttrTool.String(label)))
	return context.WithValue(ctx, callSpanKey{}, span), span
}

// endCall ends a call's span if callEvent has not: the call's end was not
// recorded (a proposal failed, the attempt was cancelled).
func (t *Tracing) endCall(span trace.Span) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.SetStatus(codes.Error, "the call's end was not recorded")
	span.End()
}

// call ends the span of one call with what became of it: the span
// startCall put in ctx, or else a new one from start to end (a call
// answered without its tool: replayed, denied, in doubt, over budget).
func (t *Tracing) call(ctx context.Context, id, label string, start, end time.Time, detail CallDetail, usage *plugins.Usage) {
	if t == nil {
		return
	}
	span, ok := ctx.Value(callSpanKey{}).(trace.Span)
	if !ok {
		_, span = t.tracer.Start(ctx, spanCall+label, trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithAttributes(AttrCallID.String(id), AttrTool.String(label)))
	}
	span.SetAttributes(AttrCallOutcome.String(string(detail.Outcome)), AttrCallStatus.String(detail.Status))
	if usage != nil {
		span.SetAttributes(AttrPromptTokens.Int64(usage.PromptTokens), AttrCompletionTokens.Int64(usage.CompletionTokens))
		if usage.Model != "" {
			span.SetAttributes(AttrModel.String(clipUTF8(usage.Model, maxModelAttr)))
		}
	}
	if detail.Status != abi.StatusOK.String() {
		span.SetStatus(codes.Error, string(detail.Outcome)+": "+detail.Status)
	}
	span.End(trace.WithTimestamp(end))
}
