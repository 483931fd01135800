package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
	"github.com/orloj/orloj/plugins"
)

func TestAuth(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tests := []struct {
		name, method, path, auth string
		status                   int
	}{
		{"missing token", "GET", "/v1/tasks", "", http.StatusUnauthorized},
		{"wrong token", "GET", "/v1/tasks", "Bearer nope", http.StatusUnauthorized},
		{"token prefix", "GET", "/v1/tasks", "Bearer " + testToken[:4], http.StatusUnauthorized},
		{"wrong scheme", "GET", "/v1/tasks", "Basic " + testToken, http.StatusUnauthorized},
		{"unknown v1 route needs a token first", "GET", "/v1/nope", "", http.StatusUnauthorized},
		{"write without token", "POST", "/v1/tasks", "", http.StatusUnauthorized},
		{"right token", "GET", "/v1/tasks", "Bearer " + testToken, http.StatusOK},
		{"scheme is case-insensitive", "GET", "/v1/tasks", "bearer " + testToken, http.StatusOK},
		{"healthz is open", "GET", "/healthz", "", http.StatusOK},
		{"readyz is open", "GET", "/readyz", "", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := doURL(t, f.url, tc.method, tc.path, nil, tc.auth)
			code := ""
			if tc.status == http.StatusUnauthorized {
				code = api.CodeUnauthorized
			}
			want(t, r, tc.status, code)
		})
	}
	r := doURL(t, f.url, "GET", "/metrics", nil, "")
	if r.status != http.StatusOK {
		t.Fatalf("/metrics without a token: %d", r.status)
	}
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	t.Parallel()
	f := setup(t)
	want(t, f.do("GET", "/v1/nope", nil), http.StatusNotFound, api.CodeNotFound)
	want(t, f.do("GET", "/nope", nil), http.StatusNotFound, api.CodeNotFound)
	r := f.do("DELETE", "/v1/tasks", nil)
	want(t, r, http.StatusMethodNotAllowed, "method_not_allowed")
	if allow := r.header.Get("Allow"); !strings.Contains(allow, "GET") || !strings.Contains(allow, "POST") {
		t.Fatalf("Allow = %q", allow)
	}
	want(t, f.do("GET", "/v1/tasks/a%2Fb", nil), http.StatusBadRequest, api.CodeBadRequest)
}

func TestPushAgent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	hello := helloWasm(t)
	other := readFile(t, "../../sandbox/testdata/exit3.wasm")
	evil := readFile(t, "../../sandbox/testdata/evil_import.wasm")
	_, smallURL := f.serve(func(c *api.Config) { c.MaxModuleBytes = 1024 })

	tests := []struct {
		name   string
		base   string // "" = the default server
		query  string
		body   []byte
		status int
		code   string
		msg    string // part of the error message
	}{
		{name: "created", query: "name=hello&version=v1&tools=http,model&memory_limit=64MiB&timeout=5s&max_attempts=3", body: hello, status: http.StatusCreated},
		{name: "same module again", query: "name=hello&version=v1", body: hello, status: http.StatusOK},
		{name: "other module same version", query: "name=hello&version=v1", body: other, status: http.StatusConflict, code: api.CodeConflict, msg: "another module"},
		{name: "default version", query: "name=exit3", body: other, status: http.StatusCreated},
		{name: "evil import", query: "name=evil", body: evil, status: http.StatusBadRequest, code: api.CodeInvalidModule, msg: "evil.steal"},
		{name: "garbage", query: "name=junk", body: []byte("not wasm at all"), status: http.StatusBadRequest, code: api.CodeInvalidModule},
		{name: "oversize", base: smallURL, query: "name=big", body: hello, status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge},
		{name: "missing name", query: "version=v1", body: hello, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "name"},
		{name: "bad name", query: "name=" + url.QueryEscape("a/b"), body: hello, status: http.StatusBadRequest, code: api.CodeBadRequest},
		{name: "empty body", query: "name=empty", status: http.StatusBadRequest, code: api.CodeBadRequest},
		{name: "bad tool name", query: "name=x&tools=" + url.QueryEscape("a b"), body: hello, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "tools: tool name"},
		{name: "bad memory limit", query: "name=x&memory_limit=lots", body: hello, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "memory_limit"},
		{name: "bad timeout", query: "name=x&timeout=-1s", body: hello, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "timeout"},
		{name: "unknown parameter", query: "name=x&verison=2", body: hello, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: `"verison"`},
	}
	for _, tc := range tests { // in order: later cases depend on earlier pushes
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base
			if base == "" {
				base = f.url
			}
			r := doURL(t, base, "POST", "/v1/agents?"+tc.query, tc.body, "Bearer "+testToken)
			want(t, r, tc.status, tc.code)
			if tc.msg != "" && !strings.Contains(r.errBody(t).Error, tc.msg) {
				t.Fatalf("message %q does not mention %q", r.errBody(t).Error, tc.msg)
			}
		})
	}

	var list []api.AgentView
	f.do("GET", "/v1/agents", nil).decode(t, &list)
	if len(list) != 2 || list[0].Name != "exit3" || list[1].Name != "hello" {
		t.Fatalf("agents = %+v", list)
	}
	h := list[1]
	if h.Version != "v1" || h.MemoryLimit != 64<<20 || h.Timeout != "5s" || h.MaxAttempts != 3 || len(h.Tools) != 2 || h.Size != len(hello) || len(h.Digest) != 64 || h.CreatedAt == nil {
		t.Fatalf("hello = %+v", h)
	}
	if v := list[0].Version; !strings.HasPrefix(v, "sha-") || len(v) != 16 || list[0].Timeout != "30s" || list[0].MaxAttempts != 8 {
		t.Fatalf("exit3 = %+v: want a sha- version and the defaults filled in", list[0])
	}
	f.pushHello("hello", "v2")
	var d api.AgentDetail
	r := f.do("GET", "/v1/agents/hello", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &d)
	if d.Agent.Version != "v2" || len(d.Versions) != 2 || d.Versions[0].Version != "v1" {
		t.Fatalf("agent detail = %+v", d)
	}
	r = f.do("GET", "/v1/agents/nobody", nil)
	want(t, r, http.StatusNotFound, api.CodeNotFound)
	if !strings.Contains(r.errBody(t).Error, "nobody") {
		t.Fatalf("message does not name the agent: %s", r.body)
	}

	// A manifest takes every name a node can register (abi.ValidToolName).
	r = doURL(t, f.url, "POST", "/v1/agents?name=ns&tools="+url.QueryEscape("acme/search,http"), hello, "Bearer "+testToken)
	want(t, r, http.StatusCreated, "")
	f.do("GET", "/v1/agents/ns", nil).decode(t, &d)
	if !slices.Equal(d.Agent.Tools, []string{"acme/search", "http"}) {
		t.Fatalf("ns tools = %v", d.Agent.Tools)
	}
}

func TestSubmit(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	_, smallURL := f.serve(func(c *api.Config) { c.MaxBodyBytes = 64 })

	tests := []struct {
		name   string
		base   string
		body   any
		status int
		code   string
		msg    string
	}{
		{name: "ok", body: `{"agent":"hello","input":{"n":1}}`, status: http.StatusCreated},
		{name: "pinned version", body: `{"agent":"hello","version":"v1","max_attempts":3,"retry":{"base":"10ms","factor":3,"cap":"1s"}}`, status: http.StatusCreated},
		{name: "unknown agent", body: `{"agent":"ghost"}`, status: http.StatusNotFound, code: api.CodeNotFound, msg: "ghost"},
		{name: "unknown version", body: `{"agent":"hello","version":"v9"}`, status: http.StatusNotFound, code: api.CodeNotFound, msg: "hello"},
		{name: "bad JSON", body: `{"agent":`, status: http.StatusBadRequest, code: api.CodeBadRequest},
		{name: "syntax error", body: `{"agent" "hello"}`, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "byte"},
		{name: "unknown field", body: `{"agent":"hello","inptu":1}`, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: `unknown field "inptu"`},
		{name: "unknown nested field", body: `{"agent":"hello","retry":{"bsae":"1s"}}`, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: `"retry.bsae"`},
		{name: "wrong type", body: `{"agent":"hello","max_attempts":"3"}`, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "max_attempts"},
		{name: "trailing data", body: `{"agent":"hello"} {}`, status: http.StatusBadRequest, code: api.CodeBadRequest},
		{name: "empty body", body: ``, status: http.StatusBadRequest, code: api.CodeBadRequest},
		{name: "missing agent", body: `{}`, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "agent"},
		{name: "bad retry", body: `{"agent":"hello","retry":{"base":"2s","cap":"1s"}}`, status: http.StatusBadRequest, code: api.CodeBadRequest, msg: "retry.cap"},
		{name: "negative attempts", body: `{"agent":"hello","max_attempts":-1}`, status: http.StatusBadRequest, code: api.CodeBadRequest},
		{name: "too large", base: smallURL, body: `{"agent":"hello","input":"` + strings.Repeat("x", 100) + `"}`, status: http.StatusRequestEntityTooLarge, code: api.CodeTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := tc.base
			if base == "" {
				base = f.url
			}
			r := doURL(t, base, "POST", "/v1/tasks", tc.body, "Bearer "+testToken)
			want(t, r, tc.status, tc.code)
			if tc.msg != "" && !strings.Contains(r.errBody(t).Error, tc.msg) {
				t.Fatalf("message %q does not mention %q", r.errBody(t).Error, tc.msg)
			}
			if tc.status == http.StatusCreated {
				var v api.TaskView
				r.decode(t, &v)
				if len(v.ID) != 26 || v.State != cluster.StateQueued || v.Version != "v1" || v.Existing || v.CreatedAt == nil || v.Lease != nil || v.Error != nil {
					t.Fatalf("task = %+v", v)
				}
			}
		})
	}

	t.Run("idempotency key", func(t *testing.T) {
		a := f.do("POST", "/v1/tasks", api.SubmitRequest{Agent: "hello", IdempotencyKey: "order-42", Input: json.RawMessage(`{"a": 1}`)})
		want(t, a, http.StatusCreated, "")
		b := f.do("POST", "/v1/tasks", api.SubmitRequest{Agent: "hello", IdempotencyKey: "order-42"})
		want(t, b, http.StatusOK, "")
		var va, vb api.TaskView
		a.decode(t, &va)
		b.decode(t, &vb)
		if va.ID != vb.ID || va.Existing || !vb.Existing || vb.IdempotencyKey != "order-42" || string(vb.Input) != `{"a":1}` {
			t.Fatalf("first %+v, second %+v", va, vb)
		}
	})
	t.Run("policy", func(t *testing.T) {
		v := f.submit(api.SubmitRequest{Agent: "hello", MaxAttempts: 5})
		if v.MaxAttempts != 5 {
			t.Fatalf("max_attempts = %d", v.MaxAttempts)
		}
		if v = f.submit(api.SubmitRequest{Agent: "hello"}); v.MaxAttempts != 8 || string(v.Input) != "null" {
			t.Fatalf("defaults: %+v", v)
		}
	})
}

func TestTaskReads(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	f.pushHello("other", "v1")
	tk := f.submit(api.SubmitRequest{Agent: "hello", Input: json.RawMessage(`"in"`)})

	// One attempt that invokes a tool, fails transiently, and a second
	// that replays it and succeeds.
	l := f.claim(tk.ID)
	now := time.Now().UnixNano()
	detail := func(outcome host.CallOutcome) json.RawMessage {
		b, _ := json.Marshal(host.CallDetail{Outcome: outcome, Status: "ok", Duration: 1500})
		return b
	}
	f.apply(&cluster.RecordIntent{TaskID: tk.ID, Token: l.Token, CallID: "call-1", Tool: "http", Now: now})
	f.apply(&cluster.RecordResult{TaskID: tk.ID, Token: l.Token, CallID: "call-1", Status: "ok", Result: json.RawMessage(`{"body":"hi"}`), Now: now,
		Event: &cluster.Event{Type: "call", Attempt: 1, CallID: "call-1", Tool: "http", Detail: detail(host.OutcomeInvoked)}})

	r := f.do("GET", "/v1/leases", nil)
	want(t, r, http.StatusOK, "")
	var leases []api.LeaseView
	r.decode(t, &leases)
	if len(leases) != 1 || leases[0].TaskID != tk.ID || leases[0].Token != l.Token || leases[0].TTL != "1m0s" || leases[0].Node != "w1" {
		t.Fatalf("leases = %+v", leases)
	}
	var running api.TaskView
	f.do("GET", "/v1/tasks/"+tk.ID, nil).decode(t, &running)
	if running.State != cluster.StateRunning || running.Lease == nil || running.Lease.Token != l.Token || len(running.History) != 1 || running.History[0].EndedAt != nil {
		t.Fatalf("running task = %+v", running)
	}

	f.apply(&cluster.FailAttempt{TaskID: tk.ID, Token: l.Token, Jitter: 1 << 63, Now: now + 1,
		Error: cluster.TaskError{Class: cluster.ClassTransient, Message: "records 503"}})
	// The retry falls due after its backoff: claim with a clock past it.
	var c *cluster.Claim
	c, _ = f.apply(&cluster.ClaimTask{Node: "w2", TTL: time.Minute, Now: now + int64(time.Hour)}).(*cluster.Claim)
	if c == nil || c.Task.ID != tk.ID {
		t.Fatalf("second claim = %+v", c)
	}
	f.apply(&cluster.CompleteTask{TaskID: tk.ID, Token: c.Lease.Token, Output: json.RawMessage(`{"done":true}`), Now: now + int64(time.Hour),
		Journal: []cluster.Event{{Type: "call", Attempt: 2, CallID: "call-1", Tool: "http", Detail: detail(host.OutcomeReplayed)}}})

	var got api.TaskView
	r = f.do("GET", "/v1/tasks/"+tk.ID, nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &got)
	if got.State != cluster.StateSucceeded || string(got.Output) != `{"done":true}` || got.Attempts != 2 || len(got.History) != 2 || got.Lease != nil {
		t.Fatalf("task = %s", r.body)
	}
	if h := got.History[0]; h.Outcome != "transient" || h.Error != "records 503" || h.RetryDelay == nil || h.EndedAt == nil {
		t.Fatalf("first attempt = %+v", h)
	} else if _, err := time.ParseDuration(*h.RetryDelay); err != nil {
		t.Fatalf("retry_delay %q: %v", *h.RetryDelay, err)
	}
	if _, err := time.Parse(time.RFC3339Nano, *got.CreatedAt); err != nil {
		t.Fatalf("created_at %q: %v", *got.CreatedAt, err)
	}

	var calls []api.CallView
	r = f.do("GET", "/v1/tasks/"+tk.ID+"/calls", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &calls)
	if len(calls) != 2 || calls[0].Outcome != host.OutcomeInvoked || calls[0].Attempt != 1 || calls[1].Outcome != host.OutcomeReplayed ||
		calls[1].Attempt != 2 || calls[0].ID != "call-1" || calls[0].Tool != "http" || calls[0].DurationUS != 1500 || calls[0].Status != "ok" {
		t.Fatalf("calls = %s", r.body)
	}

	var events []api.EventView
	f.do("GET", "/v1/tasks/"+tk.ID+"/events", nil).decode(t, &events)
	var types []string
	for _, e := range events {
		types = append(types, string(e.Type))
	}
	if got := strings.Join(types, ","); got != "submitted,leased,call,attempt_failed,retry_scheduled,leased,call,succeeded" {
		t.Fatalf("event types = %s", got)
	}

	f.submit(api.SubmitRequest{Agent: "other"})
	lists := []struct {
		query string
		n     int
	}{
		{"", 2}, {"?state=succeeded", 1}, {"?state=queued", 1}, {"?agent=other", 1}, {"?agent=hello&state=queued", 0}, {"?limit=1", 1},
	}
	for _, l := range lists {
		var ts []api.TaskView
		r := f.do("GET", "/v1/tasks"+l.query, nil)
		want(t, r, http.StatusOK, "")
		r.decode(t, &ts)
		if len(ts) != l.n {
			t.Errorf("GET /v1/tasks%s: %d tasks, want %d", l.query, len(ts), l.n)
		}
	}
	want(t, f.do("GET", "/v1/tasks?state=bogus", nil), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("GET", "/v1/tasks?limit=-1", nil), http.StatusBadRequest, api.CodeBadRequest)
	for _, p := range []string{"", "/events", "/calls", "/wait"} {
		want(t, f.do("GET", "/v1/tasks/NOSUCHTASK"+p, nil), http.StatusNotFound, api.CodeNotFound)
	}
}

func TestWait(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	tk := f.submit(api.SubmitRequest{Agent: "hello"})

	// A short wait on a queued task times out with the task as it is.
	var v api.TaskView
	r := f.do("GET", "/v1/tasks/"+tk.ID+"/wait?timeout=50ms", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &v)
	if v.State != cluster.StateQueued {
		t.Fatalf("state = %s", v.State)
	}
	want(t, f.do("GET", "/v1/tasks/"+tk.ID+"/wait?timeout=soon", nil), http.StatusBadRequest, api.CodeBadRequest)

	done := make(chan response, 1)
	start := time.Now()
	go func() {
		done <- doURL(t, f.url, "GET", "/v1/tasks/"+tk.ID+"/wait?timeout=20s", nil, "Bearer "+testToken)
	}()
	l := f.claim(tk.ID)
	select {
	case r := <-done:
		t.Fatalf("wait returned before the task finished: %s", r.body)
	case <-time.After(50 * time.Millisecond):
	}
	f.apply(&cluster.CompleteTask{TaskID: tk.ID, Token: l.Token, Output: json.RawMessage(`42`), Now: time.Now().UnixNano()})
	r = <-done
	want(t, r, http.StatusOK, "")
	r.decode(t, &v)
	if v.State != cluster.StateSucceeded || string(v.Output) != "42" {
		t.Fatalf("waited task = %s", r.body)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("wait took %s", d)
	}

	// Close ends long-polls at once, answering with the task as it is.
	tk2 := f.submit(api.SubmitRequest{Agent: "hello"})
	go func() {
		done <- doURL(t, f.url, "GET", "/v1/tasks/"+tk2.ID+"/wait?timeout=1m", nil, "Bearer "+testToken)
	}()
	time.Sleep(50 * time.Millisecond) // let the request reach its wait
	f.api.Close()
	select {
	case r = <-done:
		want(t, r, http.StatusOK, "")
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not end on Close")
	}
}

// TestSubmitWait: POST /v1/tasks?wait= answers when the task settles or
// the wait ends, with the task as it then is, under the submit's status.
func TestSubmitWait(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")

	// A wait that ends first answers with the new task, still queued.
	var v api.TaskView
	r := f.do("POST", "/v1/tasks?wait=50ms", api.SubmitRequest{Agent: "hello"})
	want(t, r, http.StatusCreated, "")
	r.decode(t, &v)
	if v.ID == "" || v.State != cluster.StateQueued || v.Existing {
		t.Fatalf("submit with a short wait = %s", r.body)
	}
	f.claim(v.ID) // out of the way of the next claim
	want(t, f.do("POST", "/v1/tasks?wait=soon", api.SubmitRequest{Agent: "hello"}), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", "/v1/tasks?wait=-1s", api.SubmitRequest{Agent: "hello"}), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", "/v1/tasks?timeout=1s", api.SubmitRequest{Agent: "hello"}), http.StatusBadRequest, api.CodeBadRequest)

	// A wait that outlasts the task answers with its outcome.
	done := make(chan response, 1)
	go func() {
		done <- doURL(t, f.url, "POST", "/v1/tasks?wait=20s", api.SubmitRequest{Agent: "hello", IdempotencyKey: "k1"}, "Bearer "+testToken)
	}()
	var id string
	for id == "" {
		changed := f.node.FSM().Changed()
		ts, err := f.node.FSM().Tasks(cluster.TaskFilter{State: cluster.StateQueued})
		if err != nil {
			t.Fatal(err)
		}
		if len(ts) == 1 {
			id = ts[0].ID
			break
		}
		select {
		case <-changed:
		case r := <-done:
			t.Fatalf("submit answered before its task ran: %d %s", r.status, r.body)
		case <-time.After(10 * time.Second):
			t.Fatal("the waiting submission never reached the FSM")
		}
	}
	l := f.claim(id)
	select {
	case r := <-done:
		t.Fatalf("submit answered while its task ran: %d %s", r.status, r.body)
	case <-time.After(50 * time.Millisecond):
	}
	f.apply(&cluster.CompleteTask{TaskID: id, Token: l.Token, Output: json.RawMessage(`7`), Now: time.Now().UnixNano()})
	r = <-done
	want(t, r, http.StatusCreated, "")
	r.decode(t, &v)
	if v.ID != id || v.State != cluster.StateSucceeded || string(v.Output) != "7" || v.Existing {
		t.Fatalf("waited submission = %s", r.body)
	}

	// The same key again: 200, existing, and already settled.
	r = f.do("POST", "/v1/tasks?wait=20s", api.SubmitRequest{Agent: "hello", IdempotencyKey: "k1"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &v)
	if v.ID != id || !v.Existing || v.State != cluster.StateSucceeded {
		t.Fatalf("resubmission with a wait = %s", r.body)
	}
}

func TestCancel(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	tk := f.submit(api.SubmitRequest{Agent: "hello"})
	r := f.do("POST", "/v1/tasks/"+tk.ID+"/cancel", api.ReasonRequest{Reason: "not needed"})
	want(t, r, http.StatusOK, "")
	var v api.TaskView
	r.decode(t, &v)
	if v.State != cluster.StateCancelled {
		t.Fatalf("state = %s", v.State)
	}
	want(t, f.do("POST", "/v1/tasks/"+tk.ID+"/cancel", nil), http.StatusConflict, api.CodeConflict)
	want(t, f.do("POST", "/v1/tasks/NOSUCHTASK/cancel", nil), http.StatusNotFound, api.CodeNotFound)
	want(t, f.do("POST", "/v1/tasks/"+tk.ID+"/cancel", `{"reson":"x"}`), http.StatusBadRequest, api.CodeBadRequest)
}

func TestDLQ(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	f.pushHello("other", "v1")
	a := f.deadLetter("hello", "bad input a")
	b := f.deadLetter("hello", "bad input b")
	c := f.deadLetter("other", "bad input c")
	ok := f.submit(api.SubmitRequest{Agent: "hello"}) // not dead-lettered
	f.claim(ok.ID)                                    // and out of the way of later claims

	lists := []struct {
		query  string
		n      int
		status int
	}{
		{"", 3, 200}, {"?agent=hello", 2, 200}, {"?class=permanent", 3, 200}, {"?class=in_doubt", 0, 200},
		{"?since=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)), 3, 200},
		{"?until=" + url.QueryEscape(time.Now().Add(-time.Hour).Format(time.RFC3339)), 0, 200},
		{"?class=nope", 0, 400}, {"?since=yesterday", 0, 400},
	}
	for _, l := range lists {
		r := f.do("GET", "/v1/dlq"+l.query, nil)
		if l.status != 200 {
			want(t, r, l.status, api.CodeBadRequest)
			continue
		}
		want(t, r, http.StatusOK, "")
		var ts []api.TaskView
		r.decode(t, &ts)
		if len(ts) != l.n {
			t.Errorf("GET /v1/dlq%s: %d, want %d", l.query, len(ts), l.n)
		}
	}

	var e api.DLQEntry
	r := f.do("GET", "/v1/dlq/"+a.ID, nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &e)
	if e.Task.State != cluster.StateDeadLetter || e.Task.Error == nil || e.Task.Error.Class != cluster.ClassPermanent ||
		e.Task.Error.StderrTail != "panic: bad input a" || len(e.Events) == 0 || e.Calls == nil {
		t.Fatalf("dlq entry = %s", r.body)
	}
	want(t, f.do("GET", "/v1/dlq/"+ok.ID, nil), http.StatusNotFound, api.CodeNotFound)
	// Two more for the bulk operations, made now: a retried task is runnable
	// and would be claimed first.
	d := f.deadLetter("hello", "bad input d")
	e2 := f.deadLetter("other", "bad input e")

	// Single retry, pinned to a new version; then the task is runnable again.
	f.pushHello("hello", "v2")
	r = f.do("POST", "/v1/dlq/"+a.ID+"/retry", api.RetryDLQRequest{Version: "v2"})
	want(t, r, http.StatusOK, "")
	var v api.TaskView
	r.decode(t, &v)
	if v.State != cluster.StateQueued || v.Attempts != 0 || v.Version != "v2" {
		t.Fatalf("retried = %+v", v)
	}
	want(t, f.do("POST", "/v1/dlq/"+a.ID+"/retry", nil), http.StatusConflict, api.CodeConflict)
	want(t, f.do("POST", "/v1/dlq/"+b.ID+"/retry", api.RetryDLQRequest{Version: "v9"}), http.StatusNotFound, api.CodeNotFound)

	// Single discard needs a reason.
	want(t, f.do("POST", "/v1/dlq/"+b.ID+"/discard", nil), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", "/v1/dlq/"+b.ID+"/discard", api.ReasonRequest{Reason: "  "}), http.StatusBadRequest, api.CodeBadRequest)
	r = f.do("POST", "/v1/dlq/"+b.ID+"/discard", api.ReasonRequest{Reason: "customer withdrew"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &v)
	if v.State != cluster.StateDiscarded || v.DiscardReason != "customer withdrew" {
		t.Fatalf("discarded = %+v", v)
	}

	// Bulk, by filter.
	want(t, f.do("POST", "/v1/dlq/retry", api.BulkRetryRequest{Version: "v2"}), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", "/v1/dlq/discard", api.BulkDiscardRequest{Agent: "other"}), http.StatusBadRequest, api.CodeBadRequest)
	var bulk api.BulkResult
	r = f.do("POST", "/v1/dlq/retry", api.BulkRetryRequest{Agent: "hello", Class: "permanent"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &bulk)
	if bulk.Count != 1 || len(bulk.IDs) != 1 || bulk.IDs[0] != d.ID {
		t.Fatalf("bulk retry = %+v", bulk)
	}
	r = f.do("POST", "/v1/dlq/discard", api.BulkDiscardRequest{Agent: "other", Reason: "cleanup"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &bulk)
	if bulk.Count != 2 || bulk.IDs[0] != c.ID || bulk.IDs[1] != e2.ID {
		t.Fatalf("bulk discard = %+v", bulk)
	}
	r = f.do("POST", "/v1/dlq/retry", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &bulk)
	if bulk.Count != 0 || bulk.IDs == nil {
		t.Fatalf("empty bulk = %s", r.body)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t)
	r := f.do("GET", "/healthz", nil)
	want(t, r, http.StatusOK, "")
	var ready api.ReadyView
	r = f.do("GET", "/readyz", nil)
	want(t, r, http.StatusOK, "")
	r.decode(t, &ready)
	if ready.Status != "ready" || ready.Leader != "n1" || ready.AppliedIndex == 0 {
		t.Fatalf("readyz = %s", r.body)
	}

	f.pushHello("hello", "v1")
	// One real attempt through an executor with metrics: hello echoes its
	// input and succeeds.
	tools, err := plugins.NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	exec := host.NewExecutor(f.node, runtime(t), tools, time.Now, testLogger(t), host.WithMetrics(f.metrics))
	ran := f.submit(api.SubmitRequest{Agent: "hello", Input: json.RawMessage(`"hi"`)})
	c, _ := f.apply(&cluster.ClaimTask{Node: "w1", TTL: time.Minute, Now: time.Now().UnixNano()}).(*cluster.Claim)
	if c == nil || c.Task.ID != ran.ID {
		t.Fatalf("claim = %+v", c)
	}
	if rep := exec.Run(context.Background(), c); !rep.Succeeded {
		t.Fatalf("attempt = %+v", rep)
	}
	f.metrics.ObserveCall("http", host.OutcomeReplayed, time.Millisecond)

	tk := f.submit(api.SubmitRequest{Agent: "hello"})
	l := f.claim(tk.ID)
	f.apply(&cluster.RenewLease{TaskID: tk.ID, Token: l.Token, TTL: time.Minute, Now: time.Now().UnixNano()})
	f.deadLetter("hello", "poison")

	r = f.do("GET", "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("metrics: %d %s", r.status, r.body)
	}
	text := string(r.body)
	for _, m := range []string{
		`orloj_tasks{state="running"} 1`, `orloj_tasks{state="dead_letter"} 1`, `orloj_tasks{state="queued"} 0`,
		`orloj_tasks{state="succeeded"} 1`,
		"orloj_dlq_size 1", "orloj_lease_grants_total 3", "orloj_lease_renewals_total 1",
		"orloj_lease_expiries_total 0", "orloj_lease_takeovers_total 0", "orloj_tasks_submitted_total 3",
		`orloj_dead_letters_total{class="permanent"} 1`, `orloj_tasks_ended_total{state="succeeded"} 1`,
		"orloj_retries_total 0", "orloj_fence_rejections_total 0",
		`orloj_raft_apply_duration_seconds_count{command="submit_task"} 3`, `orloj_raft_apply_duration_seconds_count{command="put_agent"} 1`,
		`orloj_raft_apply_duration_seconds_count{command="complete_task"} 1`,
		`orloj_http_requests_total{code="201",route="POST /v1/tasks"} 3`,
		`orloj_attempts_total{outcome="succeeded"} 1`, `orloj_attempt_duration_seconds_count{outcome="succeeded"} 1`,
		"orloj_sandbox_instantiate_duration_seconds_count 1",
		`orloj_tool_calls_total{outcome="replayed",tool="http"} 1`, `orloj_tool_call_duration_seconds_count{outcome="replayed",tool="http"} 1`,
	} {
		if !strings.Contains(text, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	if t.Failed() {
		t.Log(text)
	}
}

// TestLeaseMetrics: the FSM observer counts an expiry, the retry it
// schedules and the takeover that follows.
func TestLeaseMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	tk := f.submit(api.SubmitRequest{Agent: "hello"})
	t0 := time.Now()
	c, _ := f.apply(&cluster.ClaimTask{Node: "w1", TTL: time.Minute, Now: t0.UnixNano()}).(*cluster.Claim)
	if c == nil || c.Task.ID != tk.ID {
		t.Fatalf("claim = %+v", c)
	}
	f.apply(&cluster.ExpireLease{TaskID: tk.ID, Token: c.Lease.Token, Now: t0.Add(2 * time.Minute).UnixNano()})
	c, _ = f.apply(&cluster.ClaimTask{Node: "w2", TTL: time.Minute, Now: t0.Add(time.Hour).UnixNano()}).(*cluster.Claim)
	if c == nil || c.Task.ID != tk.ID {
		t.Fatalf("takeover claim = %+v", c)
	}
	text := string(f.do("GET", "/metrics", nil).body)
	for _, m := range []string{"orloj_lease_expiries_total 1", "orloj_retries_total 1", "orloj_lease_grants_total 2", "orloj_lease_takeovers_total 1"} {
		if !strings.Contains(text, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
}

// TestNilMetrics: every observe method of a nil *Metrics is a no-op.
func TestNilMetrics(t *testing.T) {
	t.Parallel()
	var m *host.Metrics
	m.ObserveAttempt(host.AttemptReport{Succeeded: true}, time.Second)
	m.ObserveCall("http", host.OutcomeInvoked, time.Millisecond)
	m.ObserveApply(&cluster.ClaimTask{}, time.Millisecond)
	m.ObserveHTTP("GET /v1/tasks", 200, time.Millisecond)
	m.AttachFSM(nil)
	if m.Gatherer() == nil || m.Instrument(nil) != nil {
		t.Fatal("nil Metrics misbehaves")
	}
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	node, _ := openNode(t, "n1", true)
	rt := runtime(t)
	tests := []struct {
		name  string
		cfg   api.Config
		field string
	}{
		{"no node", api.Config{Runtime: rt, Token: "t"}, "Node"},
		{"no runtime", api.Config{Node: node, Token: "t"}, "Runtime"},
		{"no token", api.Config{Node: node, Runtime: rt}, "Token"},
		{"negative body cap", api.Config{Node: node, Runtime: rt, Token: "t", MaxBodyBytes: -1}, "MaxBodyBytes"},
		{"negative module cap", api.Config{Node: node, Runtime: rt, Token: "t", MaxModuleBytes: -1}, "MaxModuleBytes"},
		{"catch-up without a write chain", api.Config{Node: node, Runtime: rt, Token: "t", CatchUp: func(context.Context) error { return nil }}, "Writes"},
	}
	for _, tc := range tests {
		if _, err := api.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v does not name %s", tc.name, err, tc.field)
		}
	}
}

// TestPushLargeAgent: a 20 MiB module (hello plus a custom section) goes
// through Raft in chunks and comes back byte for byte.
func TestPushLargeAgent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	pad := make([]byte, 20<<20)
	for i := range pad {
		pad[i] = byte(i * 7)
	}
	// Custom section (id 0): LEB128 size, name "pad", then the bytes.
	payload := append([]byte{3, 'p', 'a', 'd'}, pad...)
	size := len(payload)
	var leb []byte
	for {
		b := byte(size & 0x7f)
		size >>= 7
		if size != 0 {
			leb = append(leb, b|0x80)
			continue
		}
		leb = append(leb, b)
		break
	}
	module := append(append(append(helloWasm(t), 0), leb...), payload...)
	r := f.do("POST", "/v1/agents?name=big&version=v1", module)
	want(t, r, http.StatusCreated, "")
	var av api.AgentView
	r.decode(t, &av)
	sum := sha256.Sum256(module)
	if av.Digest != hex.EncodeToString(sum[:]) || av.Size != len(module) {
		t.Fatalf("agent view = %+v", av)
	}
	got, err := f.node.FSM().Module(av.Digest)
	if err != nil || !bytes.Equal(got, module) {
		t.Fatalf("stored module: %d bytes, %v", len(got), err)
	}
}

// Tasks filtered by when they were submitted: since is inclusive, until
// exclusive, and a range that ends before it begins is refused.
func TestListTasksBySubmission(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	a := f.submit(api.SubmitRequest{Agent: "hello"})
	b := f.submit(api.SubmitRequest{Agent: "hello"})
	at, _ := time.Parse(time.RFC3339Nano, *a.CreatedAt)
	bt, _ := time.Parse(time.RFC3339Nano, *b.CreatedAt)
	if !at.Before(bt) {
		t.Skipf("two submissions at the same instant (%s): the clock is too coarse to tell them apart", *a.CreatedAt)
	}
	esc := url.QueryEscape
	for _, c := range []struct {
		query string
		want  []string
	}{
		{"since=" + esc(*b.CreatedAt), []string{b.ID}},
		{"until=" + esc(*b.CreatedAt), []string{a.ID}},
		{"since=" + esc(*a.CreatedAt) + "&until=" + esc(*b.CreatedAt), []string{a.ID}},
		{"since=" + esc(*a.CreatedAt) + "&order=newest", []string{b.ID, a.ID}},
		{"since=2100-01-01T00:00:00Z", nil},
	} {
		var ts []api.TaskView
		r := f.do("GET", "/v1/tasks?"+c.query, nil)
		want(t, r, http.StatusOK, "")
		r.decode(t, &ts)
		var got []string
		for _, tk := range ts {
			got = append(got, tk.ID)
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("GET /v1/tasks?%s = %v, want %v", c.query, got, c.want)
		}
	}
	want(t, f.do("GET", "/v1/tasks?since=yesterday", nil), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("GET", "/v1/tasks?since="+esc(*b.CreatedAt)+"&until="+esc(*a.CreatedAt), nil), http.StatusBadRequest, api.CodeBadRequest)
}

// Lists stop at a limit (DefaultListLimit unless asked, never over
// MaxListLimit) and say when they cut; a bulk action takes at most MaxBulk
// entries and says how many remain.
func TestListLimitsAndBulkCap(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	n := api.MaxBulk + 1
	for i := range n {
		f.deadLetter("hello", fmt.Sprintf("bad input %d", i))
	}
	for _, l := range []struct {
		path string
		n    int
		more bool
	}{
		{"/v1/dlq", api.DefaultListLimit, true},
		{"/v1/dlq?limit=1001", n, false},
		{"/v1/dlq?limit=3", 3, true},
		{"/v1/tasks", api.DefaultListLimit, true},
		{"/v1/tasks?limit=2&order=newest", 2, true},
		{"/v1/tasks?limit=5000", n, false},
		{"/v1/approvals?all=true", 0, false},
	} {
		r := f.do("GET", l.path, nil)
		want(t, r, http.StatusOK, "")
		var list []json.RawMessage
		r.decode(t, &list)
		if len(list) != l.n || (r.header.Get(api.MoreHeader) == "true") != l.more {
			t.Errorf("GET %s: %d items, %s %q; want %d, more %v", l.path, len(list), api.MoreHeader, r.header.Get(api.MoreHeader), l.n, l.more)
		}
	}
	for _, q := range []string{"0", "-1", "10001", "x"} {
		want(t, f.do("GET", "/v1/dlq?limit="+q, nil), http.StatusBadRequest, api.CodeBadRequest)
	}

	var bulk api.BulkResult
	r := f.do("POST", "/v1/dlq/discard", api.BulkDiscardRequest{Agent: "hello", Reason: "cleanup"})
	want(t, r, http.StatusOK, "")
	r.decode(t, &bulk)
	if bulk.Count != api.MaxBulk || len(bulk.IDs) != api.MaxBulk || bulk.Remaining != 1 {
		t.Fatalf("first bulk discard: count %d, %d ids, remaining %d; want %d, %d, 1", bulk.Count, len(bulk.IDs), bulk.Remaining, api.MaxBulk, api.MaxBulk)
	}
	r = f.do("POST", "/v1/dlq/discard", api.BulkDiscardRequest{Agent: "hello", Reason: "cleanup"})
	r.decode(t, &bulk)
	if bulk.Count != 1 || bulk.Remaining != 0 {
		t.Fatalf("second bulk discard: %+v", bulk)
	}
}
