package api_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

// TestStrictBodies sends, on every route that takes a body, what
// encoding/json would accept and silently change, and checks the 400 names
// the field and the replicated state did not move.
func TestStrictBodies(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	dead := f.deadLetter("hello", "boom")
	queued := f.submit(api.SubmitRequest{Agent: "hello", IdempotencyKey: "K\uFFFD"})

	tasks := "/v1/tasks"
	cancel := "/v1/tasks/" + queued.ID + "/cancel"
	retry := "/v1/dlq/" + dead.ID + "/retry"
	discard := "/v1/dlq/" + dead.ID + "/discard"
	tests := []struct {
		name, path, body string
		msg              []string // each must appear in the error
	}{
		// Duplicates: the last would win.
		{"duplicate field", tasks, `{"agent":"x","agent":"hello"}`, []string{`duplicate member "agent"`}},
		{"duplicate nested field", tasks, `{"agent":"hello","retry":{"base":"1s","base":"2s"}}`, []string{`field "retry"`, `duplicate member "base"`}},
		{"duplicate inside input", tasks, `{"agent":"hello","input":{"a":[{"b":1,"b":2}]}}`, []string{`field "input.a[0]"`, `duplicate member "b"`}},
		{"duplicate reason on cancel", cancel, `{"reason":"a","reason":"b"}`, []string{`duplicate member "reason"`}},
		{"duplicate on bulk discard", "/v1/dlq/discard", `{"reason":"a","agent":"hello","agent":"other"}`, []string{`duplicate member "agent"`}},
		// Case variants: encoding/json matches them to the field.
		{"case variant", tasks, `{"AGENT":"hello"}`, []string{`"AGENT" is spelled "agent"`}},
		{"case variant nested", tasks, `{"agent":"hello","retry":{"Base":"1s"}}`, []string{`"retry.Base" is spelled "retry.base"`}},
		{"case variant by unicode folding", tasks, `{"agent":"hello","idempotency_` + "\u212a" + `ey":"k"}`, []string{`is spelled "idempotency_key"`}},
		{"case variant and the field", tasks, `{"agent":"hello","Agent":"x"}`, []string{`"Agent" is spelled "agent"`}},
		{"case variant on cancel", cancel, `{"REASON":"x"}`, []string{`"REASON" is spelled "reason"`}},
		{"case variant on retry", retry, `{"Version":"v1"}`, []string{`"Version" is spelled "version"`}},
		{"case variant on discard", discard, `{"Reason":"x"}`, []string{`"Reason" is spelled "reason"`}},
		{"case variant on bulk retry", "/v1/dlq/retry", `{"CLASS":"permanent"}`, []string{`"CLASS" is spelled "class"`}},
		{"case variant on join", "/v1/cluster/join", `{"ID":"n9","raft_addr":"127.0.0.1:1"}`, []string{`"ID" is spelled "id"`}},
		{"case variant on remove", "/v1/cluster/remove", `{"Id":"n1"}`, []string{`"Id" is spelled "id"`}},
		{"case variant on promote", "/v1/cluster/promote", `{"iD":"n1"}`, []string{`"iD" is spelled "id"`}},
		{"case variant on transfer", "/v1/cluster/transfer", `{"ID":"n1"}`, []string{`"ID" is spelled "id"`}},
		{"unknown nested field named with its path", tasks, `{"agent":"hello","retry":{"bsae":"1s"}}`, []string{`unknown field "retry.bsae"`, "base, cap, factor"}},
		// Invalid UTF-8 is read as U+FFFD: "K\xfe" would dedupe with "K\uFFFD".
		{"invalid UTF-8 in the idempotency key", tasks, "{\"agent\":\"hello\",\"idempotency_key\":\"K\xfe\"}", []string{`field "idempotency_key"`, "invalid UTF-8"}},
		{"invalid UTF-8 in the input", tasks, "{\"agent\":\"hello\",\"input\":{\"s\":\"\xc3\"}}", []string{`field "input.s"`, "invalid UTF-8"}},
		{"invalid UTF-8 in a field name", tasks, "{\"agent\":\"hello\",\"\xff\":1}", []string{"invalid UTF-8"}},
		{"invalid UTF-8 in a reason", discard, "{\"reason\":\"\xe2\x82\"}", []string{`field "reason"`, "invalid UTF-8"}},
		// Lone surrogates are read as U+FFFD too.
		{"lone surrogate in the idempotency key", tasks, `{"agent":"hello","idempotency_key":"K\ud800"}`, []string{`field "idempotency_key"`, `\ud800 is a lone surrogate`}},
		{"lone low surrogate in the input", tasks, `{"agent":"hello","input":["\udc00"]}`, []string{`field "input[0]"`, "lone surrogate"}},
		{"lone surrogate in a field name", tasks, `{"agent":"hello","input":{"K\ud800":1,"K\ufffd":2}}`, []string{`field "input"`, "lone surrogate"}},
		{"lone surrogate in a reason", cancel, `{"reason":"\uDBFF!"}`, []string{`field "reason"`, "lone surrogate"}},
		{"data after the object", tasks, `{"agent":"hello"}{"agent":"hello"}`, []string{"data after the value"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := stateHash(t, f)
			r := f.do("POST", tc.path, tc.body)
			want(t, r, http.StatusBadRequest, api.CodeBadRequest)
			msg := r.errBody(t).Error
			for _, m := range tc.msg {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not say %q", msg, m)
				}
			}
			if after := stateHash(t, f); after != before {
				t.Errorf("state changed: hash %s -> %s", before, after)
			}
		})
	}

	// The stored key is the one written with U+FFFD; its look-alikes are
	// refused above, not deduplicated onto it.
	var ts []api.TaskView
	f.do("GET", "/v1/tasks", nil).decode(t, &ts)
	if len(ts) != 2 {
		t.Fatalf("%d tasks, want the 2 the test made", len(ts))
	}
	if tk, err := f.node.FSM().Task(queued.ID); err != nil || tk.State != cluster.StateQueued || tk.IdempotencyKey != "K\uFFFD" {
		t.Fatalf("task %s = %+v, %v", queued.ID, tk, err)
	}
	if tk, err := f.node.FSM().Task(dead.ID); err != nil || tk.State != cluster.StateDeadLetter {
		t.Fatalf("dead letter %s = %+v, %v", dead.ID, tk, err)
	}
}

func stateHash(t *testing.T, f *fixture) string {
	t.Helper()
	h, err := f.node.FSM().Hash()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// TestQueryOutOfRange checks every time and number a route reads from its
// query is refused, naming the parameter, where it cannot be held or makes
// no sense, instead of wrapping into a filter that matches everything.
func TestQueryOutOfRange(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	dead := f.deadLetter("hello", "boom")
	tests := []struct {
		name, path, param string
	}{
		{"since past int64 nanoseconds", "/v1/dlq?since=2300-01-01T00:00:00Z", "since"},
		{"until past int64 nanoseconds", "/v1/dlq?until=2300-01-01T00:00:00Z", "until"},
		{"since before int64 nanoseconds", "/v1/dlq?since=1600-01-01T00:00:00Z", "since"},
		{"since at year 9999", "/v1/dlq?since=9999-12-31T23:59:59Z", "since"},
		{"until not after since", "/v1/dlq?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "until"},
		{"since not a time", "/v1/dlq?since=1700000000", "since"},
		{"limit overflows", "/v1/tasks?limit=99999999999999999999", "limit"},
		{"limit negative", "/v1/tasks?limit=-1", "limit"},
		{"wait timeout overflows", "/v1/tasks/" + dead.ID + "/wait?timeout=9999999999h", "timeout"},
		{"wait timeout negative", "/v1/tasks/" + dead.ID + "/wait?timeout=-1s", "timeout"},
		{"agent filter not UTF-8", "/v1/tasks?agent=K%FE", "agent"},
		{"dlq agent filter not a name", "/v1/dlq?agent=a%20b", "agent"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := f.do("GET", tc.path, nil)
			want(t, r, http.StatusBadRequest, api.CodeBadRequest)
			if msg := r.errBody(t).Error; !strings.HasPrefix(msg, tc.param+" ") {
				t.Fatalf("message %q does not start with the parameter %q", msg, tc.param)
			}
		})
	}
	// The edges that fit are served.
	var ts []api.TaskView
	r := f.do("GET", "/v1/dlq?since=1970-01-02T00:00:00Z&until=2262-04-11T23:47:16Z", nil)
	want(t, r, http.StatusOK, "")
	if r.decode(t, &ts); len(ts) != 1 || ts[0].ID != dead.ID {
		t.Fatalf("dead letters in range = %s", r.body)
	}
	r = f.do("GET", "/v1/dlq?since=2262-04-11T23:47:16Z", nil)
	want(t, r, http.StatusOK, "")
	if r.decode(t, &ts); len(ts) != 0 {
		t.Fatalf("dead letters since the last second int64 holds = %s", r.body)
	}
}

// TestInternalErrorHasAnID: an unexpected failure answers with an error ID
// and no detail; the server log has the detail under the same ID.
func TestInternalErrorHasAnID(t *testing.T) {
	t.Parallel()
	f := setup(t)
	var logs syncBuffer
	_, base := f.serve(func(c *api.Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, JSONFormat: true, Level: hclog.Error})
	})
	if err := f.node.Close(); err != nil { // the state store is gone: every read fails
		t.Fatal(err)
	}
	r := doURL(t, base, "GET", "/v1/agents", nil, "Bearer "+testToken)
	want(t, r, http.StatusInternalServerError, api.CodeInternal)
	e := r.errBody(t)
	if len(e.ErrorID) != 16 || e.Error != "internal error (id "+e.ErrorID+"); the server log has the details" {
		t.Fatalf("answer %s", r.body)
	}
	var line struct {
		ErrorID string `json:"error_id"`
		Error   string `json:"error"`
		Path    string `json:"path"`
	}
	for _, l := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if json.Unmarshal([]byte(l), &line) == nil && line.ErrorID == e.ErrorID {
			break
		}
	}
	if line.ErrorID != e.ErrorID || line.Error == "" || line.Path != "/v1/agents" {
		t.Fatalf("no log line with error_id %s and the detail: %s", e.ErrorID, logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
