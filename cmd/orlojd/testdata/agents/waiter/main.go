// Command waiter makes one http call, POST {"url"}/before, then waits
// durably: it sleeps for {"sleep"} (a Go duration) if set, and awaits the
// signal {"await"} for at most {"timeout"} if set; then it POSTs
// {"url"}/after and outputs what it saw: the signal's payload, or
// timed_out.
package main

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/orloj/orloj/sdk/orloj"
)

type httpRequest struct {
	Method string `json:"method"`
	URL    string `json:"url"`
}

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		URL     string `json:"url"`
		Sleep   string `json:"sleep"`
		Await   string `json:"await"`
		Timeout string `json:"timeout"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	if _, err := orloj.Call("http", httpRequest{Method: "POST", URL: in.URL + "/before"}); err != nil {
		return err
	}
	out := map[string]any{}
	if in.Sleep != "" {
		d, err := time.ParseDuration(in.Sleep)
		if err != nil {
			return err
		}
		if err := orloj.Sleep(d); err != nil {
			return err
		}
		out["slept"] = in.Sleep
	}
	if in.Await != "" {
		var timeout time.Duration
		if in.Timeout != "" {
			var err error
			if timeout, err = time.ParseDuration(in.Timeout); err != nil {
				return err
			}
		}
		p, err := orloj.Await(in.Await, timeout)
		switch {
		case errors.Is(err, orloj.ErrTimeout):
			out["timed_out"] = true
		case err != nil:
			return err
		default:
			out["signal"] = json.RawMessage(p)
		}
	}
	if _, err := orloj.Call("http", httpRequest{Method: "POST", URL: in.URL + "/after"}); err != nil {
		return err
	}
	return orloj.Output(out)
}
