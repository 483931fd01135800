//go:build !wasip1

package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/sdk/orloj"
)

// Tests install a process-wide orloj.Fake, so none of them is parallel.

var good = ticket{TicketID: "T-7", OrderID: "O-1001", Email: "ann@example.com", Text: "My mug arrived broken.",
	ShopURL: "https://shop.example.com/api", HelpdeskURL: "https://help.example.com/api", PaymentsURL: "https://pay.example.com/v1"}

const (
	order    = `{"id":"O-1001","customer_email":"ann@example.com","amount_cents":4990,"currency":"EUR","status":"delivered_damaged"}`
	customer = `{"email":"ann@example.com","name":"Ann"}`
)

// turn answers a model call with tool calls (name, arguments pairs) or,
// with none, the final answer.
func turn(content string, calls ...string) json.RawMessage {
	var tc []map[string]any
	for i := 0; i+1 < len(calls); i += 2 {
		tc = append(tc, map[string]any{"id": "c" + calls[i], "type": "function",
			"function": map[string]string{"name": calls[i], "arguments": calls[i+1]}})
	}
	b, _ := json.Marshal(map[string]any{"content": content, "tool_calls": tc,
		"usage": map[string]int{"prompt_tokens": 100, "completion_tokens": 20}})
	return b
}

// world plays the model (scripted turns, chosen by the assistant messages
// so far), the shop, the helpdesk and payments.
type world struct {
	turns     []json.RawMessage
	refundErr error
	seen      []json.RawMessage // model params, in order
}

func (w *world) install(t *testing.T, in any) *orloj.Fake {
	f := orloj.NewFake().SetInput(in)
	f.Handle("model", func(p json.RawMessage) (any, error) {
		w.seen = append(w.seen, p)
		var req struct{ Messages []struct{ Role string } }
		if err := json.Unmarshal(p, &req); err != nil {
			return nil, err
		}
		n := 0
		for _, m := range req.Messages {
			if m.Role == "assistant" {
				n++
			}
		}
		if n >= len(w.turns) {
			return nil, abi.Errorf(abi.StatusToolError, "no turn %d scripted", n+1)
		}
		return w.turns[n], nil
	})
	f.Handle("http", func(p json.RawMessage) (any, error) {
		var r httpRequest
		_ = json.Unmarshal(p, &r)
		switch {
		case r.Method == "GET" && r.URL == good.ShopURL+"/orders/O-1001":
			return map[string]any{"status": 200, "body": order}, nil
		case r.Method == "GET" && r.URL == good.ShopURL+"/customers/ann@example.com":
			return map[string]any{"status": 200, "body": customer}, nil
		case r.Method == "POST" && r.URL == good.HelpdeskURL+"/replies":
			return map[string]any{"status": 201, "body": `{"reply_id":"rp-1"}`}, nil
		}
		return nil, abi.Errorf(abi.StatusToolError, "%s %s: 404", r.Method, r.URL)
	})
	f.Handle("payments", func(p json.RawMessage) (any, error) {
		if w.refundErr != nil {
			return nil, w.refundErr
		}
		return map[string]any{"status": 201, "body": `{"refund_id":"rf-1"}`}, nil
	})
	t.Cleanup(f.Install())
	return f
}

const (
	lookups = `{"order_id":"O-1001"}`
	refund1 = `{"order_id":"O-1001","amount_cents":4990,"currency":"EUR","reason":"damaged"}`
	reply1  = `{"ticket_id":"T-7","body":"Sorry, refunded."}`
)

func goodTurns() []json.RawMessage {
	return []json.RawMessage{
		turn("", "lookup_order", lookups, "lookup_customer", `{"email":"ann@example.com"}`),
		turn("", "post_reply", reply1, "issue_refund", refund1),
		turn("Refunded O-1001 and replied."),
	}
}

// The happy path: three turns, two calls at once in each of the first two,
// the refund through the payments tool with the body the model asked for.
func TestSupport(t *testing.T) {
	w := &world{turns: goodTurns()}
	f := w.install(t, good)
	if err := run(); err != nil {
		t.Fatal(err)
	}
	var out output
	if err := json.Unmarshal(f.Output(), &out); err != nil {
		t.Fatal(err)
	}
	if out.Answer != "Refunded O-1001 and replied." || out.Steps != 3 || out.Usage.PromptTokens != 300 || out.Usage.CompletionTokens != 60 {
		t.Errorf("output %s", f.Output())
	}
	var tools []string
	for _, c := range f.Calls() {
		tools = append(tools, c.Tool)
	}
	if got := strings.Join(tools, ","); got != "model,http,http,model,http,payments,model" {
		t.Errorf("calls %s", got)
	}
	var refund httpRequest
	_ = json.Unmarshal(f.CallsTo("payments")[0].Params, &refund)
	if refund.Method != "POST" || refund.URL != good.PaymentsURL+"/refunds" ||
		refund.Body != `{"order_id":"O-1001","amount_cents":4990,"currency":"EUR","reason":"damaged"}` {
		t.Errorf("refund call %+v", refund)
	}
	// The model read the shop's answers, not the HTTP envelope.
	quoted := func(s string) string { b, _ := json.Marshal(s); return `"content":` + string(b) }
	if s := string(w.seen[1]); !strings.Contains(s, quoted(order)) || !strings.Contains(s, quoted(customer)) ||
		!strings.Contains(s, "Ticket T-7 from ann@example.com about order O-1001") {
		t.Errorf("turn 2 was sent %s", s)
	}
}

// A refund of another order never reaches payments: the model is told.
func TestSupportRefundGuardrail(t *testing.T) {
	w := &world{turns: goodTurns()}
	w.turns[1] = turn("", "post_reply", reply1, "issue_refund", `{"order_id":"O-9","amount_cents":100000,"currency":"EUR","reason":"x"}`)
	f := w.install(t, good)
	if err := run(); err != nil {
		t.Fatal(err)
	}
	if n := len(f.CallsTo("payments")); n != 0 {
		t.Errorf("%d payments calls, want 0", n)
	}
	if !strings.Contains(string(w.seen[2]), "only order O-1001 may be refunded") {
		t.Errorf("turn 3 was not told: %s", w.seen[2])
	}
}

// A refund in doubt ends the attempt (the host dead-letters it), and the
// model is not asked again.
func TestSupportRefundInDoubt(t *testing.T) {
	w := &world{turns: goodTurns(), refundErr: abi.Errorf(abi.StatusInDoubt, "payments may have applied it")}
	f := w.install(t, good)
	err := run()
	if !errors.Is(err, orloj.ErrInDoubt) || len(w.seen) != 2 || f.Output() != nil {
		t.Fatalf("err %v after %d model calls, output %s", err, len(w.seen), f.Output())
	}
}

func TestSupportNeedsURLs(t *testing.T) {
	w := &world{turns: goodTurns()}
	in := good
	in.PaymentsURL = ""
	f := w.install(t, in)
	if err := run(); err == nil || !strings.Contains(err.Error(), "required") || len(f.Calls()) != 0 {
		t.Fatalf("err %v, %d calls", err, len(f.Calls()))
	}
}
