// Command notifier posts one message to a webhook: input
// {"url": "...", "message": "..."}, one http POST of {"text": message} (the
// shape Slack and most chat webhooks accept), output {"status": <http status>}.
//
// A webhook that answers 5xx or times out fails the attempt as transient, so
// the task is retried; the host replays nothing for it, because a failed call
// has no recorded result. A 4xx is permanent and sends the task to the DLQ.
package main

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/orloj/orloj/sdk/orloj"
)

// input is the task input.
type input struct {
	URL     string `json:"url"`
	Message string `json:"message"`
}

// httpRequest and httpResponse are the params and result of the host's http
// tool.
type httpRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

type httpResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// encoding/json learns these once per agent version; see orloj.Prepare.
var _ = orloj.Prepare(input{}, httpRequest{}, httpResponse{})

func main() { orloj.Main(run) }

func run() error {
	var in input
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	if in.URL == "" {
		return errors.New("input: url is required")
	}
	body, err := json.Marshal(map[string]string{"text": in.Message})
	if err != nil {
		return fmt.Errorf("encode message: %w", err)
	}
	var res httpResponse
	err = orloj.CallInto("http", httpRequest{
		Method:  "POST",
		URL:     in.URL,
		Headers: map[string]string{"Content-Type": "application/json"},
		Body:    string(body),
	}, &res)
	if err != nil {
		return fmt.Errorf("post to webhook: %w", err)
	}
	orloj.Logf("notifier: webhook answered %d", res.Status)
	return orloj.Output(map[string]int{"status": res.Status})
}
