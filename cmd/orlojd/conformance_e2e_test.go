package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/host"
)

// The conformance suite: every guest library's conformance agent performs
// the same cases, through `orlojd run` and on a started node, and both must
// give the outcome docs/abi.md promises, and the same one. docs/sdks.md
// (Conformance) says what an agent does in each case and how a user runs
// the suite against a library of their own:
//
//	ORLOJ_CONFORMANCE_MODULE=path/to/agent.wasm go test -run TestConformance ./cmd/orlojd/
//
// ORLOJ_CONFORMANCE_SKIP=case,case leaves out cases that library cannot
// express; the test names them.

// confModule is one conformance agent, and the cases it cannot express,
// each with the reason (the test reports them as skipped, by name).
type confModule struct {
	name    string // the agent's name on the node and its file name for orlojd run
	path    func(t *testing.T) string
	cannot  map[string]string
	envSkip bool // from ORLOJ_CONFORMANCE_SKIP
}

func confModules(t *testing.T) []confModule {
	if p := os.Getenv("ORLOJ_CONFORMANCE_MODULE"); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		m := confModule{name: "conformance-user", path: func(*testing.T) string { return abs }, cannot: map[string]string{}}
		for _, c := range strings.Split(os.Getenv("ORLOJ_CONFORMANCE_SKIP"), ",") {
			if c = strings.TrimSpace(c); c != "" {
				m.cannot[c] = "left out by ORLOJ_CONFORMANCE_SKIP"
			}
		}
		return []confModule{m}
	}
	guest := func(lang, build string) func(t *testing.T) string {
		return func(t *testing.T) string { return guestAgent(t, lang, build) }
	}
	return []confModule{
		{name: "conformance-go", path: func(*testing.T) string { return agent("conformance") }},
		{name: "conformance-c", path: guest("c", "conformance")},
		// The tinybuf builds offer the host 8 bytes first: every answer,
		// the input and every error body take buffer_too_small → response.
		{name: "conformance-c-tinybuf", path: guest("c", "conformance-tinybuf")},
		{name: "conformance-rust", path: guest("rust", "conformance")},
		{name: "conformance-rust-tinybuf", path: guest("rust", "conformance-tinybuf")},
		{name: "conformance-assemblyscript", path: guest("assemblyscript", "conformance")},
		{name: "conformance-assemblyscript-tinybuf", path: guest("assemblyscript", "conformance-tinybuf")},
	}
}

// The stand-in service the node's http tool reaches. Its answers carry
// exactly two headers (no Date), so a stub of orlojd run can return the
// very result the node's http tool builds.
// The large response is what docs/abi.md (Limits) says always fits in a
// ledger entry: about 1.9 MiB of text with no <, > or &.
const confBigBytes = 1945 << 10

// confPad makes echo's input 896 KiB, near the 1 MiB a submit takes: the
// task record then holds 1.75 MiB (input and output), over the 1 MiB value
// Badger in memory could keep, so orlojd run must keep its state on disk.
const confPad = 14 << 12

var confBig = func() string {
	var b strings.Builder
	for i := 0; b.Len() < confBigBytes; i++ {
		fmt.Fprintf(&b, "%08x", i)
	}
	return b.String()[:confBigBytes]
}()

type confService struct {
	url string
	mu  sync.Mutex
	// seen counts requests by path and Idempotency-Key: /flaky fails the
	// first time it sees a key.
	seen map[string]int
}

func startConfService(t *testing.T) *confService {
	c := &confService{seen: map[string]int{}}
	s := startStub(t, func(w http.ResponseWriter, r *http.Request, body []byte) {
		key := r.Header.Get("Idempotency-Key")
		c.mu.Lock()
		c.seen[r.URL.Path+" "+key]++
		n := c.seen[r.URL.Path+" "+key]
		c.mu.Unlock()
		status, text, ctype := confAnswer(r.URL.Path, n)
		w.Header()["Date"] = nil
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Content-Length", strconv.Itoa(len(text)))
		w.WriteHeader(status)
		fmt.Fprint(w, text)
	})
	c.url = s.url
	return c
}

// confAnswer is the stand-in's answer to the nth request for path with
// one idempotency key.
func confAnswer(path string, n int) (status int, body, contentType string) {
	switch path {
	case "/big":
		return 200, confBig, "text/plain"
	case "/tool_error":
		return 400, "conformance tool_error", "text/plain"
	case "/transient":
		return 503, "conformance transient", "text/plain"
	case "/flaky":
		if n == 1 {
			return 503, "conformance flaky", "text/plain"
		}
	}
	return 200, `{"ok":true}`, "application/json"
}

func (c *confService) count(path, key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[path+" "+key]
}

// httpResult is the node's http tool's result for an answer (plugins/http.go).
func confResult(t *testing.T, path string, n int) json.RawMessage {
	status, body, ctype := confAnswer(path, n)
	b, err := json.Marshal(struct {
		Status  int               `json:"status"`
		Headers map[string]string `json:"headers"`
		Body    string            `json:"body"`
	}{status, map[string]string{"Content-Length": strconv.Itoa(len(body)), "Content-Type": ctype}, body})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// confStub is one answer of an orlojd run stub; the error answers repeat
// the http tool's messages for the stand-in's answers.
func confStub(t *testing.T, url, path string, n int) map[string]any {
	status, body, _ := confAnswer(path, n)
	if status < 400 {
		return map[string]any{"result": confResult(t, path, n)}
	}
	st := "tool_error"
	if status >= 500 {
		st = "transient"
	}
	return map[string]any{"error": map[string]string{"status": st,
		"message": fmt.Sprintf("GET %s%s: status %d %s: %q", url, path, status, http.StatusText(status), body)}}
}

// confSide is how one run of a case ended, through orlojd run or on the node.
type confSide struct {
	state, class string
	attempts     int
	output       json.RawMessage
	logs         map[int][]string // the guest's log lines by attempt
	effectKeys   []string         // the idempotency keys of the effects, in order
}

type confCase struct {
	name        string
	maxAttempts int
	// input adds members to {"case": name, "url": url}.
	input func(in map[string]any)
	// stubs is orlojd run's --tools: the answers the node's http tool
	// gets from the stand-in, in the order the agent calls.
	stubs          func(t *testing.T, url string) map[string]any
	state, class   string
	attempts       int
	check          func(t *testing.T, taskID, url string, side string, s confSide)
	sameOutputs    bool // orlojd run and the node must write the same output byte for byte
	checkNodeCalls func(t *testing.T, taskID, url string, calls []callJSON)
}

func confCases() []confCase {
	httpOnly := func(answers ...func(t *testing.T, url string) map[string]any) func(t *testing.T, url string) map[string]any {
		return func(t *testing.T, url string) map[string]any {
			var list []any
			for _, a := range answers {
				list = append(list, a(t, url))
			}
			if len(list) == 0 {
				return map[string]any{"http": map[string]any{"result": confResult(t, "/occ", 1)}}
			}
			return map[string]any{"http": list}
		}
	}
	answer := func(path string, n int) func(t *testing.T, url string) map[string]any {
		return func(t *testing.T, url string) map[string]any { return confStub(t, url, path, n) }
	}
	want := func(t *testing.T, side string, got json.RawMessage, w string) {
		t.Helper()
		// Members in any order: a library may write them as it likes.
		if g, err := abi.Canonicalize(got); err != nil || string(g) != string(must(abi.Canonicalize([]byte(w)))) {
			t.Errorf("%s: output %.300s, want %.300s", side, got, w)
		}
	}
	return []confCase{
		{name: "echo", maxAttempts: 1, sameOutputs: true,
			input: func(in map[string]any) { in["pad"] = strings.Repeat("0123456789abcdef", confPad) },
			stubs: httpOnly(),
			state: "succeeded", attempts: 1,
			check: func(t *testing.T, _, url, side string, s confSide) {
				in, _ := json.Marshal(map[string]any{"case": "echo", "url": url, "pad": strings.Repeat("0123456789abcdef", confPad)})
				want(t, side, s.output, compact(in))
			}},
		{name: "large_response", maxAttempts: 1, sameOutputs: true,
			stubs: httpOnly(answer("/big", 1)),
			state: "succeeded", attempts: 1,
			check: func(t *testing.T, _, _, side string, s confSide) {
				r := confResult(t, "/big", 1)
				h := fnv.New32a()
				h.Write(r)
				want(t, side, s.output, fmt.Sprintf(`{"len":%d,"fnv1a":%d}`, len(r), h.Sum32()))
			}},
		{name: "statuses", maxAttempts: 1, sameOutputs: true,
			stubs: httpOnly(answer("/tool_error", 1), answer("/transient", 1)),
			state: "succeeded", attempts: 1,
			check: func(t *testing.T, _, url, side string, s confSide) {
				var out struct {
					Answers []struct{ Status, Message string }
				}
				if err := json.Unmarshal(s.output, &out); err != nil {
					t.Fatalf("%s: output %s: %v", side, s.output, err)
				}
				var got []string
				for _, a := range out.Answers {
					got = append(got, a.Status)
				}
				if w := []string{"tool_error", "transient", "permission_denied", "invalid_argument"}; !slices.Equal(got, w) {
					t.Errorf("%s: statuses %q, want %q (output %s)", side, got, w, s.output)
				}
				for i, a := range out.Answers {
					if a.Message == "" {
						t.Errorf("%s: answer %d (%s) has no message", side, i, a.Status)
					}
				}
			}},
		{name: "replay", maxAttempts: 3,
			stubs: httpOnly(answer("/flaky", 1), answer("/flaky", 2)),
			state: "succeeded", attempts: 2,
			check: func(t *testing.T, _, _, side string, s confSide) {
				var out struct {
					Now    []uint64
					Random string
				}
				if err := json.Unmarshal(s.output, &out); err != nil || len(out.Now) != 3 {
					t.Fatalf("%s: output %s: %v", side, s.output, err)
				}
				if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(out.Random) {
					t.Errorf("%s: random %q, want 16 bytes in hex", side, out.Random)
				}
				if !(out.Now[0] < out.Now[1] && out.Now[1] <= out.Now[2]) || out.Now[0] < uint64(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()) {
					t.Errorf("%s: now %v: want three real times, in order, the first two different", side, out.Now)
				}
				// Both attempts logged the same two times and bytes, and
				// they are the output's: the second replayed the first.
				line := fmt.Sprintf("replay %d %d %s", out.Now[0], out.Now[1], out.Random)
				for a := 1; a <= 2; a++ {
					var got []string
					for _, l := range s.logs[a] {
						if strings.HasPrefix(l, "replay ") {
							got = append(got, l)
						}
					}
					if !slices.Equal(got, []string{line}) {
						t.Errorf("%s: attempt %d logged %q, want [%q]", side, a, got, line)
					}
				}
			}},
		{name: "exit_transient", maxAttempts: 2, stubs: httpOnly(),
			state: "dead_letter", class: "attempts_exhausted", attempts: 2},
		{name: "exit_permanent", maxAttempts: 2, stubs: httpOnly(),
			state: "dead_letter", class: "permanent", attempts: 1},
		{name: "exit_after_transient", maxAttempts: 2, stubs: httpOnly(answer("/transient", 1)),
			state: "dead_letter", class: "attempts_exhausted", attempts: 2},
		{name: "exit_after_denied", maxAttempts: 2, stubs: httpOnly(),
			state: "dead_letter", class: "policy", attempts: 1},
		{name: "emit", maxAttempts: 1, sameOutputs: true, stubs: httpOnly(),
			state: "succeeded", attempts: 1,
			check: func(t *testing.T, taskID, url, side string, s confSide) {
				want(t, side, s.output, `{"emitted":3}`)
				p := canonical(t, map[string]any{"method": "POST", "url": url + "/effect", "body": "conformance"})
				// An emit with a key counts toward the next unkeyed
				// one's occurrence: #0, key:k1, #2 (docs/abi.md, emit).
				w := []string{host.CallID(taskID, "emit:http", p, "", 0), host.CallID(taskID, "emit:http", p, "k1", 0),
					host.CallID(taskID, "emit:http", p, "", 2)}
				if !slices.Equal(s.effectKeys, w) {
					t.Errorf("%s: effect keys %q, want %q", side, s.effectKeys, w)
				}
			}},
		{name: "occurrence", maxAttempts: 1, sameOutputs: true, stubs: httpOnly(),
			state: "succeeded", attempts: 1,
			check: func(t *testing.T, _, _, side string, s confSide) { want(t, side, s.output, `{"calls":3}`) },
			checkNodeCalls: func(t *testing.T, taskID, url string, calls []callJSON) {
				p := canonical(t, map[string]any{"url": url + "/occ"})
				// A call with a key is not counted: #0, key:k, #1.
				w := []string{host.CallID(taskID, "http", p, "", 0), host.CallID(taskID, "http", p, "k", 0), host.CallID(taskID, "http", p, "", 1)}
				var got []string
				for _, c := range calls {
					got = append(got, c.ID)
				}
				if !slices.Equal(got, w) {
					t.Errorf("node: call IDs %q, want %q (#0, key:k, #1)", got, w)
				}
			}},
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func canonical(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if b, err = abi.Canonicalize(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestConformance runs every case of the conformance suite for every
// guest library's conformance agent, through `orlojd run` and on one node,
// and checks that each side ends as docs/abi.md says and that both agree:
// the same state, class, attempts and output (the times `now` returns
// aside), the same effect keys. The node's task ID is passed to orlojd run
// as --task-id, so random bytes, call IDs and effect keys must agree too.
func TestConformance(t *testing.T) {
	t.Parallel()
	needBinary(t)
	svc := startConfService(t)
	n := startNode(t)
	cache := t.TempDir()
	for _, m := range confModules(t) {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			// orlojd run names the agent after its file: the same name as
			// on the node, so messages that name the agent agree.
			wasm := filepath.Join(t.TempDir(), m.name+".wasm")
			b, err := os.ReadFile(m.path(t))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(wasm, b, 0o600); err != nil {
				t.Fatal(err)
			}
			n := n.forTest(t)
			n.ok("agent", "push", wasm, "--name", m.name, "--version", "v1", "--tools", "http")
			for _, c := range confCases() {
				t.Run(c.name, func(t *testing.T) {
					if why, ok := m.cannot[c.name]; ok {
						t.Skipf("%s cannot express case %s: %s", m.name, c.name, why)
					}
					t.Parallel()
					confRun(t, n, svc, cache, m.name, wasm, c)
				})
			}
		})
	}
}

func confRun(t *testing.T, n *node, svc *confService, cache, name, wasm string, c confCase) {
	n = n.forTest(t)
	in := map[string]any{"case": c.name, "url": svc.url}
	if c.input != nil {
		c.input(in)
	}
	dir := t.TempDir()
	inFile, toolsFile := filepath.Join(dir, "input.json"), filepath.Join(dir, "tools.json")
	writeConfFile(t, inFile, in)
	writeConfFile(t, toolsFile, c.stubs(t, svc.url))

	id := strings.TrimSpace(n.ok("task", "submit", name, "--input", "@"+inFile, "--max-attempts", strconv.Itoa(c.maxAttempts)))
	local := confLocal(t, cache, wasm, id, inFile, toolsFile, c.maxAttempts)
	node := confNode(t, n, svc, id, c)

	for _, s := range []struct {
		side string
		s    confSide
	}{{"orlojd run", local}, {"node", node}} {
		if s.s.state != c.state || s.s.class != c.class || s.s.attempts != c.attempts {
			t.Errorf("%s: %s (%s) after %d attempts, want %s (%s) after %d", s.side, s.s.state, s.s.class, s.s.attempts, c.state, c.class, c.attempts)
		}
		if c.check != nil && s.s.state == "succeeded" {
			c.check(t, id, svc.url, s.side, s.s)
		}
	}
	if c.sameOutputs && compact(local.output) != compact(node.output) {
		t.Errorf("orlojd run and the node disagree on the output:\norlojd run: %.600s\nnode:       %.600s", local.output, node.output)
	}
	if c.name == "replay" {
		var l, r struct{ Random string }
		_ = json.Unmarshal(local.output, &l)
		_ = json.Unmarshal(node.output, &r)
		if l.Random != r.Random {
			t.Errorf("the same task ID read different random bytes: orlojd run %q, node %q", l.Random, r.Random)
		}
	}
}

// forTest is n for a subtest: its CLI helpers fail t, not the test that
// started the node.
func (n *node) forTest(t *testing.T) *node {
	c := *n
	c.t = t
	return &c
}

func writeConfFile(t *testing.T, path string, v any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

var (
	confAttemptLine = regexp.MustCompile(`(?m)^--- attempt (\d+) ---$`)
	confFailLine    = regexp.MustCompile(`: (dead_letter) \((\w+)\)`)
	confEffectLine  = regexp.MustCompile(`(?m)^http \{.*\} \(key ([0-9a-f]{64})\)$`)
	confLogLine     = regexp.MustCompile(`^\[\w+\] (.*)$`)
)

// confLocal runs the case with orlojd run, as the node's task id.
func confLocal(t *testing.T, cache, wasm, id, inFile, toolsFile string, attempts int) confSide {
	r := runCLI(t, cleanEnv(), "run", "--cache-dir", cache, "--task-id", id, "--attempts", strconv.Itoa(attempts),
		"--tools", toolsFile, "--input", "@"+inFile, wasm)
	s := confSide{attempts: 1, logs: map[int][]string{}}
	attempt := 1
	for _, line := range strings.Split(r.stderr, "\n") {
		if m := confAttemptLine.FindStringSubmatch(line); m != nil {
			attempt, _ = strconv.Atoi(m[1])
			s.attempts = attempt
		} else if m := confLogLine.FindStringSubmatch(line); m != nil {
			s.logs[attempt] = append(s.logs[attempt], m[1])
		}
	}
	for _, m := range confEffectLine.FindAllStringSubmatch(r.stderr, -1) {
		s.effectKeys = append(s.effectKeys, m[1])
	}
	switch r.code {
	case 0:
		s.state, s.output = "succeeded", json.RawMessage(strings.TrimSpace(r.stdout))
	case 1:
		lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
		m := confFailLine.FindStringSubmatch(lines[len(lines)-1])
		if m == nil {
			t.Fatalf("orlojd run failed without a dead letter: %s", r)
		}
		s.state, s.class = m[1], m[2]
	default:
		t.Fatalf("orlojd run: %s", r)
	}
	return s
}

// confNode waits for the node's task and reads how it ended.
func confNode(t *testing.T, n *node, svc *confService, id string, c confCase) confSide {
	n.cli("task", "wait", id, "--timeout", "2m") // exits 1 for a dead letter
	var tk taskJSON
	n.okJSON(&tk, "task", "get", id)
	s := confSide{state: tk.State, attempts: tk.Attempts, output: tk.Output, logs: map[int][]string{}}
	if tk.Error != nil {
		s.class = tk.Error.Class
	}
	var events []struct {
		Type, Message string
		Attempt       int
	}
	n.okJSON(&events, "task", "events", id)
	for _, e := range events {
		if e.Type == "log" {
			_, line, _ := strings.Cut(e.Message, ": ")
			s.logs[e.Attempt] = append(s.logs[e.Attempt], line)
		}
	}
	if c.checkNodeCalls != nil {
		var calls []callJSON
		n.okJSON(&calls, "task", "calls", id)
		c.checkNodeCalls(t, id, svc.url, calls)
	}
	if c.name == "emit" && s.state == "succeeded" {
		// The effects are delivered after the task succeeded: wait for
		// the three the agent emitted (their keys are computed by check).
		p := canonical(t, map[string]any{"method": "POST", "url": svc.url + "/effect", "body": "conformance"})
		keys := []string{host.CallID(id, "emit:http", p, "", 0), host.CallID(id, "emit:http", p, "k1", 0), host.CallID(id, "emit:http", p, "", 2)}
		deadline := time.Now().Add(time.Minute)
		for {
			var got []string
			for _, k := range keys {
				if svc.count("/effect", k) > 0 {
					got = append(got, k)
				}
			}
			if len(got) == len(keys) || time.Now().After(deadline) {
				s.effectKeys = got
				break
			}
			time.Sleep(50 * time.Millisecond) // a poll interval, not synchronisation
		}
	}
	return s
}
