package host

import "github.com/prometheus/client_golang/prometheus"

// EffectResult is how the outbox finished with an effect, a label value of
// orloj_effects_total.
type EffectResult string

const (
	EffectDispatched EffectResult = "dispatched" // the tool accepted it
	EffectFailed     EffectResult = "failed"     // refused for good, or out of tries
)

// effectMetrics count the outbox's work on this node (the leader's): sum
// them across nodes, since only the leader dispatches.
type effectMetrics struct {
	done    *prometheus.CounterVec
	retries *prometheus.CounterVec
}

func newEffectMetrics(reg prometheus.Registerer) effectMetrics {
	m := effectMetrics{
		done: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_effects_total",
			Help: "Outbox effects this node finished, by tool and result: dispatched, or failed (refused, or out of tries). A tool not registered here is \"unregistered\".",
		}, []string{"tool", "result"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orloj_effect_retries_total",
			Help: "Outbox dispatches this node will try again after a transient failure or a panic, by tool.",
		}, []string{"tool"}),
	}
	reg.MustRegister(m.done, m.retries)
	return m
}

// ObserveEffect counts an effect marked done. tool must be a registered
// tool's name or "unregistered", never a guest's string.
func (m *Metrics) ObserveEffect(tool string, r EffectResult) {
	if m == nil {
		return
	}
	m.effects.done.WithLabelValues(tool, string(r)).Inc()
}

// ObserveEffectRetry counts a dispatch that will be tried again.
func (m *Metrics) ObserveEffectRetry(tool string) {
	if m == nil {
		return
	}
	m.effects.retries.WithLabelValues(tool).Inc()
}
