//go:build !wasip1

package main

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/orloj/orloj/sdk/orloj"
)

// Tests install a process-wide orloj.Fake, so none of them is parallel.

func TestRun(t *testing.T) {
	tests := []struct {
		name  string
		input json.RawMessage // nil: the fake's default, null
		want  string
		log   string
	}{
		{"object comes back unchanged", json.RawMessage(`{"b": 1, "a": [2, 3]}`), `{"b": 1, "a": [2, 3]}`, "info: hello: echoing 21 bytes of input"},
		{"string", json.RawMessage(`"hi"`), `"hi"`, "info: hello: echoing 4 bytes of input"},
		{"no input is null", nil, `null`, "info: hello: echoing 4 bytes of input"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := orloj.NewFake()
			if tt.input != nil {
				f.SetInput(tt.input)
			}
			t.Cleanup(f.Install())

			if err := run(); err != nil {
				t.Fatal(err)
			}
			if got := string(f.Output()); got != tt.want {
				t.Errorf("output = %s, want %s", got, tt.want)
			}
			if logs := f.Logs(); !slices.Equal(logs, []string{tt.log}) {
				t.Errorf("logs = %q, want [%q]", logs, tt.log)
			}
			if calls := f.Calls(); len(calls) != 0 {
				t.Errorf("calls = %+v, want none", calls)
			}
		})
	}
}

func TestRunWithoutHost(t *testing.T) {
	// No Fake installed: the agent must fail, not invent an input.
	err := run()
	if err == nil {
		t.Fatal("run succeeded with no host")
	}
	if code := orloj.ExitCode(err); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
}
