package standins

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

func start(t *testing.T) *Services {
	t.Helper()
	s, err := Start("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func do(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const tools = `[{"type":"function","function":{"name":"lookup_order","parameters":{"type":"object"}}},
 {"type":"function","function":{"name":"lookup_customer","parameters":{"type":"object"}}},
 {"type":"function","function":{"name":"post_reply","parameters":{"type":"object"}}},
 {"type":"function","function":{"name":"issue_refund","parameters":{"type":"object"}}}]`

type completion struct {
	Choices []struct {
		Message struct {
			Content   *string    `json:"content"`
			ToolCalls []chatCall `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		Total int `json:"total_tokens"`
	} `json:"usage"`
}

// The support model plays its three turns from the conversation alone, in
// OpenAI's wire format, and counts each turn's requests.
func TestSupportModelTurns(t *testing.T) {
	s := start(t)
	url := s.URL + "/support/v1/chat/completions"
	msgs := []any{
		map[string]any{"role": "system", "content": "You are a support agent."},
		map[string]any{"role": "user", "content": "Ticket T-1 from ann@example.com about order O-1001:\nIt arrived broken."},
	}
	ask := func() completion {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"model": SupportModel, "messages": msgs, "tools": json.RawMessage(tools), "tool_choice": "auto"})
		code, body := do(t, "POST", url, "k", string(b))
		var c completion
		if code != 200 || json.Unmarshal([]byte(body), &c) != nil || len(c.Choices) != 1 || c.Usage.Total == 0 {
			t.Fatalf("%d %s", code, body)
		}
		return c
	}
	answer := func(c completion, results ...string) {
		m := c.Choices[0].Message
		msgs = append(msgs, map[string]any{"role": "assistant", "content": m.Content, "tool_calls": m.ToolCalls})
		for i, tc := range m.ToolCalls {
			msgs = append(msgs, map[string]any{"role": "tool", "tool_call_id": tc.ID, "content": results[i]})
		}
	}
	c1 := ask()
	if m := c1.Choices[0]; m.FinishReason != "tool_calls" || len(m.Message.ToolCalls) != 2 || m.Message.Content != nil ||
		m.Message.ToolCalls[0].Function.Name != "lookup_order" || m.Message.ToolCalls[0].Function.Arguments != `{"order_id":"O-1001"}` ||
		m.Message.ToolCalls[1].Function.Arguments != `{"email":"ann@example.com"}` {
		t.Fatalf("turn 1: %+v", m)
	}
	_, order := do(t, "GET", s.URL+"/shop/orders/O-1001", "", "")
	_, customer := do(t, "GET", s.URL+"/shop/customers/ann@example.com", "", "")
	answer(c1, order, customer)
	c2 := ask()
	if m := c2.Choices[0].Message; len(m.ToolCalls) != 2 || m.ToolCalls[0].Function.Name != "post_reply" ||
		m.ToolCalls[1].Function.Arguments != `{"amount_cents":4990,"currency":"EUR","order_id":"O-1001","reason":"damaged in transit"}` ||
		!strings.Contains(m.ToolCalls[0].Function.Arguments, "Hello Ann Example") {
		t.Fatalf("turn 2: %+v", m)
	}
	answer(c2, `{"reply_id":"rp-1"}`, `{"refund_id":"rf-1"}`)
	c3 := ask()
	if m := c3.Choices[0]; m.FinishReason != "stop" || m.Message.Content == nil || len(m.Message.ToolCalls) != 0 ||
		*m.Message.Content != "Refunded 49.90 EUR for order O-1001 (refund rf-1) and replied to the customer (reply rp-1)." {
		t.Fatalf("turn 3: %+v", m)
	}
	ask() // turn 3 again
	if got := s.Counts().SupportModelTurns; got != [3]int{1, 1, 2} {
		t.Errorf("turns %v", got)
	}
}

// What a real model refuses, the stand-in refuses too.
func TestSupportModelRefuses(t *testing.T) {
	s := start(t)
	url := s.URL + "/support/v1/chat/completions"
	for name, body := range map[string]string{
		"unknown field":    `{"messages":[{"role":"user","content":"hi"}],"tools":` + tools + `,"frobnicate":1}`,
		"no tools":         `{"messages":[{"role":"user","content":"hi"}]}`,
		"orphan tool":      `{"messages":[{"role":"user","content":"hi"},{"role":"tool","tool_call_id":"x","content":"y"}],"tools":` + tools + `}`,
		"unanswered calls": `{"messages":[{"role":"user","content":"hi"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"lookup_order","arguments":"{}"}}]}],"tools":` + tools + `}`,
	} {
		if code, resp := do(t, "POST", url, "", body); code != 400 || !strings.Contains(resp, "invalid_request_error") {
			t.Errorf("%s: %d %s", name, code, resp)
		}
	}
}

// The helpdesk writes a reply once per key; payments applies every refund.
func TestRepliesOnceRefundsEvery(t *testing.T) {
	s := start(t)
	reply := `{"ticket_id":"T-1","body":"sorry"}`
	refund := `{"order_id":"O-1001","amount_cents":4990,"currency":"EUR","reason":"x"}`
	for range 2 {
		if code, _ := do(t, "POST", s.URL+"/helpdesk/replies", "k1", reply); code/100 != 2 {
			t.Fatal(code)
		}
		if code, _ := do(t, "POST", s.URL+"/payments/refunds", "k2", refund); code != 201 {
			t.Fatal(code)
		}
	}
	if code, _ := do(t, "POST", s.URL+"/helpdesk/replies", "", reply); code != 400 {
		t.Errorf("a reply without a key: %d", code)
	}
	c := s.Counts()
	if c.ReplyRequests != 3 || c.RepliesWritten != 1 || c.RefundRequests != 2 || c.RefundsApplied != 2 || c.RefundedCents != 9980 {
		t.Errorf("counts %+v", c)
	}
}

// A refund held before it is applied and abandoned by its client is never
// applied; the hold tells the test it was abandoned.
func TestHoldAbandoned(t *testing.T) {
	s := start(t)
	h := s.HoldAt(HoldRefund)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", s.URL+"/payments/refunds", bytes.NewReader([]byte(`{"order_id":"O-1001","amount_cents":1}`)))
	done := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-h.Arrived()
	cancel() // the caller dies: its connection closes
	<-h.Gone()
	h.Release()
	<-done
	if c := s.Counts(); c.RefundRequests != 1 || c.RefundsApplied != 0 {
		t.Errorf("counts %+v", c)
	}
	if code, body := do(t, "GET", s.URL+"/held?at=refund", "", ""); code != 200 || !strings.Contains(body, `"held":1`) {
		t.Errorf("held: %d %s", code, body)
	}
	if code, _ := do(t, "POST", s.URL+"/hold?at=nowhere", "", ""); code != 400 {
		t.Errorf("a bad hold point: %d", code)
	}
}
