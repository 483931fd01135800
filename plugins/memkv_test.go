package plugins_test

import (
	"testing"

	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/plugins/plugintest"
)

func TestMemKVConformance(t *testing.T) {
	t.Parallel()
	plugintest.KVBackendConformance(t, func(t *testing.T) plugintest.KVHarness {
		m := plugins.NewMemKV()
		return plugintest.KVHarness{Backend: m, Commit: m.Commit, Discard: m.Discard}
	})
}

func TestMemKVRefusesWhatItCannotStore(t *testing.T) {
	t.Parallel()
	m := plugins.NewMemKV()
	for _, w := range []struct {
		task string
		w    plugins.KVWrite
	}{
		{"", plugins.KVWrite{Key: "k", Value: []byte("1")}},
		{"t", plugins.KVWrite{Key: "", Value: []byte("1")}},
		{"t", plugins.KVWrite{Key: "k"}},
	} {
		if err := m.Stage(t.Context(), w.task, w.w); err == nil {
			t.Errorf("Stage(%q, %+v) = nil; want an error", w.task, w.w)
		}
	}
	if _, _, err := m.Get(canceled(t), "t", "k"); err == nil {
		t.Error("Get with a canceled context succeeded")
	}
}
