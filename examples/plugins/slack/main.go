// Command slack is a tool plugin that posts a message to Slack
// (chat.postMessage) with a bot token from the node's secret "slack-token",
// which the host fills into the Authorization header: the plugin never sees
// it. Params: {"channel": "C123", "text": "...", "api_url": optional, for a
// stand-in}. Result: {"ok": true, "channel": "C123", "ts": "..."}. A Slack
// error ({"ok": false, "error": "channel_not_found"}) is a tool_error; a 5xx
// or 429 is transient.
//
//	GOOS=wasip1 GOARCH=wasm go build -o slack.wasm ./examples/plugins/slack
package main

import (
	"encoding/json"

	"github.com/orloj/orloj/sdk/plugin"
)

const defaultAPI = "https://slack.com/api/chat.postMessage"

type params struct {
	Channel string `json:"channel"`
	Text    string `json:"text"`
	APIURL  string `json:"api_url,omitempty"`
}

type answer struct {
	OK      bool   `json:"ok"`
	Error   string `json:"error,omitempty"`
	Channel string `json:"channel,omitempty"`
	TS      string `json:"ts,omitempty"`
}

// encoding/json learns these once per plugin version; see plugin.Prepare.
var _ = plugin.Prepare(params{}, answer{})

func main() {
	plugin.Main(plugin.Tool{
		Name:        "slack",
		Description: "Post a message to a Slack channel.",
		Schema: json.RawMessage(`{"type":"object","properties":{"channel":{"type":"string"},"text":{"type":"string"},` +
			`"api_url":{"type":"string"}},"required":["channel","text"],"additionalProperties":false}`),
		// Slack has no idempotency keys; the host's retry after a lost
		// answer may post twice, which a chat message survives. Declare
		// the tool unsafe in its definition where it must not.
		Semantics: plugin.Idempotent,
		Invoke:    post,
	})
}

func post(c *plugin.Call) (any, error) {
	var p params
	if err := c.Decode(&p); err != nil {
		return nil, err
	}
	if p.Channel == "" || p.Text == "" {
		return nil, plugin.Errorf(plugin.ErrInvalidArgument, "channel and text are required")
	}
	url := p.APIURL
	if url == "" {
		url = defaultAPI
	}
	body, _ := json.Marshal(map[string]string{"channel": p.Channel, "text": p.Text})
	resp, err := plugin.HTTP(plugin.Request{Method: "POST", URL: url, Body: string(body), Headers: map[string]any{
		"Content-Type":  "application/json; charset=utf-8",
		"Authorization": plugin.Secret("slack-token", "Bearer %s"),
	}})
	if err != nil {
		return nil, err
	}
	if resp.Status == 429 || resp.Status >= 500 {
		return nil, plugin.Errorf(plugin.ErrTransient, "slack: status %d", resp.Status)
	}
	var a answer
	if err := json.Unmarshal([]byte(resp.Body), &a); err != nil {
		return nil, plugin.Errorf(plugin.ErrToolError, "slack: status %d, not a Slack answer", resp.Status)
	}
	if !a.OK {
		return nil, plugin.Errorf(plugin.ErrToolError, "slack: %s", a.Error)
	}
	return a, nil
}
