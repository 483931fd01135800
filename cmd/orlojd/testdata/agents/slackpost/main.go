// Command slackpost posts one message through the declared tool `slack`
// and outputs its result. Input: {"api_url": "...", "text": "..."}.
package main

import (
	"encoding/json"

	"github.com/orloj/orloj/sdk/orloj"
)

func main() { orloj.Main(run) }

func run() error {
	var in struct {
		APIURL string `json:"api_url"`
		Text   string `json:"text"`
	}
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	res, err := orloj.Call("slack", map[string]string{"channel": "C1", "text": in.Text, "api_url": in.APIURL})
	if err != nil {
		return err
	}
	return orloj.Output(json.RawMessage(res))
}
