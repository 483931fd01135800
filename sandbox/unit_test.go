package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		cfg   Config
		field string
	}{
		{Config{MaxModuleBytes: -1}, "Config.MaxModuleBytes"},
		{Config{CacheDir: "a\x00b"}, "Config.CacheDir"},
	}
	for _, tt := range tests {
		if err := tt.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%+v: %v, want an error naming %s", tt.cfg, err, tt.field)
		}
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
	if _, err := New(context.Background(), Config{MaxModuleBytes: -1}); err == nil {
		t.Error("New accepted an invalid Config")
	}
}

func TestRunConfigValidate(t *testing.T) {
	d := NewMemDispatcher(nil, nil)
	tests := []struct {
		rc    RunConfig
		field string
	}{
		{RunConfig{}, "RunConfig.Dispatcher"},
		{RunConfig{Dispatcher: d, MemoryLimit: 1<<32 + 1}, "RunConfig.MemoryLimit"},
		{RunConfig{Dispatcher: d, Timeout: -time.Second}, "RunConfig.Timeout"},
		{RunConfig{Dispatcher: d, OutputCap: -1}, "RunConfig.OutputCap"},
		{RunConfig{Dispatcher: d, Args: []string{"ok", "a\x00"}}, "RunConfig.Args[1]"},
		{RunConfig{Dispatcher: d, Env: map[string]string{"A=B": "c"}}, "RunConfig.Env"},
		{RunConfig{Dispatcher: d, Name: "\x00"}, "RunConfig.Name"},
	}
	for _, tt := range tests {
		if err := tt.rc.Validate(); err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%+v: %v, want an error naming %s", tt.rc, err, tt.field)
		}
	}
	rc := RunConfig{Dispatcher: d, MemoryLimit: 100_000}.withDefaults()
	if rc.MemoryLimit != 2*pageSize || rc.Timeout != DefaultTimeout || rc.OutputCap != DefaultOutputCap {
		t.Errorf("defaults: %+v", rc)
	}
}

func TestOutcomeString(t *testing.T) {
	want := []string{"success", "guest_error", "trap", "deadline", "memory_limit", "invalid_module", "host_fault", "canceled"}
	for i, w := range want {
		if got := Outcome(i).String(); got != w {
			t.Errorf("Outcome(%d) = %q, want %q", i, got, w)
		}
	}
	if got := Outcome(99).String(); got != "outcome(99)" {
		t.Errorf("unknown: %q", got)
	}
}

func TestGuestExitErrorNamesTransient(t *testing.T) {
	err := &GuestExitError{Code: abi.ExitTransient}
	wantContains(t, "err", err.Error(), "code 75", "retried")
}

// refCapture is the obvious model: keep everything, then cut.
func refCapture(all []byte, limit int) []byte {
	if len(all) <= limit {
		return all
	}
	h, tl := limit/2, limit-limit/2
	out := append([]byte{}, all[:h]...)
	out = append(out, []byte("\n[... "+strconv.Itoa(len(all)-limit)+" bytes truncated ...]\n")...)
	return append(out, all[len(all)-tl:]...)
}

func FuzzCapture(f *testing.F) {
	f.Add(10, []byte("hello"), uint8(3))
	f.Add(10, []byte("hello, world, this is long"), uint8(1))
	f.Add(7, []byte("0123456789abcdefghij"), uint8(4))
	f.Add(1, []byte("xy"), uint8(1))
	f.Add(0, []byte("xy"), uint8(1))
	f.Add(16, bytes.Repeat([]byte("ab"), 100), uint8(7))
	f.Fuzz(func(t *testing.T, limit int, data []byte, chunk uint8) {
		if limit < 0 || limit > 1<<16 {
			return
		}
		c := newCapture(limit)
		step := int(chunk%32) + 1
		for i := 0; i < len(data); i += step {
			n, err := c.Write(data[i:min(i+step, len(data))])
			if err != nil || n != min(step, len(data)-i) {
				t.Fatalf("Write: %d, %v", n, err)
			}
		}
		if got, want := c.Bytes(), refCapture(data, limit); !bytes.Equal(got, want) {
			t.Fatalf("limit %d step %d:\ngot  %q\nwant %q", limit, step, got, want)
		}
	})
}

func TestRandSource(t *testing.T) {
	read := func(task string, sizes ...int) []byte {
		r := newRandSource(task)
		var out []byte
		for _, n := range sizes {
			b := make([]byte, n)
			if _, err := io.ReadFull(r, b); err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
		}
		return out
	}
	a := read("t", 100)
	if !bytes.Equal(a, read("t", 1, 15, 16, 17, 51)) {
		t.Error("the stream depends on read sizes")
	}
	if bytes.Equal(a, read("u", 100)) {
		t.Error("different tasks, same stream")
	}
	if bytes.Equal(a[:16], make([]byte, 16)) {
		t.Error("stream is zeros")
	}
}

func TestErrorBody(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{abi.Errorf(abi.StatusToolError, "bad pdf"), "bad pdf"},
		{abi.StatusTransient, ""},
		{errors.Join(errors.New("ledger"), abi.StatusTransient), "ledger\ntransient"},
		{abi.Errorf(abi.StatusToolError, "%s", strings.Repeat("€", abi.MaxLogBytes)), strings.Repeat("€", abi.MaxLogBytes/3)},
	}
	for _, tt := range tests {
		st, _ := abi.StatusOf(tt.err)
		var body abi.ErrorBody
		if err := json.Unmarshal(errorBody(st, tt.err), &body); err != nil {
			t.Fatal(err)
		}
		if body.Message != tt.want || body.Status != st.String() {
			t.Errorf("%v: %+v, want message %q", tt.err, body, tt.want)
		}
	}
}
