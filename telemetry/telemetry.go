// Package telemetry owns a node's OpenTelemetry trace pipeline: whether
// traces are exported at all (the standard OTEL_* environment), the OTLP/HTTP
// exporter and batch processor, the resource that names the node, and the
// IDs that put every attempt of a task, on any node, in one trace without
// storing anything in the replicated state.
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set; Setup then returns a nil
// *Provider, whose TracerProvider is the no-op one. What the spans say is the
// host's business (host.Tracing); this package knows nothing of tasks beyond
// their IDs.
package telemetry

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// ServiceName is the service.name a node reports unless OTEL_SERVICE_NAME
// (or service.name in OTEL_RESOURCE_ATTRIBUTES) says otherwise.
const ServiceName = "orlojd"

// The environment variables Setup reads itself; the exporter, the batch
// processor, the sampler and the resource read the rest of the OTEL_*
// family on their own (OTEL_EXPORTER_OTLP_HEADERS, _TIMEOUT, _COMPRESSION,
// OTEL_BSP_*, OTEL_TRACES_SAMPLER, OTEL_SERVICE_NAME, ...).
const (
	EnvEndpoint       = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// ErrUnsupported is an OTEL_* setting this node cannot honour (a protocol
// or exporter other than OTLP over HTTP with protobuf).
var ErrUnsupported = errors.New("unsupported telemetry setting")

// Options configures Setup.
type Options struct {
	// NodeID becomes the resource's service.instance.id.
	NodeID string
	// Logger receives the exporter's errors (rate-limited); nil discards them.
	Logger hclog.Logger
}

// Provider is a node's trace pipeline. A nil *Provider is valid: tracing is
// off, TracerProvider is the no-op one and Shutdown does nothing.
type Provider struct {
	tp *sdktrace.TracerProvider
}

// Enabled reports whether the environment asks for traces: an OTLP endpoint
// is set and the SDK is not disabled. It returns an error for a setting
// this node cannot honour, naming the variable.
func Enabled() (bool, error) {
	if v := strings.TrimSpace(os.Getenv(EnvSDKDisabled)); strings.EqualFold(v, "true") {
		return false, nil
	}
	if os.Getenv(EnvEndpoint) == "" && os.Getenv(EnvTracesEndpoint) == "" {
		return false, nil
	}
	switch v := strings.TrimSpace(os.Getenv(EnvTracesExporter)); v {
	case "", "otlp":
	case "none":
		return false, nil
	default:
		return false, fmt.Errorf("%s=%q: %w (orlojd exports traces over otlp only)", EnvTracesExporter, v, ErrUnsupported)
	}
	// The traces-specific setting wins over the general one.
	k := EnvTracesProtocol
	v := strings.TrimSpace(os.Getenv(k))
	if v == "" {
		k, v = EnvProtocol, strings.TrimSpace(os.Getenv(EnvProtocol))
	}
	if v != "" && v != "http/protobuf" {
		return false, fmt.Errorf("%s=%q: %w (orlojd speaks OTLP over http/protobuf only)", k, v, ErrUnsupported)
	}
	return true, nil
}

// Setup builds the trace pipeline the environment asks for, or returns nil
// when it asks for none. Nothing is sent until a span ends; a collector
// that cannot be reached costs retries and log lines, never the node.
//
// It installs the process-wide OpenTelemetry error handler (the only hook
// the SDK reports export failures through), so the last Setup's logger
// hears them.
func Setup(ctx context.Context, opts Options) (*Provider, error) {
	on, err := Enabled()
	if err != nil || !on {
		return nil, err
	}
	exp, err := otlptracehttp.New(ctx)
	if err != nil {
		return nil, fmt.Errorf("otlp trace exporter: %w", err)
	}
	attrs := []resource.Option{resource.WithAttributes(semconv.ServiceName(ServiceName))}
	if opts.NodeID != "" {
		attrs = append(attrs, resource.WithAttributes(semconv.ServiceInstanceID(opts.NodeID)))
	}
	// Later detectors win: the environment's OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override the defaults above.
	res, err := resource.New(ctx, append(attrs, resource.WithTelemetrySDK(), resource.WithHost(), resource.WithFromEnv())...)
	if err != nil && !errors.Is(err, resource.ErrPartialResource) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	otel.SetErrorHandler(newErrorLog(opts.Logger, time.Now))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp), // bounded queue (OTEL_BSP_MAX_QUEUE_SIZE): drops, never blocks
		sdktrace.WithResource(res),
		sdktrace.WithIDGenerator(IDGenerator()),
	)
	return &Provider{tp: tp}, nil
}

// TracerProvider is the provider spans are started from: the SDK's, or the
// no-op one when tracing is off.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil {
		return noop.NewTracerProvider()
	}
	return p.tp
}

// Shutdown exports the spans still queued and stops the exporter, giving up
// when ctx ends. Safe on a nil Provider and twice.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	if err := p.tp.Shutdown(ctx); err != nil {
		return fmt.Errorf("trace provider shutdown: %w", err)
	}
	return nil
}

// TaskTraceID is the trace ID of every span of a task: the first 16 bytes
// of sha256(task ID). Any node computes it from the task ID alone, so the
// attempts of a task on different nodes join one trace with nothing stored.
func TaskTraceID(taskID string) trace.TraceID {
	sum := sha256.Sum256([]byte(taskID))
	var id trace.TraceID
	copy(id[:], sum[:len(id)])
	if !id.IsValid() { // all zeros: 2^-128, but an invalid ID drops the span
		id[len(id)-1] = 1
	}
	return id
}

// traceIDKey carries the trace ID a root span must take (WithTraceID).
type traceIDKey struct{}

// WithTraceID asks the IDGenerator to give a root span started with ctx the
// trace ID id instead of a random one. A span with a parent keeps its
// parent's trace, as always.
func WithTraceID(ctx context.Context, id trace.TraceID) context.Context {
	return context.WithValue(ctx, traceIDKey{}, id)
}

// IDGenerator returns the generator a TracerProvider needs for WithTraceID
// to work: random span IDs, and random trace IDs unless the context names
// one. Tests build their providers with it too.
func IDGenerator() sdktrace.IDGenerator { return idGenerator{} }

type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(traceIDKey{}).(trace.TraceID)
	for !ok || !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
		ok = true
	}
	return tid, idGenerator{}.NewSpanID(ctx, tid)
}

func (idGenerator) NewSpanID(context.Context, trace.TraceID) trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// errorLogEvery bounds how often export errors reach the log: a collector
// that is down fails every batch.
const errorLogEvery = 30 * time.Second

// errorLog is the otel.ErrorHandler: an exporter's error is a warning in
// the node's log, at most one per errorLogEvery, with how many were not
// logged. It never panics and never stops the node.
type errorLog struct {
	log   hclog.Logger
	clock func() time.Time

	mu         sync.Mutex
	last       time.Time
	suppressed int
}

func newErrorLog(log hclog.Logger, clock func() time.Time) *errorLog {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &errorLog{log: log.Named("telemetry"), clock: clock}
}

func (e *errorLog) Handle(err error) {
	if err == nil {
		return
	}
	e.mu.Lock()
	now := e.clock()
	if !e.last.IsZero() && now.Sub(e.last) < errorLogEvery {
		e.suppressed++
		e.mu.Unlock()
		return
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	e.mu.Unlock()
	e.log.Warn("trace export failed", "error", err, "not_logged_since_last", n)
}
