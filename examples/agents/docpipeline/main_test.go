//go:build !wasip1

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// Tests install a process-wide orloj.Fake, so none of them is parallel.

const (
	docURL     = "https://blob.example.com/inbox/inv-0042.pdf"
	ocrURL     = "https://ocr.example.com/v1/ocr"
	recordsURL = "https://records.example.com/v1/records"
	docBody    = "%PDF-1.7 (scanned invoice)"
	ocrText    = "ACME GmbH\nInvoice 2026-0042\nTotal: EUR 1,234.50\nDate: 14 March 2026"
	goodFields = `{"vendor": "ACME GmbH", "total": 1234.5, "currency": "EUR", "date": "2026-03-14"}`
)

var wantFields = fields{Vendor: "ACME GmbH", Total: 1234.5, Currency: "EUR", Date: "2026-03-14"}

// world is what the tools answer. Each test case changes the good world in
// one place.
type world struct {
	docErr, ocrErr, recordsErr error
	classAnswer                string
	fieldsAnswer               string
	recordsBody                string
}

func goodWorld() world {
	return world{classAnswer: "invoice", fieldsAnswer: goodFields, recordsBody: `{"id": "rec-1"}`}
}

// setup installs a Fake that plays the blob store, the OCR service, the
// records service (all behind the http tool) and the model.
func setup(t *testing.T, in any, w world) *orloj.Fake {
	t.Helper()
	f := orloj.NewFake().SetInput(in)
	f.Handle("http", func(params json.RawMessage) (any, error) {
		var req httpRequest
		if err := json.Unmarshal(params, &req); err != nil {
			return nil, abi.Errorf(abi.StatusInvalidArgument, "http params: %v", err)
		}
		switch {
		case req.Method == "GET" && req.URL == docURL:
			if w.docErr != nil {
				return nil, w.docErr
			}
			return httpResponse{Status: 200, Headers: map[string]string{"Content-Type": "application/pdf"}, Body: docBody}, nil
		case req.Method == "POST" && req.URL == ocrURL:
			if w.ocrErr != nil {
				return nil, w.ocrErr
			}
			return httpResponse{Status: 200, Body: ocrText}, nil
		case req.Method == "POST" && req.URL == recordsURL:
			if w.recordsErr != nil {
				return nil, w.recordsErr
			}
			return httpResponse{Status: 201, Body: w.recordsBody}, nil
		}
		return nil, abi.Errorf(abi.StatusToolError, "%s %s: 404 Not Found", req.Method, req.URL)
	})
	f.Handle("model", func(params json.RawMessage) (any, error) {
		var req modelRequest
		if err := json.Unmarshal(params, &req); err != nil || len(req.Messages) == 0 {
			return nil, abi.Errorf(abi.StatusInvalidArgument, "model params: %s", params)
		}
		res := modelResponse{Content: w.fieldsAnswer}
		if req.Messages[0].Content == classifyPrompt {
			res.Content = w.classAnswer
		}
		res.Usage.PromptTokens, res.Usage.CompletionTokens = 100, 10
		return res, nil
	})
	t.Cleanup(f.Install())
	return f
}

// call is one expected tool call.
type call struct {
	tool   string
	params any
}

// wantCalls is the call sequence of a run that gets through the first n of
// the five tool calls (steps 1, 2, 3, 4 and 6).
func wantCalls(n int) []call {
	rec, _ := json.Marshal(record{Document: docURL, Class: "invoice", Fields: wantFields})
	all := []call{
		{"http", httpRequest{Method: "GET", URL: docURL}},
		{"http", httpRequest{Method: "POST", URL: ocrURL, Headers: map[string]string{"Content-Type": "application/octet-stream"}, Body: docBody}},
		{"model", modelRequest{Messages: []message{{"system", classifyPrompt}, {"user", ocrText}}}},
		{"model", modelRequest{Messages: []message{{"system", fmt.Sprintf(extractPrompt, "invoice")}, {"user", ocrText}}}},
		{"http", httpRequest{Method: "POST", URL: recordsURL, Headers: map[string]string{"Content-Type": "application/json"}, Body: string(rec)}},
	}
	return all[:n]
}

func TestRun(t *testing.T) {
	good := input{Document: docURL, OCRURL: ocrURL, RecordsURL: recordsURL}
	wantOut := `{"class":"invoice","fields":{"vendor":"ACME GmbH","total":1234.5,"currency":"EUR","date":"2026-03-14"},"record":{"id":"rec-1"}}`
	tests := []struct {
		name      string
		input     any
		change    func(*world)
		wantOut   string // "" when run must fail
		wantErr   error  // what the error must wrap, if anything in particular
		wantMsg   string // substring of the error text
		wantExit  int
		wantCalls int // how far the run gets, as for wantCalls
	}{
		{
			name:      "success",
			input:     good,
			wantOut:   wantOut,
			wantCalls: 5,
		},
		{
			name:      "fields in a fence after a sentence",
			input:     good,
			change:    func(w *world) { w.fieldsAnswer = "Here are the fields:\n```json\n" + goodFields + "\n```\n" },
			wantOut:   wantOut,
			wantCalls: 5,
		},
		{
			name:      "class answer decorated",
			input:     good,
			change:    func(w *world) { w.classAnswer = " Invoice.\n" },
			wantOut:   wantOut,
			wantCalls: 5,
		},
		{
			name:      "records answer that is not JSON is kept as a string",
			input:     good,
			change:    func(w *world) { w.recordsBody = "created" },
			wantOut:   strings.Replace(wantOut, `{"id":"rec-1"}`, `"created"`, 1),
			wantCalls: 5,
		},
		{
			name:  "records 503 is retried",
			input: good,
			change: func(w *world) {
				w.recordsErr = abi.Errorf(abi.StatusTransient, "POST %s: 503 Service Unavailable", recordsURL)
			},
			wantErr:   orloj.ErrTransient,
			wantMsg:   "step 6 record",
			wantExit:  abi.ExitTransient,
			wantCalls: 5,
		},
		{
			name:      "document fetch timeout is retried before anything else runs",
			input:     good,
			change:    func(w *world) { w.docErr = abi.Errorf(abi.StatusTransient, "GET %s: timeout", docURL) },
			wantErr:   orloj.ErrTransient,
			wantMsg:   "step 1 fetch",
			wantExit:  abi.ExitTransient,
			wantCalls: 1,
		},
		{
			name:  "ocr 4xx is permanent",
			input: good,
			change: func(w *world) {
				w.ocrErr = abi.Errorf(abi.StatusToolError, "POST %s: 415 Unsupported Media Type", ocrURL)
			},
			wantErr:   orloj.ErrToolError,
			wantMsg:   "step 2 ocr",
			wantExit:  1,
			wantCalls: 2,
		},
		{
			name:      "empty class is permanent",
			input:     good,
			change:    func(w *world) { w.classAnswer = "..." },
			wantMsg:   "step 3 classify: model gave no class",
			wantExit:  1,
			wantCalls: 3,
		},
		{
			name:      "total as a string is poison",
			input:     good,
			change:    func(w *world) { w.fieldsAnswer = strings.Replace(goodFields, "1234.5", `"1,234.50"`, 1) },
			wantErr:   errInvalidFields,
			wantMsg:   "total",
			wantExit:  1,
			wantCalls: 4,
		},
		{
			name:  "every problem is reported",
			input: good,
			change: func(w *world) {
				w.fieldsAnswer = `{"vendor": " ", "total": 1, "currency": "euro", "date": "14/03/2026"}`
			},
			wantErr:   errInvalidFields,
			wantMsg:   `vendor is empty; currency "euro" is not an ISO 4217 code; date "14/03/2026" is not YYYY-MM-DD`,
			wantExit:  1,
			wantCalls: 4,
		},
		{
			name:      "missing members are reported",
			input:     good,
			change:    func(w *world) { w.fieldsAnswer = `{"total": null}` },
			wantErr:   errInvalidFields,
			wantMsg:   "vendor is missing; total is missing; currency is missing; date is missing",
			wantExit:  1,
			wantCalls: 4,
		},
		{
			name:      "answer that is not JSON is poison",
			input:     good,
			change:    func(w *world) { w.fieldsAnswer = "I could not find any fields." },
			wantErr:   errInvalidFields,
			wantMsg:   "step 5 validate",
			wantExit:  1,
			wantCalls: 4,
		},
		{
			name:      "input without urls calls nothing",
			input:     input{Document: docURL},
			wantMsg:   "required",
			wantExit:  1,
			wantCalls: 0,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := goodWorld()
			if tt.change != nil {
				tt.change(&w)
			}
			f := setup(t, tt.input, w)

			err := run()

			if tt.wantOut != "" {
				if err != nil {
					t.Fatal(err)
				}
				if got := string(f.Output()); got != tt.wantOut {
					t.Errorf("output\n got %s\nwant %s", got, tt.wantOut)
				}
				assertStepLogs(t, f.Logs())
			} else {
				if err == nil {
					t.Fatal("run succeeded, want an error")
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Errorf("err = %v, want errors.Is %v", err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("err = %q, want it to contain %q", err, tt.wantMsg)
				}
				if got := orloj.ExitCode(err); got != tt.wantExit {
					t.Errorf("exit code %d, want %d", got, tt.wantExit)
				}
				if out := f.Output(); out != nil {
					t.Errorf("output %s set by a failed run", out)
				}
			}
			assertCalls(t, f.Calls(), wantCalls(tt.wantCalls))
		})
	}
}

// assertCalls checks the tools were called in order, each with exactly the
// expected params (compared in canonical form, as the host identifies calls).
func assertCalls(t *testing.T, got []orloj.FakeCall, want []call) {
	t.Helper()
	if len(got) != len(want) {
		var tools []string
		for _, c := range got {
			tools = append(tools, c.Tool)
		}
		t.Fatalf("%d tool calls %v, want %d", len(got), tools, len(want))
	}
	for i, w := range want {
		b, err := json.Marshal(w.params)
		if err != nil {
			t.Fatal(err)
		}
		params, err := abi.Canonicalize(b)
		if err != nil {
			t.Fatal(err)
		}
		if got[i].Tool != w.tool || string(got[i].Params) != string(params) {
			t.Errorf("call %d\n got %s %s\nwant %s %s", i, got[i].Tool, got[i].Params, w.tool, params)
		}
	}
}

// assertStepLogs checks a successful run logged one line per step, in order.
func assertStepLogs(t *testing.T, logs []string) {
	t.Helper()
	if len(logs) != 6 {
		t.Fatalf("logged %d lines, want one per step: %q", len(logs), logs)
	}
	for i, line := range logs {
		if prefix := fmt.Sprintf("info: %d/6 ", i+1); !strings.HasPrefix(line, prefix) {
			t.Errorf("log line %d = %q, want prefix %q", i, line, prefix)
		}
	}
}

func TestUnfence(t *testing.T) {
	const obj = `{"a": 1}`
	tests := []struct {
		name, in string
	}{
		{"bare", obj},
		{"bare with spaces", "\n  " + obj + "\n"},
		{"json fence", "```json\n" + obj + "\n```"},
		{"plain fence", "```\n" + obj + "\n```"},
		{"sentence before and after", "Sure! Here it is:\n```JSON\n" + obj + "\n```\nAnything else?"},
		{"one line", "```json " + obj + "```"},
		{"unclosed fence", "```json\n" + obj},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := unfence(tt.in); got != obj {
				t.Errorf("unfence(%q) = %q, want %q", tt.in, got, obj)
			}
		})
	}
}

// TestDefaultDate: a build linked with a default date accepts fields without
// one and records that date; a date the document has is kept, and a bad one is
// still refused.
func TestDefaultDate(t *testing.T) {
	defer func(old string) { defaultDate = old }(defaultDate)
	defaultDate = "2026-11-01"
	good := input{Document: docURL, OCRURL: ocrURL, RecordsURL: recordsURL}
	tests := []struct {
		name, fields, wantDate, wantMsg string
	}{
		{"missing date takes the default", `{"vendor": "ACME GmbH", "total": 1234.5, "currency": "EUR"}`, "2026-11-01", ""},
		{"null date takes the default", `{"vendor": "ACME GmbH", "total": 1234.5, "currency": "EUR", "date": null}`, "2026-11-01", ""},
		{"a date of the document wins", goodFields, "2026-03-14", ""},
		{"a bad date is still refused", `{"vendor": "ACME GmbH", "total": 1234.5, "currency": "EUR", "date": "soon"}`, "", `date "soon" is not YYYY-MM-DD`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := goodWorld()
			w.fieldsAnswer = tt.fields
			f := setup(t, good, w)
			err := run()
			if tt.wantMsg != "" {
				if err == nil || !errors.Is(err, errInvalidFields) || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("err = %v, want invalid fields naming %q", err, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var out output
			if err := json.Unmarshal(f.Output(), &out); err != nil {
				t.Fatal(err)
			}
			if out.Fields.Date != tt.wantDate {
				t.Errorf("date = %q, want %q", out.Fields.Date, tt.wantDate)
			}
		})
	}
}
