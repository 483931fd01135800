// Command batch3 makes three http calls at once with orloj.CallAll, one POST
// to {"url"}/step?i=N for N = 1, 2, 3, and outputs their bodies. A call that
// failed fails the attempt (a transient one asks for a retry, in which the
// finished calls replay).
package main

import (
	"fmt"

	"github.com/orloj/orloj/sdk/orloj"
)

type httpRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

type httpResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

var _ = orloj.Prepare(httpRequest{}, httpResponse{})

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		URL string `json:"url"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	var reqs []orloj.Request
	for i := 1; i <= 3; i++ {
		reqs = append(reqs, orloj.Request{Tool: "http", Params: httpRequest{Method: "POST", URL: fmt.Sprintf("%s/step?i=%d", in.URL, i)}})
	}
	res, err := orloj.CallAll(reqs...)
	if err != nil {
		return err
	}
	bodies := make([]string, len(res))
	for i, r := range res {
		var hr httpResponse
		if err := r.Into(&hr); err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		if hr.Status != 200 {
			return fmt.Errorf("step %d: status %d: %w", i+1, hr.Status, orloj.ErrTransient)
		}
		bodies[i] = hr.Body
	}
	return orloj.Output(map[string]any{"bodies": bodies})
}
