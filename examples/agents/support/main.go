// Command support is a function-calling support agent: it reads a ticket,
// lets the model look up the order and the customer (both at once), reply
// to the ticket and refund the order (both at once), and outputs the
// model's final answer. Input:
//
//	{"ticket_id": "T-1", "order_id": "O-1001", "email": "ann@example.com", "text": "...",
//	 "shop_url": "...", "helpdesk_url": "...", "payments_url": "..."}
//
// Output: {"answer": "...", "steps": 3, "usage": {"prompt_tokens": ..., "completion_tokens": ...}}
//
// The tools: lookup_order and lookup_customer are GETs through the http
// tool; post_reply is a POST through the http tool, which the helpdesk
// dedupes by the Idempotency-Key every call carries; issue_refund is a POST
// through the tool named payments, which the node declares unsafe
// (`orlojd serve --http-tool payments:unsafe`), since the payments service
// applies every refund it is sent. The model is the node's endpoint named
// "support" (`--model-endpoints '[{"name":"support",...}]'`).
//
// Every model turn and tool call goes through the ledger: a task killed
// mid-loop replays the finished turns and calls and continues; a refund
// that may have been sent when the node died sends the task to the DLQ as
// in_doubt instead of refunding twice.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"

	"github.com/orloj/orloj/sdk/orloj"
	"github.com/orloj/orloj/sdk/orloj/agent"
)

type ticket struct {
	TicketID    string `json:"ticket_id"`
	OrderID     string `json:"order_id"`
	Email       string `json:"email"`
	Text        string `json:"text"`
	ShopURL     string `json:"shop_url"`
	HelpdeskURL string `json:"helpdesk_url"`
	PaymentsURL string `json:"payments_url"`
}

type output struct {
	Answer string      `json:"answer"`
	Steps  int         `json:"steps"`
	Usage  agent.Usage `json:"usage"`
}

// httpRequest is the params of the http tool, and of payments, an http
// tool too.
type httpRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// reply is post_reply's arguments and the helpdesk's body.
type reply struct {
	TicketID string `json:"ticket_id"`
	Body     string `json:"body"`
}

// refund is issue_refund's arguments and the payments service's body.
type refund struct {
	OrderID     string `json:"order_id"`
	AmountCents int    `json:"amount_cents"`
	Currency    string `json:"currency"`
	Reason      string `json:"reason"`
}

// Endpoint is the node's model endpoint the agent asks.
const Endpoint = "support"

const system = "You are the support agent of a web shop. Look up the order and the customer first, both at once. " +
	"If the order arrived damaged, refund it in full and reply to the ticket, both at once. Then say in one sentence what you did."

var _ = orloj.Prepare(ticket{}, output{}, httpRequest{}, reply{}, refund{})

func main() { orloj.Main(run) }

func run() error {
	var t ticket
	if err := orloj.DecodeInput(&t); err != nil {
		return err
	}
	if t.TicketID == "" || t.OrderID == "" || t.ShopURL == "" || t.HelpdeskURL == "" || t.PaymentsURL == "" {
		return errors.New("input: ticket_id, order_id, shop_url, helpdesk_url and payments_url are required")
	}
	a := &agent.Agent{Endpoint: Endpoint, System: system, MaxSteps: 6, Tools: []agent.Tool{
		lookup("lookup_order", "Look an order up by its ID.", "order_id", t.ShopURL+"/orders/"),
		lookup("lookup_customer", "Look a customer up by email address.", "email", t.ShopURL+"/customers/"),
		{Name: "post_reply", Description: "Reply to the ticket; the customer reads the body.",
			Parameters: schema(`"ticket_id":{"type":"string"},"body":{"type":"string"}`, "ticket_id", "body"),
			Request: func(args json.RawMessage) (orloj.Request, error) {
				var r reply
				if err := json.Unmarshal(args, &r); err != nil || r.TicketID != t.TicketID || r.Body == "" {
					return orloj.Request{}, fmt.Errorf("want a non-empty body for ticket %s", t.TicketID)
				}
				b, _ := json.Marshal(r)
				return post("http", t.HelpdeskURL+"/replies", b), nil
			}, Result: body},
		{Name: "issue_refund", Description: "Refund an order to the customer's card.",
			Parameters: schema(`"order_id":{"type":"string"},"amount_cents":{"type":"integer"},"currency":{"type":"string"},"reason":{"type":"string"}`,
				"order_id", "amount_cents", "currency", "reason"),
			Request: func(args json.RawMessage) (orloj.Request, error) {
				var r refund
				// A guardrail the model cannot talk its way past: only the ticket's order.
				if err := json.Unmarshal(args, &r); err != nil || r.OrderID != t.OrderID || r.AmountCents <= 0 {
					return orloj.Request{}, fmt.Errorf("only order %s may be refunded, by a positive amount_cents", t.OrderID)
				}
				b, _ := json.Marshal(r)
				return post("payments", t.PaymentsURL+"/refunds", b), nil
			}, Result: body},
	}}
	res, err := a.Run(fmt.Sprintf("Ticket %s from %s about order %s:\n%s", t.TicketID, t.Email, t.OrderID, t.Text))
	if err != nil {
		return err
	}
	orloj.Logf("support: ticket %s answered in %d turns", t.TicketID, res.Steps)
	return orloj.Output(output{Answer: res.Content, Steps: res.Steps, Usage: res.Usage})
}

// lookup is a read-only tool: GET base + the one argument, escaped.
func lookup(name, desc, arg, base string) agent.Tool {
	return agent.Tool{Name: name, Description: desc, Parameters: schema(fmt.Sprintf(`%q:{"type":"string"}`, arg), arg), Result: body,
		Request: func(args json.RawMessage) (orloj.Request, error) {
			var a map[string]string
			if err := json.Unmarshal(args, &a); err != nil || a[arg] == "" {
				return orloj.Request{}, fmt.Errorf("want {%q: string}", arg)
			}
			return orloj.Request{Tool: "http", Params: httpRequest{Method: "GET", URL: base + url.PathEscape(a[arg])}}, nil
		}}
}

func post(tool, url string, body []byte) orloj.Request {
	return orloj.Request{Tool: tool, Params: httpRequest{Method: "POST", URL: url,
		Headers: map[string]string{"Content-Type": "application/json"}, Body: string(body)}}
}

func schema(props string, required ...string) json.RawMessage {
	req, _ := json.Marshal(required)
	return json.RawMessage(`{"type":"object","properties":{` + props + `},"required":` + string(req) + `}`)
}

// body gives the model the service's answer, without the HTTP envelope.
func body(result json.RawMessage) (string, error) {
	var r struct{ Body string }
	err := json.Unmarshal(result, &r)
	return r.Body, err
}
