package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/host"
)

// TestDLQWebhookThroughServe: `orlojd serve --dlq-webhook URL` tells the
// receiver about a task that dead-letters, after retrying a failed
// delivery with the same Idempotency-Key.
func TestDLQWebhookThroughServe(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var keys []string
	delivered := make(chan host.DLQNotice, 4)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var n host.DLQNotice
		if err := json.Unmarshal(b, &n); err != nil {
			t.Errorf("notice %s: %v", b, err)
		}
		mu.Lock()
		keys = append(keys, r.Header.Get("Idempotency-Key"))
		first := len(keys) == 1
		mu.Unlock()
		if first {
			http.Error(w, "try later", http.StatusBadGateway)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		delivered <- n
	}))
	defer recv.Close()

	n := startNode(t, withArgs("--dlq-webhook", recv.URL+"/hook"))
	n.ok("agent", "push", "../../sandbox/testdata/exit3.wasm", "--name", "exit3", "--version", "v1")
	id := strings.TrimSpace(n.ok("task", "submit", "exit3"))
	n.fails(1, []string{"dead_letter"}, "task", "wait", id)
	select {
	case got := <-delivered:
		if got.Event != "task.dead_letter" || got.TaskID != id || got.Agent != "exit3" || got.Class != "permanent" || got.Key == "" {
			t.Fatalf("notice = %+v", got)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(keys) != 2 || keys[0] != got.Key || keys[1] != got.Key {
			t.Fatalf("idempotency keys %v, notice key %q: want the same key on the failed try and the delivery", keys, got.Key)
		}
	case <-time.After(time.Minute):
		t.Fatalf("no notice delivered; node log:\n%s", n.log.String())
	}
}
