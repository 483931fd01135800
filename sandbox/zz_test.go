package sandbox

import (
	"context"
	"encoding/json"
	"testing"
)

func TestZZSizes(t *testing.T) {
	m := mustCompile(t, shared, buildGo(t, "sixcalls.reactor", "../chaos/testdata/sixcalls", "-buildmode=c-shared"))
	s, _ := shared.snapshotFor(context.Background(), m, []string{"bench"}, nil)
	var nz uint64
	for _, p := range s.pages {
		nz += uint64(len(p.data))
	}
	t.Logf("snapshot size %d, non-zero %d in %d runs", s.size, nz, len(s.pages))
	ok := map[string]ToolFunc{"http": func(context.Context, json.RawMessage) (json.RawMessage, error) {
		return json.RawMessage(`{"status":200,"body":"ok"}`), nil
	}}
	res := shared.Run(context.Background(), m, RunConfig{TaskID: "bench", Dispatcher: NewMemDispatcher([]byte(`{"url":"http://127.0.0.1:1","job":"j-1"}`), ok)})
	t.Logf("peak %d outcome %v", res.PeakMemory, res.Outcome)
}
