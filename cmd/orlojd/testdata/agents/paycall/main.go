// Command paycall charges once: one POST through the `payments` tool (an
// http tool the node declares unsafe) to {"url"}, and outputs its answer.
package main

import (
	"github.com/orloj/orloj/sdk/orloj"
)

type httpResponse struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
}

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		URL string `json:"url"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	var res httpResponse
	if err := orloj.CallInto("payments", map[string]string{"method": "POST", "url": in.URL + "/charges"}, &res); err != nil {
		return err
	}
	return orloj.Output(map[string]any{"status": res.Status, "charge": res.Body})
}
