package host

import (
	"fmt"
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
	m.ObserveUsage("model", "support", plugins.Usage{PromptTokens: 100, CompletionTokens: 7, CachedTokens: 80, CacheCreationTokens: 20, Model: "gpt-x"})
	m.ObserveUsage("model", "support", plugins.Usage{PromptTokens: 10, CompletionTokens: 3, Model: "gpt-x"})
	for kind, want := range map[string]float64{"prompt": 110, "completion": 10, "cached": 80} {
		if got := testutil.ToFloat64(m.tokens.WithLabelValues("model", kind)); got != want {
			t.Errorf("orloj_model_tokens_total{kind=%q} = %v; want %v", kind, got, want)
		}
	}
	for kind, want := range map[string]float64{"prompt": 110, "completion": 10, "cached": 80} {
		if got := testutil.ToFloat64(m.agentTokens.WithLabelValues("support", "gpt-x", kind)); got != want {
			t.Errorf("orloj_agent_tokens_total{agent=support,model=gpt-x,kind=%q} = %v; want %v", kind, got, want)
		}
	}
	var nilMetrics *Metrics
	nilMetrics.ObserveUsage("model", "a", plugins.Usage{PromptTokens: 1}) // no metrics, no panic
}

// TestAgentTokensBounded: past maxTokenPairs agent and model pairs, a new
// pair counts as "other", so a guest that names a new model on every call
// cannot grow the node's series without bound.
func TestAgentTokensBounded(t *testing.T) {
	t.Parallel()
	m := NewMetrics(prometheus.NewRegistry())
	for i := range maxTokenPairs + 5 {
		m.ObserveUsage("model", "a", plugins.Usage{PromptTokens: 1, Model: fmt.Sprint("m", i)})
	}
	if got := testutil.CollectAndCount(m.agentTokens); got != (maxTokenPairs+1)*3 {
		t.Fatalf("%d series, want %d", got, (maxTokenPairs+1)*3)
	}
	if got := testutil.ToFloat64(m.agentTokens.WithLabelValues("other", "other", "prompt")); got != 5 {
		t.Fatalf("other prompt = %v, want 5", got)
	}
}
