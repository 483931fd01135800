//go:build !wasip1

package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/orloj/orloj/sdk/plugin"
)

func tool() plugin.Tool {
	return plugin.Tool{Name: "slack", Invoke: post}
}

func TestPostSendsTheTokenFromTheSecret(t *testing.T) {
	f := plugin.NewFake().SetSecret("slack-token", "xoxb-1").HandleHTTP(func(r plugin.Request) (*plugin.Response, error) {
		return &plugin.Response{Status: 200, Body: `{"ok":true,"channel":"C1","ts":"1.2"}`}, nil
	})
	res, err := f.Invoke(tool(), "call-1", map[string]string{"channel": "C1", "text": "hi"})
	if err != nil {
		t.Fatal(err)
	}
	var a answer
	if err := json.Unmarshal(res, &a); err != nil || !a.OK || a.TS != "1.2" {
		t.Fatalf("result %s (%v)", res, err)
	}
	sent := f.Sent()
	if len(sent) != 1 || sent[0].Headers["Authorization"] != "Bearer xoxb-1" || sent[0].URL != defaultAPI || !strings.Contains(sent[0].Body, `"text":"hi"`) {
		t.Errorf("sent %+v", sent)
	}
}

func TestPostErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		body   string
		want   error
	}{
		{"slack says no", 200, `{"ok":false,"error":"channel_not_found"}`, plugin.ErrToolError},
		{"rate limited", 429, ``, plugin.ErrTransient},
		{"down", 503, ``, plugin.ErrTransient},
	} {
		f := plugin.NewFake().SetSecret("slack-token", "x").HandleHTTP(func(plugin.Request) (*plugin.Response, error) {
			return &plugin.Response{Status: tc.status, Body: tc.body}, nil
		})
		if _, err := f.Invoke(tool(), "c", map[string]string{"channel": "C1", "text": "hi"}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	f := plugin.NewFake()
	if _, err := f.Invoke(tool(), "c", map[string]string{"channel": "C1"}); !errors.Is(err, plugin.ErrInvalidArgument) {
		t.Errorf("no text: %v", err)
	}
	if _, err := f.Invoke(tool(), "c", map[string]string{"channel": "C1", "text": "x"}); !errors.Is(err, plugin.ErrTransient) {
		t.Errorf("no secret on the node: %v, want transient", err)
	}
}
