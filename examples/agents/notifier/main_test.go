//go:build !wasip1

package main

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// Tests install a process-wide orloj.Fake, so none of them is parallel.

const hook = "https://hooks.example.com/T000/B000"

func TestRun(t *testing.T) {
	tests := []struct {
		name      string
		input     any
		reply     func(httpRequest) (any, error) // the webhook, as the http tool reports it
		wantOut   string                         // "" when run must fail
		wantErr   error                          // status the error carries, if any
		wantExit  int
		wantPosts int
	}{
		{
			name:      "posted",
			input:     input{URL: hook, Message: "build *green* \"ok\""},
			reply:     func(httpRequest) (any, error) { return httpResponse{Status: 200, Body: "ok"}, nil },
			wantOut:   `{"status":200}`,
			wantPosts: 1,
		},
		{
			name:      "accepted is still success",
			input:     input{URL: hook, Message: "hi"},
			reply:     func(httpRequest) (any, error) { return httpResponse{Status: 202}, nil },
			wantOut:   `{"status":202}`,
			wantPosts: 1,
		},
		{
			name:  "5xx is retried",
			input: input{URL: hook, Message: "hi"},
			reply: func(httpRequest) (any, error) {
				return nil, abi.Errorf(abi.StatusTransient, "POST %s: 502 Bad Gateway", hook)
			},
			wantErr:   orloj.ErrTransient,
			wantExit:  abi.ExitTransient,
			wantPosts: 1,
		},
		{
			name:  "4xx goes to the DLQ",
			input: input{URL: hook, Message: "hi"},
			reply: func(httpRequest) (any, error) {
				return nil, abi.Errorf(abi.StatusToolError, "POST %s: 404 Not Found", hook)
			},
			wantErr:   orloj.ErrToolError,
			wantExit:  1,
			wantPosts: 1,
		},
		{
			name:      "no url is permanent and posts nothing",
			input:     input{Message: "hi"},
			wantExit:  1,
			wantPosts: 0,
		},
		{
			name:      "malformed input is permanent",
			input:     json.RawMessage(`["not", "an", "object"]`),
			wantExit:  1,
			wantPosts: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := orloj.NewFake().SetInput(tt.input).Handle("http", func(params json.RawMessage) (any, error) {
				var req httpRequest
				if err := json.Unmarshal(params, &req); err != nil {
					return nil, abi.Errorf(abi.StatusInvalidArgument, "http params: %v", err)
				}
				return tt.reply(req)
			})
			t.Cleanup(f.Install())

			err := run()

			if tt.wantOut != "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := string(f.Output()); got != tt.wantOut {
					t.Errorf("output = %s, want %s", got, tt.wantOut)
				}
			} else {
				if err == nil {
					t.Fatal("run succeeded, want an error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want errors.Is %v", err, tt.wantErr)
				}
				if got := orloj.ExitCode(err); got != tt.wantExit {
					t.Errorf("exit code %d, want %d (err %v)", got, tt.wantExit, err)
				}
				if out := f.Output(); out != nil {
					t.Errorf("output %s set by a failed run", out)
				}
			}

			posts := f.CallsTo("http")
			if len(posts) != tt.wantPosts {
				t.Fatalf("http called %d times, want %d", len(posts), tt.wantPosts)
			}
			if len(posts) == 1 {
				in := tt.input.(input)
				text, _ := json.Marshal(map[string]string{"text": in.Message})
				want := canonical(t, httpRequest{
					Method:  "POST",
					URL:     hook,
					Headers: map[string]string{"Content-Type": "application/json"},
					Body:    string(text),
				})
				if got := string(posts[0].Params); got != want {
					t.Errorf("http params\n got %s\nwant %s", got, want)
				}
			}
		})
	}
}

// canonical is v as the host sees params: marshalled, then canonicalised.
func canonical(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	c, err := abi.Canonicalize(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(c)
}
