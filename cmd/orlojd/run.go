package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

type runOptions struct {
	input       string
	timeout     time.Duration
	memoryLimit string
	toolsFile   string
	tools       []string
	taskID      string
	env         []string
	cacheDir    string
	attempts    int
	retry       bool
}

func newRunCmd() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run FILE.wasm",
		Short: "Run an agent once, locally, with stubbed tools",
		Long: `Run an agent module on this machine as a node runs it, without a cluster.

The task runs on a one-node cluster held in memory: the node's ledger,
dispatcher, retry policy and classification of failures, so what passes here
behaves the same on a node. The task output is printed on stdout; the agent's
log lines, its own stdout/stderr and its emitted effects go to stderr.

Tools are stubbed, and the stubs are the agent's tools: --tool NAME=JSON
answers every call to NAME with JSON, and --tools FILE reads stubs from a
JSON object:

  {"http":  {"result": {"status": 200, "body": "ok"}},
   "model": [{"error": {"status": "transient", "message": "503"}},
             {"result": {"content": "invoice"}}]}

An array answers successive calls in order and then repeats its last entry.
A call to a tool with no stub is refused with permission_denied, as a node
refuses a tool outside the agent's manifest. Stubs are idempotent tools:
their results are recorded and replayed.

--attempts N retries a failed attempt as a node would, up to N attempts in
all (backoff 10 ms, doubling). --retry runs the agent a second time after a
first attempt that succeeds, replaying the first one's recorded calls, and
fails if the second attempt's calls or output differ: the check that the
agent is deterministic enough to be retried on any node.`,
		Args: exactArgs(1, "one FILE.wasm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgent(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.input, "input", "null", "task input as JSON, or @FILE to read it from a file")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline of each attempt")
	f.StringVar(&o.memoryLimit, "memory-limit", "256MiB", "linear memory cap")
	f.StringVar(&o.toolsFile, "tools", "", "JSON file of tool stubs")
	f.StringArrayVar(&o.tools, "tool", nil, "stub a tool: NAME=JSON result (repeatable)")
	f.StringVar(&o.taskID, "task-id", "local-run", "task ID (seeds the agent's random source and its call IDs)")
	f.StringArrayVar(&o.env, "env", nil, "refused: a node gives agents no environment variables")
	_ = f.MarkHidden("env")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "compilation cache directory (empty: none)")
	f.IntVar(&o.attempts, "attempts", 1, "attempts in all, as a task's max_attempts")
	f.BoolVar(&o.retry, "retry", false, "after a first attempt succeeds, run a second one that replays it, and check they agree")
	return cmd
}

func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "orloj", "compile")
}

// maxRunAttempts bounds --attempts: a local run is for a person watching.
const maxRunAttempts = 100

func runAgent(ctx context.Context, stdout, stderr io.Writer, path string, o runOptions) error {
	if ctx == nil {
		ctx = context.Background()
	}
	input, err := readJSONArg("--input", o.input)
	if err != nil {
		return err
	}
	limit, err := parseBytes(o.memoryLimit)
	if err != nil {
		return usagef("--memory-limit: %v", err)
	}
	if o.timeout <= 0 {
		return usagef("--timeout must be positive, got %s", o.timeout)
	}
	if len(o.env) > 0 {
		return usagef("--env: a node gives agents no environment variables; pass what the agent needs in --input")
	}
	if o.attempts < 1 || o.attempts > maxRunAttempts {
		return usagef("--attempts must be 1 to %d, got %d", maxRunAttempts, o.attempts)
	}
	if o.taskID == "" {
		return usagef("--task-id is empty")
	}
	stubs, err := loadStubs(o.toolsFile, o.tools)
	if err != nil {
		return err
	}
	reg, err := stubs.registry()
	if err != nil {
		return usagef("stubs: %v", err)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read module: %w", err)
	}
	name := strings.TrimSuffix(filepath.Base(path), ".wasm")
	if name == "" || len(name) > cluster.MaxNameBytes {
		name = "agent"
	}

	rt, err := sandbox.New(ctx, sandbox.Config{CacheDir: o.cacheDir})
	if err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	defer rt.Close(context.Background())
	// A node compiles a module when it is pushed, and refuses what does not
	// compile: so does a local run, before anything runs.
	if _, err := rt.Compile(ctx, wasm); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}

	attempts := o.attempts
	if o.retry {
		attempts++ // the rehearsed attempt is not one of the user's
	}
	run, err := host.RunLocal(ctx, host.LocalConfig{
		Name:     name,
		Module:   wasm,
		Manifest: cluster.AgentManifest{Tools: stubs.names(), MemoryLimit: limit, Timeout: o.timeout},
		Input:    input,
		TaskID:   o.taskID,
		Policy:   cluster.RetryPolicy{MaxAttempts: attempts, Base: 10 * time.Millisecond, Factor: 2, Cap: time.Second},
		Rehearse: o.retry,
		Tools:    reg,
		Runtime:  rt,
	})
	writeRun(stderr, run)
	if errors.Is(err, host.ErrLocalWait) {
		return fmt.Errorf("%s: %s", filepath.Base(path), localWaitLine(run.Task))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if run.Task.State != cluster.StateSucceeded {
		return fmt.Errorf("%s: %s", filepath.Base(path), failLine(run))
	}
	if o.retry {
		if err := checkReplay(stderr, run); err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
	}
	out := run.Task.Output
	if len(out) == 0 {
		out = []byte("null")
	}
	_, err = fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(out))
	return err
}

// writeRun prints what the attempts left for a person: log lines, the
// guest's own streams, a failure's details, and the effects the task
// emitted (a node delivers them once the task has succeeded).
func writeRun(w io.Writer, run host.LocalRun) {
	several := len(run.Attempts) > 1
	for _, rep := range run.Attempts {
		if several {
			fmt.Fprintf(w, "--- attempt %d ---\n", rep.Attempt)
		}
		for _, ev := range run.Journal {
			if ev.Type == cluster.EventLog && ev.Attempt == rep.Attempt {
				level, line, _ := strings.Cut(ev.Message, ": ")
				fmt.Fprintf(w, "[%s] %s\n", level, line)
			}
		}
		writeGuestStreams(w, rep.Result)
		if rep.Result.Outcome != sandbox.OutcomeSuccess && rep.Result.Err != nil {
			// A wasm stack and the host's stack are the user's to see locally.
			if _, rest, _ := strings.Cut(rep.Result.Err.Error(), "\n"); rest != "" {
				fmt.Fprintf(w, "--- details ---\n%s\n", strings.TrimRight(rest, "\n"))
			}
			if len(rep.Result.HostStack) > 0 {
				fmt.Fprintf(w, "--- host stack ---\n%s\n", bytes.TrimRight(rep.Result.HostStack, "\n"))
			}
		}
	}
	if len(run.Effects) > 0 {
		fmt.Fprintf(w, "--- effects (a node delivers them after the task succeeds) ---\n")
		for _, e := range run.Effects {
			fmt.Fprintf(w, "%s %s (key %s)\n", e.Tool, e.Params, e.Key)
		}
	}
}

func writeGuestStreams(w io.Writer, res sandbox.Result) {
	for _, s := range []struct {
		name string
		b    []byte
	}{{"stdout", res.Stdout}, {"stderr", res.Stderr}} {
		if len(s.b) == 0 {
			continue
		}
		fmt.Fprintf(w, "--- guest %s ---\n%s", s.name, s.b)
		if !bytes.HasSuffix(s.b, []byte("\n")) {
			fmt.Fprintln(w)
		}
	}
}

// failLine is one line on why the task did not succeed, first line of its
// error only: details were printed above.
func failLine(run host.LocalRun) string {
	t := run.Task
	if t.Error == nil {
		return string(t.State)
	}
	first, _, _ := strings.Cut(t.Error.Message, "\n")
	msg := fmt.Sprintf("%s (%s): %s", t.State, t.Error.Class, first)
	if t.Error.Class != cluster.ClassExhausted { // its message counts them
		msg += fmt.Sprintf(" after %d attempt%s", len(run.Attempts), plural(len(run.Attempts)))
	}
	return msg
}

func localWaitLine(t cluster.Task) string {
	w := t.Wait
	switch {
	case w == nil:
		return "the task waits"
	case w.Signal != "":
		return fmt.Sprintf("the task waits for signal %q, which a local run cannot send; on a node: orlojd task signal", w.Signal)
	default:
		return fmt.Sprintf("the task waits for approval of call %s to %s, which a local run cannot give; on a node: orlojd approval", w.CallID, w.Tool)
	}
}

// checkReplay compares a --retry run's two attempts that ran to their end:
// the second must have replayed every call, in the same order, and written
// the same output.
func checkReplay(w io.Writer, run host.LocalRun) error {
	var first, second *host.AttemptReport
	for i := range run.Attempts {
		if r := &run.Attempts[i]; r.Output != nil || r.Result.Outcome == sandbox.OutcomeSuccess {
			if first == nil {
				first = r
			} else if second == nil {
				second = r
			}
		}
	}
	if first == nil || second == nil {
		return errors.New("replay: no second attempt ran to its end")
	}
	var replayed, invoked int
	for _, ev := range run.Journal {
		if ev.Attempt != second.Attempt {
			continue
		}
		switch ev.Type {
		case cluster.EventDivergence:
			return fmt.Errorf("replay: attempt %d diverged from attempt %d: %s", second.Attempt, first.Attempt, ev.Message)
		case cluster.EventCall:
			var d host.CallDetail
			if err := json.Unmarshal(ev.Detail, &d); err == nil {
				switch d.Outcome {
				case host.OutcomeReplayed:
					replayed++
				case host.OutcomeInvoked:
					invoked++
				}
			}
		}
	}
	if invoked > 0 {
		return fmt.Errorf("replay: attempt %d invoked %d call%s instead of replaying attempt %d's: a call whose result was not recorded (a transient error) runs again on a retry, so an agent must not go on as if it had failed for good", second.Attempt, invoked, plural(invoked), first.Attempt)
	}
	if !bytes.Equal(first.Output, second.Output) {
		return fmt.Errorf("replay: attempt %d wrote output %.200s, attempt %d wrote %.200s", first.Attempt, first.Output, second.Attempt, second.Output)
	}
	fmt.Fprintf(w, "replay: attempt %d replayed %d call%s of attempt %d and wrote the same output\n", second.Attempt, replayed, plural(replayed), first.Attempt)
	return nil
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// readJSONArg reads a flag value that is JSON or @FILE, and checks it is JSON.
func readJSONArg(flag, v string) ([]byte, error) {
	b := []byte(v)
	if name, ok := strings.CutPrefix(v, "@"); ok {
		var err error
		if b, err = os.ReadFile(name); err != nil {
			return nil, usagef("%s: %v", flag, err)
		}
	}
	if !json.Valid(b) {
		return nil, usagef("%s: not valid JSON: %.60q", flag, b)
	}
	return b, nil
}

func parseEnv(kvs []string) (map[string]string, error) {
	env := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usagef("--env %q: want KEY=VALUE", kv)
		}
		env[k] = v
	}
	return env, nil
}

// stubAnswer is one canned tool response.
type stubAnswer struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  *abi.ErrorBody  `json:"error,omitempty"`
}

type stubSet map[string][]stubAnswer

func loadStubs(file string, flags []string) (stubSet, error) {
	set := stubSet{}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, usagef("--tools: %v", err)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(b, &raw); err != nil {
			return nil, usagef("--tools %s: %v", file, err)
		}
		for name, v := range raw {
			answers, err := decodeAnswers(v)
			if err != nil {
				return nil, usagef("--tools %s: tool %q: %v", file, name, err)
			}
			set[name] = answers
		}
	}
	for _, f := range flags {
		name, val, ok := strings.Cut(f, "=")
		if !ok || name == "" {
			return nil, usagef("--tool %q: want NAME=JSON", f)
		}
		if !json.Valid([]byte(val)) {
			return nil, usagef("--tool %s: result is not valid JSON", name)
		}
		set[name] = []stubAnswer{{Result: json.RawMessage(val)}}
	}
	return set, nil
}

func decodeAnswers(v json.RawMessage) ([]stubAnswer, error) {
	var list []stubAnswer
	if bytes.HasPrefix(bytes.TrimSpace(v), []byte("[")) {
		if err := strictUnmarshal(v, &list); err != nil {
			return nil, err
		}
	} else {
		var one stubAnswer
		if err := strictUnmarshal(v, &one); err != nil {
			return nil, err
		}
		list = []stubAnswer{one}
	}
	if len(list) == 0 {
		return nil, errors.New("empty list of answers")
	}
	for i, a := range list {
		if (a.Result == nil) == (a.Error == nil) {
			return nil, fmt.Errorf("answer %d: want exactly one of \"result\" or \"error\"", i)
		}
		if a.Error != nil {
			if _, ok := abi.ParseStatus(a.Error.Status); !ok || a.Error.Status == "ok" {
				return nil, fmt.Errorf("answer %d: unknown error status %q", i, a.Error.Status)
			}
		}
	}
	return list, nil
}

func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// names lists the stubbed tools, sorted: the local agent's manifest.
func (s stubSet) names() []string {
	names := make([]string, 0, len(s))
	for n := range s {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// registry is the stubs as tools, the only ones of the local node. Each
// answers its calls with its canned answers in order, then repeats the last.
func (s stubSet) registry() (*plugins.Registry, error) {
	reg, err := plugins.NewRegistry()
	if err != nil {
		return nil, err
	}
	for _, name := range s.names() {
		answers := s[name]
		var mu sync.Mutex
		next := 0
		invoke := func(context.Context, plugins.Call) (plugins.Result, error) {
			mu.Lock()
			a := answers[min(next, len(answers)-1)]
			next++
			mu.Unlock()
			if a.Error != nil {
				st, _ := abi.ParseStatus(a.Error.Status)
				return plugins.Result{}, &abi.Error{Status: st, Message: a.Error.Message}
			}
			return plugins.Result{Body: a.Result}, nil
		}
		if err := reg.Register(plugins.NewStub(name, plugins.Idempotent, invoke)); err != nil {
			return nil, err
		}
	}
	return reg, nil
}
