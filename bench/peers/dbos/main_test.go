package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	base := []string{"-db", "postgres://postgres@127.0.0.1:5432/dbos?sslmode=disable", "-steps-url", "http://127.0.0.1:8081"}
	tests := []struct {
		name    string
		args    []string
		wantErr string // empty: must parse
	}{
		{name: "defaults", args: base},
		{name: "all flags", args: append(slices.Clone(base), "-clients", "4", "-duration", "3s", "-sequential", "0", "-warmup", "0")},
		{name: "no db", args: []string{"-steps-url", "http://127.0.0.1:8081"}, wantErr: "-db is required"},
		{name: "no steps url", args: base[:2], wantErr: "-steps-url is required"},
		{name: "steps url without scheme", args: []string{"-db", "x", "-steps-url", "127.0.0.1:8081"}, wantErr: "not an http(s) URL"},
		{name: "steps url without host", args: []string{"-db", "x", "-steps-url", "http://"}, wantErr: "not an http(s) URL"},
		{name: "zero clients", args: append(slices.Clone(base), "-clients", "0"), wantErr: "-clients must be at least 1"},
		{name: "zero duration", args: append(slices.Clone(base), "-duration", "0s"), wantErr: "-duration must be positive"},
		{name: "negative sequential", args: append(slices.Clone(base), "-sequential", "-1"), wantErr: "-sequential must not be negative"},
		{name: "negative warmup", args: append(slices.Clone(base), "-warmup", "-1"), wantErr: "-warmup must not be negative"},
		{name: "stray argument", args: append(slices.Clone(base), "extra"), wantErr: "unexpected arguments"},
		{name: "unknown flag", args: append(slices.Clone(base), "-bogus"), wantErr: "bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := parseConfig(tt.args, io.Discard)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("parseConfig: %v", err)
				}
				return
			}
			if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("parseConfig error = %v, want errUsage containing %q (config %+v)", err, tt.wantErr, c)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := parseConfig([]string{"-db", "postgres://x@127.0.0.1/d", "-steps-url", "http://127.0.0.1:1/base"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.clients != 16 || c.duration != 20*time.Second || c.sequential != 50 || c.warmup != 5 {
		t.Fatalf("defaults = clients %d duration %s sequential %d warmup %d, want 16 20s 50 5",
			c.clients, c.duration, c.sequential, c.warmup)
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	var d []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	if got := percentile(d, 50); got != 50*time.Millisecond {
		t.Errorf("p50 = %s, want 50ms", got)
	}
	if got := percentile(d, 95); got != 95*time.Millisecond {
		t.Errorf("p95 = %s, want 95ms", got)
	}
	if got := percentile([]time.Duration{7}, 95); got != 7 {
		t.Errorf("p95 of one = %s, want 7ns", got)
	}
	if got := percentile(nil, 50); got != 0 {
		t.Errorf("p50 of none = %s, want 0", got)
	}
}

// stepServer records every request the way the benchmark's step server sees it.
type stepServer struct {
	mu     sync.Mutex
	status int
	keys   map[string]int // Idempotency-Key -> requests
	bad    []string
}

func newStepServer(t *testing.T, status int) (*stepServer, *url.URL) {
	t.Helper()
	s := &stepServer{status: status, keys: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return s, u
}

func (s *stepServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	q := r.URL.Query()
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case r.Method != http.MethodPost:
		s.bad = append(s.bad, "method "+r.Method)
	case r.URL.Path != "/effect":
		s.bad = append(s.bad, "path "+r.URL.Path)
	case q.Get("job") == "" || q.Get("step") == "":
		s.bad = append(s.bad, "query "+r.URL.RawQuery)
	case key != q.Get("job")+"/"+q.Get("step"):
		s.bad = append(s.bad, "key "+key+" for query "+r.URL.RawQuery)
	case len(body) == 0:
		s.bad = append(s.bad, "empty body")
	}
	s.keys[key]++
	w.WriteHeader(s.status)
}

func TestEffectRequest(t *testing.T) {
	t.Parallel()
	s, u := newStepServer(t, http.StatusOK)
	w := &worker{stepsURL: u, http: http.DefaultClient}
	if _, err := w.effect(context.Background(), "job-1", 3); err != nil {
		t.Fatalf("effect: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) > 0 {
		t.Fatalf("step server saw bad requests: %v", s.bad)
	}
	if s.keys["job-1/3"] != 1 {
		t.Fatalf("keys = %v, want job-1/3 once", s.keys)
	}
}

func TestEffectRefusesNon200(t *testing.T) {
	t.Parallel()
	_, u := newStepServer(t, http.StatusServiceUnavailable)
	w := &worker{stepsURL: u, http: http.DefaultClient}
	_, err := w.effect(context.Background(), "job-1", 1)
	if err == nil || !strings.Contains(err.Error(), "status 503") {
		t.Fatalf("effect error = %v, want status 503", err)
	}
}

func TestRunUnreachablePostgres(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback: nothing listens there.
	cfg, err := parseConfig([]string{
		"-db", "postgres://postgres:secret@127.0.0.1:1/dbos?sslmode=disable",
		"-steps-url", "http://127.0.0.1:1", "-connect-timeout", "1s",
	}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(context.Background(), cfg)
	if err == nil || res != nil {
		t.Fatalf("run = %+v, %v; want no result and an error", res, err)
	}
	if !strings.Contains(err.Error(), "cannot open the DBOS system database") {
		t.Fatalf("error = %v, want it to say the database cannot be opened", err)
	}
	if strings.Contains(err.Error(), "secret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

// TestRunAgainstPostgres runs the whole workload briefly. It needs a
// PostgreSQL server: DBOS_PEER_TEST_DB=$(scripts/pg-private.sh start DIR PORT).
func TestRunAgainstPostgres(t *testing.T) {
	db := os.Getenv("DBOS_PEER_TEST_DB")
	if db == "" {
		t.Skip("DBOS_PEER_TEST_DB is not set")
	}
	s, u := newStepServer(t, http.StatusOK)
	cfg, err := parseConfig([]string{"-db", db, "-steps-url", u.String(),
		"-clients", "2", "-duration", "1s", "-sequential", "3", "-warmup", "1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := run(context.Background(), cfg)
	if err != nil {
		t.Fatalf("run: %v (result %+v)", err, res)
	}
	if res.System != "dbos" || res.Tasks < 1 || res.SeqTasks != 3 || res.Errors != 0 ||
		res.TasksPerS <= 0 || res.P50Ms <= 0 || res.P95Ms < res.P50Ms || res.SeqP95Ms < res.SeqP50Ms {
		t.Fatalf("result = %+v", res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.bad) > 0 {
		t.Fatalf("step server saw bad requests: %v", s.bad[:min(len(s.bad), 5)])
	}
	wantCalls := (res.Tasks + res.SeqTasks + 1) * stepsPerTask
	if len(s.keys) != wantCalls {
		t.Fatalf("step server saw %d distinct keys, want %d", len(s.keys), wantCalls)
	}
	for k, n := range s.keys {
		if n != 1 {
			t.Fatalf("key %s called %d times, want once", k, n)
		}
	}
}
