package host

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orloj/orloj/plugins"
)

// TestObserveUsageCountsCachedTokens: cached tokens are counted under
// kind="cached" as well as inside kind="prompt", so prompt keeps meaning
// every input token.
func TestObserveUsageCountsCachedTokens(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	m.ObserveUsage("model", plugins.Usage{PromptTokens: 100, CompletionTokens: 7, CachedTokens: 80, CacheCreationTokens: 20})
	m.ObserveUsage("model", plugins.Usage{PromptTokens: 10, CompletionTokens: 3})
	for kind, want := range map[string]float64{"prompt": 110, "completion": 10, "cached": 80} {
		if got := testutil.ToFloat64(m.tokens.WithLabelValues("model", kind)); got != want {
			t.Errorf("orloj_model_tokens_total{kind=%q} = %v; want %v", kind, got, want)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.ObserveUsage("model", plugins.Usage{PromptTokens: 1}) // no metrics, no panic
}
