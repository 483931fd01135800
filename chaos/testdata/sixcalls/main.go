// Command sixcalls is the fault harness's workload: six HTTP tool calls to
// a counting service, one per step, each carrying the call's
// Idempotency-Key. Input: {"url": "http://127.0.0.1:PORT", "job": "j-17"}.
package main

import (
	"errors"
	"fmt"

	"github.com/orloj/orloj/sdk/orloj"
)

type input struct {
	URL string `json:"url"`
	Job string `json:"job"`
}

type httpRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
	Body   string `json:"body,omitempty"`
}

type httpResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

// Learned once per agent version in a reactor build; see orloj.Prepare.
var _ = orloj.Prepare(input{}, httpRequest{}, httpResponse{})

func main() { orloj.Main(run) }

func run() error {
	var in input
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	if in.URL == "" || in.Job == "" {
		return errors.New("input: url and job are required")
	}
	total := 0
	for step := 1; step <= 6; step++ {
		var res httpResponse
		err := orloj.CallInto("http", httpRequest{Method: "POST", URL: fmt.Sprintf("%s/effect?job=%s&step=%d", in.URL, in.Job, step)}, &res)
		if err != nil {
			return fmt.Errorf("step %d: %w", step, err)
		}
		if res.Status != 200 {
			return fmt.Errorf("step %d: status %d: %w", step, res.Status, orloj.ErrTransient)
		}
		total += len(res.Body)
	}
	return orloj.Output(map[string]any{"job": in.Job, "bytes": total})
}
