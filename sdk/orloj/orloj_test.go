//go:build !wasip1

package orloj_test

// These tests install a Fake, which is process-wide: none of them may call
// t.Parallel.

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// install installs f for the rest of the test and returns it.
func install(t *testing.T, f *orloj.Fake) *orloj.Fake {
	t.Helper()
	t.Cleanup(f.Install())
	return f
}

func echo(params json.RawMessage) (any, error) { return params, nil }

func TestInput(t *testing.T) {
	big := strings.Repeat("x", 100<<10) // past the first response buffer
	tests := []struct {
		name string
		in   any
		want string
	}{
		{"default is null", nil, "null"},
		{"value is marshalled", map[string]int{"n": 1}, `{"n":1}`},
		{"raw passes through", json.RawMessage(`{"b": 2}`), `{"b": 2}`},
		{"string is a JSON string", "hi", `"hi"`},
		{"larger than the first buffer", big, `"` + big + `"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := orloj.NewFake()
			if tt.in != nil {
				f.SetInput(tt.in)
			}
			install(t, f)
			got, err := orloj.Input()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Input() = %.40q (%d bytes), want %.40q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
		})
	}
}

func TestDecodeInput(t *testing.T) {
	t.Run("ok", func(t *testing.T) {
		install(t, orloj.NewFake().SetInput(map[string]string{"url": "u"}))
		var in struct{ URL string }
		if err := orloj.DecodeInput(&in); err != nil {
			t.Fatal(err)
		}
		if in.URL != "u" {
			t.Errorf("URL = %q, want u", in.URL)
		}
	})
	t.Run("wrong shape is permanent", func(t *testing.T) {
		install(t, orloj.NewFake().SetInput([]int{1}))
		var in struct{ URL string }
		err := orloj.DecodeInput(&in)
		if err == nil || orloj.ExitCode(err) != 1 {
			t.Fatalf("err = %v, want a permanent error", err)
		}
	})
}

func TestCall(t *testing.T) {
	bigResult := strings.Repeat("r", 200<<10)
	bigMessage := strings.Repeat("m", 100<<10)
	tests := []struct {
		name       string
		tool       string
		params     any
		opts       []orloj.CallOption
		handler    func(json.RawMessage) (any, error)
		want       string                  // result, when wantErr is nil
		wantErr    error                   // status the error must carry
		wantMsg    string                  // substring of the error text
		wantParams string                  // canonical params recorded; "" to skip
		wantKey    string                  // key recorded
		wantCalls  int                     // handler invocations
		check      func(*testing.T, error) // further checks on the error
	}{
		{
			name:       "params are canonical for the handler",
			tool:       "echo",
			params:     json.RawMessage(`{ "b": 1, "a": [true, null] }`),
			handler:    echo,
			want:       `{"a":[true,null],"b":1}`,
			wantParams: `{"a":[true,null],"b":1}`,
			wantCalls:  1,
		},
		{
			name:       "struct params are marshalled",
			tool:       "echo",
			params:     struct{ N int }{3},
			handler:    echo,
			want:       `{"N":3}`,
			wantParams: `{"N":3}`,
			wantCalls:  1,
		},
		{
			name:       "byte slice is JSON text, not base64",
			tool:       "echo",
			params:     []byte(`[1,2]`),
			handler:    echo,
			want:       `[1,2]`,
			wantParams: `[1,2]`,
			wantCalls:  1,
		},
		{
			name:       "nil params are null",
			tool:       "echo",
			handler:    echo,
			want:       `null`,
			wantParams: `null`,
			wantCalls:  1,
		},
		{
			name:      "key is sent",
			tool:      "echo",
			params:    1,
			opts:      []orloj.CallOption{orloj.WithKey("invoice-42")},
			handler:   echo,
			want:      `1`,
			wantKey:   "invoice-42",
			wantCalls: 1,
		},
		{
			name:      "result larger than the first buffer arrives whole, tool runs once",
			tool:      "big",
			handler:   func(json.RawMessage) (any, error) { return bigResult, nil },
			want:      `"` + bigResult + `"`,
			wantCalls: 1,
		},
		{
			name:    "unregistered tool is not found",
			tool:    "nope",
			wantErr: orloj.ErrNotFound,
			wantMsg: `tool "nope" is not registered`,
		},
		{
			name:    "invalid tool name is refused by the host decoder",
			tool:    "bad tool!",
			handler: echo,
			wantErr: orloj.ErrInvalidArgument,
			wantMsg: "use letters, digits",
		},
		{
			name:    "key over the limit is refused",
			tool:    "echo",
			opts:    []orloj.CallOption{orloj.WithKey(strings.Repeat("k", abi.MaxKeyBytes+1))},
			handler: echo,
			wantErr: orloj.ErrInvalidArgument,
		},
		{
			name:    "unmarshalable params never reach the host",
			tool:    "echo",
			params:  make(chan int),
			handler: echo,
			wantErr: orloj.ErrInvalidArgument,
			wantMsg: "params",
		},
		{
			name:    "invalid raw params are refused by the host decoder",
			tool:    "echo",
			params:  json.RawMessage(`{"a":`),
			handler: echo,
			wantErr: orloj.ErrInvalidArgument,
		},
		{
			name: "transient error with message",
			tool: "flaky",
			handler: func(json.RawMessage) (any, error) {
				return nil, abi.Errorf(abi.StatusTransient, "503 from upstream")
			},
			wantErr:   orloj.ErrTransient,
			wantMsg:   "orloj: call flaky: transient: 503 from upstream",
			wantCalls: 1,
			check: func(t *testing.T, err error) {
				var e *orloj.Error
				if !errors.As(err, &e) || e.Message != "503 from upstream" {
					t.Errorf("errors.As(*Error) = %+v, want message %q", e, "503 from upstream")
				}
				if orloj.ExitCode(err) != abi.ExitTransient {
					t.Errorf("ExitCode = %d, want %d", orloj.ExitCode(err), abi.ExitTransient)
				}
			},
		},
		{
			name:      "bare status error",
			tool:      "denied",
			handler:   func(json.RawMessage) (any, error) { return nil, abi.StatusPermissionDenied },
			wantErr:   orloj.ErrPermissionDenied,
			wantMsg:   "orloj: call denied: permission_denied",
			wantCalls: 1,
		},
		{
			name:      "wrapped status survives",
			tool:      "wrapped",
			handler:   func(json.RawMessage) (any, error) { return nil, fmt.Errorf("ocr: %w", abi.StatusBudgetExceeded) },
			wantErr:   orloj.ErrBudgetExceeded,
			wantCalls: 1,
		},
		{
			name:      "plain error is a tool error",
			tool:      "broken",
			handler:   func(json.RawMessage) (any, error) { return nil, errors.New("disk on fire") },
			wantErr:   orloj.ErrToolError,
			wantMsg:   "disk on fire",
			wantCalls: 1,
		},
		{
			name:      "error body larger than the first buffer keeps status and message",
			tool:      "verbose",
			handler:   func(json.RawMessage) (any, error) { return nil, abi.Errorf(abi.StatusInDoubt, "%s", bigMessage) },
			wantErr:   orloj.ErrInDoubt,
			wantMsg:   bigMessage,
			wantCalls: 1,
		},
		{
			name:      "handler result that is not JSON is a tool error",
			tool:      "liar",
			handler:   func(json.RawMessage) (any, error) { return json.RawMessage(`{`), nil },
			wantErr:   orloj.ErrToolError,
			wantCalls: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := orloj.NewFake()
			invoked := 0
			if tt.handler != nil {
				f.Handle(tt.tool, func(p json.RawMessage) (any, error) {
					invoked++
					return tt.handler(p)
				})
			}
			install(t, f)

			got, err := orloj.Call(tt.tool, tt.params, tt.opts...)

			if invoked != tt.wantCalls {
				t.Errorf("handler invoked %d times, want %d", invoked, tt.wantCalls)
			}
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want errors.Is %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("err = %.120q, want it to contain %.60q", err, tt.wantMsg)
				}
				if got != nil {
					t.Errorf("result = %.40q on error, want nil", got)
				}
				if tt.check != nil {
					tt.check(t, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("result = %.60q (%d bytes), want %.60q (%d bytes)", got, len(got), tt.want, len(tt.want))
			}
			calls := f.Calls()
			if len(calls) != 1 {
				t.Fatalf("fake recorded %d calls, want 1", len(calls))
			}
			c := calls[0]
			if c.Tool != tt.tool || c.Key != tt.wantKey || string(c.Result) != tt.want || c.Err != nil {
				t.Errorf("recorded %+.60v, want tool %q key %q", c, tt.tool, tt.wantKey)
			}
			if tt.wantParams != "" && string(c.Params) != tt.wantParams {
				t.Errorf("recorded params %s, want %s", c.Params, tt.wantParams)
			}
		})
	}
}

func TestCallRecordsFailures(t *testing.T) {
	f := install(t, orloj.NewFake().Handle("t", func(json.RawMessage) (any, error) {
		return nil, abi.Errorf(abi.StatusTransient, "later")
	}))
	orloj.Call("t", 1)
	orloj.Call("missing", 2)
	calls := f.Calls()
	if len(calls) != 2 {
		t.Fatalf("recorded %d calls, want 2", len(calls))
	}
	if !errors.Is(calls[0].Err, orloj.ErrTransient) || calls[0].Result != nil {
		t.Errorf("first call recorded %+v, want the transient error", calls[0])
	}
	if calls[1].Tool != "missing" || !errors.Is(calls[1].Err, orloj.ErrNotFound) {
		t.Errorf("second call recorded %+v, want tool missing, not found", calls[1])
	}
	if got := f.CallsTo("missing"); len(got) != 1 || string(got[0].Params) != "2" {
		t.Errorf("CallsTo(missing) = %+v, want the one call with params 2", got)
	}
}

func TestCallInto(t *testing.T) {
	install(t, orloj.NewFake().
		Handle("n", func(json.RawMessage) (any, error) { return map[string]int{"n": 7}, nil }).
		Handle("s", func(json.RawMessage) (any, error) { return "seven", nil }))
	var out struct{ N int }
	if err := orloj.CallInto("n", nil, &out); err != nil {
		t.Fatal(err)
	}
	if out.N != 7 {
		t.Errorf("N = %d, want 7", out.N)
	}
	err := orloj.CallInto("s", nil, &out)
	if err == nil || !strings.Contains(err.Error(), "call s: decode result") {
		t.Errorf("err = %v, want a decode error naming the tool", err)
	}
}

func TestOutput(t *testing.T) {
	tests := []struct {
		name    string
		v       any
		want    string
		wantErr error
	}{
		{"value", map[string]bool{"ok": true}, `{"ok":true}`, nil},
		{"raw passes through", json.RawMessage(`{"a": 1}`), `{"a": 1}`, nil},
		{"nil is null", nil, `null`, nil},
		{"invalid raw", json.RawMessage(`nope`), "", orloj.ErrInvalidArgument},
		{"unmarshalable", func() {}, "", orloj.ErrInvalidArgument},
		{"over the limit", strings.Repeat("o", abi.MaxOutputBytes), "", orloj.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := install(t, orloj.NewFake())
			err := orloj.Output(tt.v)
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if got := f.Output(); tt.wantErr == nil && string(got) != tt.want {
				t.Errorf("output = %s, want %s", got, tt.want)
			} else if tt.wantErr != nil && got != nil {
				t.Errorf("output = %.40s after a refused Output, want none", got)
			}
		})
	}
}

func TestOutputReplaces(t *testing.T) {
	f := install(t, orloj.NewFake())
	if err := orloj.Output(1); err != nil {
		t.Fatal(err)
	}
	if err := orloj.Output(2); err != nil {
		t.Fatal(err)
	}
	if got := string(f.Output()); got != "2" {
		t.Errorf("output = %s, want the later 2", got)
	}
}

func TestNow(t *testing.T) {
	t.Run("default is fixed", func(t *testing.T) {
		install(t, orloj.NewFake())
		got, err := orloj.Now()
		if err != nil {
			t.Fatal(err)
		}
		if want := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC); !got.Equal(want) {
			t.Errorf("Now() = %v, want %v", got, want)
		}
	})
	t.Run("set, to the nanosecond, in UTC", func(t *testing.T) {
		at := time.Date(2031, 7, 4, 12, 30, 0, 123456789, time.FixedZone("X", 3600))
		install(t, orloj.NewFake().SetNow(at))
		got, err := orloj.Now()
		if err != nil {
			t.Fatal(err)
		}
		if !got.Equal(at) || got.Location() != time.UTC {
			t.Errorf("Now() = %v, want %v in UTC", got, at)
		}
	})
	t.Run("before the epoch panics", func(t *testing.T) {
		defer func() {
			if recover() == nil {
				t.Error("SetNow(1969) did not panic")
			}
		}()
		orloj.NewFake().SetNow(time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC))
	})
}

func TestLog(t *testing.T) {
	f := install(t, orloj.NewFake())
	orloj.Debugf("d%d", 1)
	orloj.Logf("i%d", 2)
	orloj.Warnf("w%d", 3)
	orloj.LogErrorf("e%d", 4)
	orloj.Log(orloj.LevelInfo, strings.Repeat("é", abi.MaxLogBytes)) // 2 bytes each: cut
	logs := f.Logs()
	want := []string{"debug: d1", "info: i2", "warn: w3", "error: e4"}
	if len(logs) != 5 {
		t.Fatalf("logged %d lines, want 5: %q", len(logs), logs)
	}
	for i, w := range want {
		if logs[i] != w {
			t.Errorf("line %d = %q, want %q", i, logs[i], w)
		}
	}
	if got, want := logs[4], "info: "+strings.Repeat("é", abi.MaxLogBytes/2); got != want {
		t.Errorf("long line is %d bytes, want it cut to %d", len(got), len(want))
	}
}

func TestEmit(t *testing.T) {
	f := install(t, orloj.NewFake())
	if err := orloj.Emit("notify", json.RawMessage(`{"z":1,"a":2}`), orloj.WithKey("done")); err != nil {
		t.Fatal(err)
	}
	err := orloj.Emit("bad name", nil)
	if !errors.Is(err, orloj.ErrInvalidArgument) || !strings.Contains(err.Error(), "bad name") {
		t.Errorf("err = %v, want invalid argument naming the tool", err)
	}
	effects := f.Effects()
	if len(effects) != 1 {
		t.Fatalf("effects = %+v, want one", effects)
	}
	if e := effects[0]; e.Tool != "notify" || string(e.Params) != `{"a":2,"z":1}` || e.Key != "done" {
		t.Errorf("effect = %+v, want notify with canonical params and key done", e)
	}
	if len(f.Calls()) != 0 {
		t.Errorf("emit recorded calls %+v; effects are not calls", f.Calls())
	}
}

func TestNoHost(t *testing.T) {
	checks := map[string]func() error{
		"input":  func() error { _, err := orloj.Input(); return err },
		"call":   func() error { _, err := orloj.Call("t", nil); return err },
		"output": func() error { return orloj.Output(1) },
		"now":    func() error { _, err := orloj.Now(); return err },
		"emit":   func() error { return orloj.Emit("t", nil) },
	}
	for name, fn := range checks {
		t.Run(name, func(t *testing.T) {
			err := fn()
			if err == nil || !strings.Contains(err.Error(), "no host") {
				t.Errorf("err = %v, want a no-host error", err)
			}
		})
	}
}

func TestInstall(t *testing.T) {
	a, b := orloj.NewFake(), orloj.NewFake()
	uninstall := a.Install()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("second Install did not panic")
			}
		}()
		b.Install()
	}()
	uninstall()
	uninstall() // idempotent
	t.Cleanup(b.Install())
	if err := orloj.Output("b"); err != nil {
		t.Fatal(err)
	}
	if a.Output() != nil || string(b.Output()) != `"b"` {
		t.Errorf("outputs a=%s b=%s, want only b to see the call", a.Output(), b.Output())
	}
}

// Calls from several goroutines share the response buffer and the fake; run
// under -race this checks both are guarded, and that no result is mixed up.
func TestConcurrentCalls(t *testing.T) {
	f := install(t, orloj.NewFake().Handle("echo", echo))
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			payload := strings.Repeat(fmt.Sprint(i%10), 70<<10) // some past the first buffer
			got, err := orloj.Call("echo", payload)
			if err != nil {
				t.Error(err)
				return
			}
			var back string
			if err := json.Unmarshal(got, &back); err != nil || back != payload {
				t.Errorf("goroutine %d got someone else's result", i)
			}
			_ = f.Calls()
		})
	}
	wg.Wait()
	if n := len(f.Calls()); n != 16 {
		t.Errorf("recorded %d calls, want 16", n)
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, 0},
		{"transient", fmt.Errorf("call x: %w", abi.Errorf(abi.StatusTransient, "503")), 75},
		{"bare transient", orloj.ErrTransient, 75},
		{"tool error", abi.Errorf(abi.StatusToolError, "400"), 1},
		{"in doubt", orloj.ErrInDoubt, 1},
		{"plain", errors.New("schema"), 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := orloj.ExitCode(tt.err); got != tt.want {
				t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
			}
		})
	}
}

// TestMain lets TestMainExits re-run this binary as an "agent" whose run
// returns the error named by ORLOJ_TEST_AGENT, because Main ends the process.
func TestMain(m *testing.M) {
	switch os.Getenv("ORLOJ_TEST_AGENT") {
	case "":
		os.Exit(m.Run())
	case "ok":
		orloj.Main(func() error { return nil })
		os.Exit(42) // Main returned, as it should for success
	case "transient":
		orloj.Main(func() error { return fmt.Errorf("fetch: %w", abi.Errorf(abi.StatusTransient, "503")) })
	case "permanent":
		orloj.Main(func() error { return errors.New("fields: total is missing") })
	}
	os.Exit(99) // Main did not exit for a failure
}

func TestMainExits(t *testing.T) {
	tests := []struct {
		agent      string
		wantCode   int
		wantStderr string
	}{
		{"ok", 42, ""},
		{"transient", abi.ExitTransient, "agent failed (exit 75): fetch: transient: 503"},
		{"permanent", 1, "agent failed (exit 1): fields: total is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.agent, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "ORLOJ_TEST_AGENT="+tt.agent)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

// TestCallsShareNoRequest: Call builds each request in a buffer it keeps
// between calls; a request must not carry anything of the one before it,
// longer or shorter, nor the key of an earlier call.
func TestCallsShareNoRequest(t *testing.T) {
	f := install(t, orloj.NewFake().Handle("t", func(p json.RawMessage) (any, error) { return p, nil }))
	big := strings.Repeat("x", 80<<10) // past the buffer Call keeps
	params := []string{`"` + big + `"`, `{"a":1}`, `[1,2,3,4,5,6,7,8]`, `2`}
	for i, p := range params {
		var opts []orloj.CallOption
		if i == 1 {
			opts = append(opts, orloj.WithKey("k1"))
		}
		res, err := orloj.Call("t", json.RawMessage(p), opts...)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if string(res) != p {
			t.Fatalf("call %d answered %.40s, want %.40s", i, res, p)
		}
	}
	calls := f.Calls()
	if len(calls) != len(params) {
		t.Fatalf("recorded %d calls, want %d", len(calls), len(params))
	}
	for i, c := range calls {
		wantKey := ""
		if i == 1 {
			wantKey = "k1"
		}
		if string(c.Params) != params[i] || c.Key != wantKey {
			t.Errorf("call %d recorded params %.40s key %q, want %.40s key %q", i, c.Params, c.Key, params[i], wantKey)
		}
	}
}
