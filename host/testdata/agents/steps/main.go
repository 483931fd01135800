// Command steps is a test agent: it makes the tool calls its input lists, in
// order, and outputs their results. Built with -ldflags "-X main.variant=b"
// it first makes one extra call, so a replay diverges from the recorded run.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/orloj/orloj/sdk/orloj"
)

var variant = "a"

type step struct {
	Tool   string          `json:"tool"`
	Params json.RawMessage `json:"params"`
	Key    string          `json:"key,omitempty"`
	// Sleep (a Go duration) makes the step a durable sleep instead of a
	// call; Await makes it an await of that signal, for at most Timeout.
	// Their results are what Sleep's and Await's answers were.
	Sleep   string `json:"sleep,omitempty"`
	Await   string `json:"await,omitempty"`
	Timeout string `json:"timeout,omitempty"`
}

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		Steps []step `json:"steps"`
		Emit  []step `json:"emit"`
		Now   bool   `json:"now"`
		// NowFirst reads the clock before the steps, so a retry after a
		// failing step must replay the reading.
		NowFirst bool `json:"now_first"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	if variant == "b" {
		in.Steps = append([]step{{Tool: "echo", Params: json.RawMessage(`{"variant":"b"}`)}}, in.Steps...)
	}
	for _, e := range in.Emit {
		if err := orloj.Emit(e.Tool, e.Params); err != nil {
			return fmt.Errorf("emit %s: %w", e.Tool, err)
		}
	}
	var out []json.RawMessage
	if in.NowFirst {
		t, err := orloj.Now()
		if err != nil {
			return err
		}
		out = append(out, json.RawMessage(fmt.Sprintf("%d", t.UnixNano())))
	}
	for i, s := range in.Steps {
		if s.Sleep != "" || s.Await != "" {
			res, err := wait(s)
			if err != nil {
				return fmt.Errorf("step %d: %w", i+1, err)
			}
			out = append(out, res)
			continue
		}
		var opts []orloj.CallOption
		if s.Key != "" {
			opts = append(opts, orloj.WithKey(s.Key))
		}
		res, err := orloj.Call(s.Tool, s.Params, opts...)
		if err != nil {
			return fmt.Errorf("step %d (%s): %w", i+1, s.Tool, err)
		}
		out = append(out, res)
	}
	if in.Now {
		t, err := orloj.Now()
		if err != nil {
			return err
		}
		out = append(out, json.RawMessage(fmt.Sprintf("%d", t.UnixNano())))
	}
	return orloj.Output(out)
}

func wait(s step) (json.RawMessage, error) {
	if s.Sleep != "" {
		d, err := time.ParseDuration(s.Sleep)
		if err != nil {
			return nil, err
		}
		if err := orloj.Sleep(d); err != nil {
			return nil, err
		}
		return json.RawMessage(`"slept"`), nil
	}
	var timeout time.Duration
	if s.Timeout != "" {
		var err error
		if timeout, err = time.ParseDuration(s.Timeout); err != nil {
			return nil, err
		}
	}
	p, err := orloj.Await(s.Await, timeout)
	if errors.Is(err, orloj.ErrTimeout) {
		return json.RawMessage(`"timeout"`), nil
	}
	return p, err
}
