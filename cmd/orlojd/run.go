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
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/abi"
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
}

func newRunCmd() *cobra.Command {
	var o runOptions
	cmd := &cobra.Command{
		Use:   "run FILE.wasm",
		Short: "Run an agent once, locally, with stubbed tools",
		Long: `Run an agent module once on this machine, without a cluster.

The task output is printed on stdout; the agent's log lines and its own
stdout/stderr go to stderr. Tools are stubbed: --tool NAME=JSON answers every
call to NAME with JSON, and --tools FILE reads stubs from a JSON object:

  {"http":  {"result": {"status": 200, "body": "ok"}},
   "model": [{"error": {"status": "transient", "message": "503"}},
             {"result": {"content": "invoice"}}]}

An array answers successive calls in order and then repeats its last entry.
A call to a tool with no stub fails with status not_found.`,
		Args: exactArgs(1, "one FILE.wasm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runAgent(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0], o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.input, "input", "null", "task input as JSON, or @FILE to read it from a file")
	f.DurationVar(&o.timeout, "timeout", 30*time.Second, "deadline for the run")
	f.StringVar(&o.memoryLimit, "memory-limit", "256MiB", "linear memory cap")
	f.StringVar(&o.toolsFile, "tools", "", "JSON file of tool stubs")
	f.StringArrayVar(&o.tools, "tool", nil, "stub a tool: NAME=JSON result (repeatable)")
	f.StringVar(&o.taskID, "task-id", "local-run", "task ID (seeds the agent's random source)")
	f.StringArrayVar(&o.env, "env", nil, "environment variable for the agent, KEY=VALUE (repeatable)")
	f.StringVar(&o.cacheDir, "cache-dir", defaultCacheDir(), "compilation cache directory (empty: none)")
	return cmd
}

func defaultCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "orloj", "compile")
}

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
	env, err := parseEnv(o.env)
	if err != nil {
		return err
	}
	stubs, err := loadStubs(o.toolsFile, o.tools)
	if err != nil {
		return err
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read module: %w", err)
	}

	rt, err := sandbox.New(ctx, sandbox.Config{CacheDir: o.cacheDir})
	if err != nil {
		return fmt.Errorf("start sandbox: %w", err)
	}
	defer rt.Close(context.Background())
	mod, err := rt.Compile(ctx, wasm)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}

	disp := sandbox.NewMemDispatcher(input, stubs.toolFuncs())
	res := rt.Run(ctx, mod, sandbox.RunConfig{
		TaskID:      o.taskID,
		Env:         env,
		MemoryLimit: limit,
		Timeout:     o.timeout,
		Dispatcher:  disp,
	})
	writeGuestStreams(stderr, res, disp)
	if res.Outcome != sandbox.OutcomeSuccess {
		// One line says what went wrong; details (a wasm stack) go above it.
		first, rest, _ := strings.Cut(res.Err.Error(), "\n")
		if rest != "" {
			fmt.Fprintf(stderr, "--- details ---\n%s\n", strings.TrimRight(rest, "\n"))
		}
		if len(res.HostStack) > 0 { // local: the stack is the user's to see
			fmt.Fprintf(stderr, "--- host stack ---\n%s\n", bytes.TrimRight(res.HostStack, "\n"))
		}
		return fmt.Errorf("%s: %s", filepath.Base(path), first)
	}
	out := disp.TaskOutput()
	if len(out) == 0 {
		out = []byte("null")
	}
	_, err = fmt.Fprintf(stdout, "%s\n", bytes.TrimSpace(out))
	return err
}

func writeGuestStreams(w io.Writer, res sandbox.Result, disp *sandbox.MemDispatcher) {
	for _, l := range disp.Logs() {
		fmt.Fprintf(w, "[%s] %s\n", l.Level, l.Line)
	}
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

func (s stubSet) toolFuncs() map[string]sandbox.ToolFunc {
	fns := make(map[string]sandbox.ToolFunc, len(s))
	for name, answers := range s {
		var mu sync.Mutex
		next := 0
		fns[name] = func(context.Context, json.RawMessage) (json.RawMessage, error) {
			mu.Lock()
			a := answers[min(next, len(answers)-1)]
			next++
			mu.Unlock()
			if a.Error != nil {
				st, _ := abi.ParseStatus(a.Error.Status)
				return nil, &abi.Error{Status: st, Message: a.Error.Message}
			}
			return a.Result, nil
		}
	}
	return fns
}
