package standins

// The support agent's services: a shop (orders and customers, read-only), a
// helpdesk that stores each reply once per Idempotency-Key, a payments
// service that applies every refund it is sent (it does not dedupe: a tool
// in front of it must be declared unsafe), and a scripted function-calling
// model that speaks OpenAI's chat-completions wire format.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sync"
)

// Order is what GET /shop/orders/{id} answers.
type Order struct {
	ID          string `json:"id"`
	Email       string `json:"customer_email"`
	AmountCents int    `json:"amount_cents"`
	Currency    string `json:"currency"`
	Status      string `json:"status"`
}

// Customer is what GET /shop/customers/{email} answers.
type Customer struct {
	Email  string   `json:"email"`
	Name   string   `json:"name"`
	Tier   string   `json:"tier"`
	Orders []string `json:"orders"`
}

// Orders and Customers are the shop's contents.
var (
	Orders = map[string]Order{
		"O-1001": {ID: "O-1001", Email: "ann@example.com", AmountCents: 4990, Currency: "EUR", Status: "delivered_damaged"},
		"O-1002": {ID: "O-1002", Email: "bob@example.com", AmountCents: 1250, Currency: "EUR", Status: "shipped"},
	}
	Customers = map[string]Customer{
		"ann@example.com": {Email: "ann@example.com", Name: "Ann Example", Tier: "gold", Orders: []string{"O-1001"}},
		"bob@example.com": {Email: "bob@example.com", Name: "Bob Example", Tier: "standard", Orders: []string{"O-1002"}},
	}
)

// SupportTurns is how many turns the scripted support model plays: two
// turns of tool calls and the final answer.
const SupportTurns = 3

// SupportModel is the model name the scripted support model answers as.
const SupportModel = "standin-support-1"

// HoldPoint names a place where the stand-ins can hold a request until
// released, so a test (or the demo) can kill the caller while the request
// is in flight.
type HoldPoint string

const (
	HoldOrder    HoldPoint = "order"    // GET /shop/orders/{id}
	HoldCustomer HoldPoint = "customer" // GET /shop/customers/{email}
	HoldReply    HoldPoint = "reply"    // POST /helpdesk/replies, before the reply is stored
	// HoldRefund holds a refund before it is applied; HoldRefundApplied
	// applies it, then holds the answer: the refund happened, but the
	// caller never hears of it.
	HoldRefund        HoldPoint = "refund"
	HoldRefundApplied HoldPoint = "refund_applied"
	HoldModelTurn1    HoldPoint = "model_turn_1" // the support model's turns, before answering
	HoldModelTurn2    HoldPoint = "model_turn_2"
	HoldModelTurn3    HoldPoint = "model_turn_3"
)

// HoldPoints lists every hold point.
func HoldPoints() []HoldPoint {
	return []HoldPoint{HoldOrder, HoldCustomer, HoldReply, HoldRefund, HoldRefundApplied, HoldModelTurn1, HoldModelTurn2, HoldModelTurn3}
}

func validHold(p HoldPoint) bool {
	for _, q := range HoldPoints() {
		if p == q {
			return true
		}
	}
	return false
}

// Hold is one hold point in force: every request reaching it waits until
// Release (or until its client goes away, in which case the request does
// nothing more).
type Hold struct {
	arrived chan struct{} // one value per request held
	gone    chan struct{} // one value per held request whose client went away
	release chan struct{}
	once    sync.Once
	mu      sync.Mutex
	n       int
}

// Arrived receives once for every request that reached the hold.
func (h *Hold) Arrived() <-chan struct{} { return h.arrived }

// Gone receives once for every held request whose client went away: after
// a kill, a test waits for it before Release, so that the request is not
// let through to a caller that is dead.
func (h *Hold) Gone() <-chan struct{} { return h.gone }

// Held is how many requests have reached the hold.
func (h *Hold) Held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n
}

// Release lets the held requests, and any that come later, through. It may
// be called more than once.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }

// HoldAt makes requests at p wait until the returned hold is released. A
// second HoldAt for the same point before Release replaces the first
// (releasing it).
func (s *Services) HoldAt(p HoldPoint) *Hold {
	h := &Hold{arrived: make(chan struct{}, 64), gone: make(chan struct{}, 64), release: make(chan struct{})}
	s.mu.Lock()
	old := s.holds[p]
	s.holds[p] = h
	s.mu.Unlock()
	if old != nil {
		old.Release()
	}
	return h
}

// Release releases the hold at p, if there is one.
func (s *Services) Release(p HoldPoint) {
	s.mu.Lock()
	h := s.holds[p]
	delete(s.holds, p)
	s.mu.Unlock()
	if h != nil {
		h.Release()
	}
}

// held returns how many requests reached the hold at p (0 without one).
func (s *Services) held(p HoldPoint) int {
	s.mu.Lock()
	h := s.holds[p]
	s.mu.Unlock()
	if h == nil {
		return 0
	}
	return h.Held()
}

// wait holds r at p if a hold is in force there, and reports whether the
// request should go on (false: its client went away while held).
func (s *Services) wait(r *http.Request, p HoldPoint) bool {
	s.mu.Lock()
	h := s.holds[p]
	s.mu.Unlock()
	if h == nil {
		return true
	}
	h.mu.Lock()
	h.n++
	h.mu.Unlock()
	select {
	case h.arrived <- struct{}{}:
	default:
	}
	select {
	case <-h.release:
		return true
	case <-r.Context().Done():
		select {
		case h.gone <- struct{}{}:
		default:
		}
		return false
	}
}

// holdHandler is HoldAt and Release over HTTP, for the demo:
// POST /hold?at=POINT, POST /release?at=POINT, GET /held?at=POINT.
func (s *Services) holdHandler(w http.ResponseWriter, r *http.Request) {
	p := HoldPoint(r.URL.Query().Get("at"))
	if !validHold(p) {
		http.Error(w, fmt.Sprintf("want ?at=POINT, one of %v", HoldPoints()), http.StatusBadRequest)
		return
	}
	switch r.URL.Path {
	case "/hold":
		s.HoldAt(p)
	case "/release":
		s.Release(p)
	}
	writeJSON(w, 200, map[string]any{"at": p, "held": s.held(p)})
}

func (s *Services) shopOrder(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.Shop++
	s.seen(r)
	s.mu.Unlock()
	if !s.wait(r, HoldOrder) {
		return
	}
	o, ok := Orders[r.PathValue("id")]
	if !ok {
		http.Error(w, "no such order", http.StatusNotFound)
		return
	}
	writeJSON(w, 200, o)
}

func (s *Services) shopCustomer(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.Shop++
	s.seen(r)
	s.mu.Unlock()
	if !s.wait(r, HoldCustomer) {
		return
	}
	c, ok := Customers[r.PathValue("email")]
	if !ok {
		http.Error(w, "no such customer", http.StatusNotFound)
		return
	}
	writeJSON(w, 200, c)
}

// reply is a helpdesk reply as POST /helpdesk/replies takes it.
type reply struct {
	TicketID string `json:"ticket_id"`
	Body     string `json:"body"`
}

// replies stores a reply once per Idempotency-Key: a repeated key gets the
// stored answer back and writes nothing. A reply without a key is refused,
// so nothing can write one twice by accident.
func (s *Services) replies(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	s.counts.ReplyRequests++
	s.seen(r)
	s.mu.Unlock()
	if !s.wait(r, HoldReply) {
		return
	}
	var rep reply
	if err := strictDecode(body, &rep); err != nil || rep.TicketID == "" || rep.Body == "" {
		http.Error(w, `want {"ticket_id", "body"}, both non-empty`, http.StatusBadRequest)
		return
	}
	if key == "" {
		http.Error(w, "an Idempotency-Key header is required", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if prev, ok := s.replyKeys[key]; ok {
		writeJSONLocked(w, 200, prev)
		return
	}
	s.counts.RepliesWritten++
	resp, _ := json.Marshal(map[string]any{"reply_id": fmt.Sprintf("rp-%d", s.counts.RepliesWritten), "ticket_id": rep.TicketID})
	s.replyKeys[key] = resp
	writeJSONLocked(w, 201, resp)
}

// refund is a refund as POST /payments/refunds takes it.
type refund struct {
	OrderID     string `json:"order_id"`
	AmountCents int    `json:"amount_cents"`
	Currency    string `json:"currency"`
	Reason      string `json:"reason"`
}

// refunds applies every refund it is sent, key or no key: it is the kind
// of service a tool must declare unsafe.
func (s *Services) refunds(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.counts.RefundRequests++
	s.seen(r)
	s.mu.Unlock()
	if !s.wait(r, HoldRefund) {
		return
	}
	var rf refund
	if err := strictDecode(body, &rf); err != nil || rf.OrderID == "" || rf.AmountCents <= 0 {
		http.Error(w, `want {"order_id", "amount_cents" > 0, "currency", "reason"}`, http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.counts.RefundsApplied++
	s.counts.RefundedCents += rf.AmountCents
	resp, _ := json.Marshal(map[string]any{"refund_id": fmt.Sprintf("rf-%d", s.counts.RefundsApplied), "status": "applied"})
	s.mu.Unlock()
	if !s.wait(r, HoldRefundApplied) {
		return
	}
	writeJSONLocked(w, 201, resp)
}

func strictDecode(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// The chat-completions request as the support model reads it; unknown
// fields are refused, as OpenAI refuses them.
type chatRequest struct {
	Model             string        `json:"model"`
	Messages          []chatMessage `json:"messages"`
	Tools             []chatTool    `json:"tools"`
	ToolChoice        any           `json:"tool_choice"`
	ParallelToolCalls *bool         `json:"parallel_tool_calls"`
	Temperature       *float64      `json:"temperature"`
	TopP              *float64      `json:"top_p"`
	MaxTokens         int           `json:"max_tokens"`
	MaxCompletion     int           `json:"max_completion_tokens"`
	Stop              any           `json:"stop"`
	Seed              *int64        `json:"seed"`
	ResponseFormat    any           `json:"response_format"`
}

type chatMessage struct {
	Role       string     `json:"role"`
	Content    *string    `json:"content"`
	ToolCalls  []chatCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
	Name       string     `json:"name,omitempty"`
}

type chatTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

type chatCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

// supportFunctions are the functions the support model expects to be
// offered; it calls no other.
var supportFunctions = []string{"lookup_order", "lookup_customer", "post_reply", "issue_refund"}

var (
	reOrderID = regexp.MustCompile(`\border ([A-Z]-\d+)`)
	reEmail   = regexp.MustCompile(`[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[a-z]{2,}`)
	reTicket  = regexp.MustCompile(`\bTicket ([A-Z]+-\d+)`)
)

// openAIError answers as OpenAI does when it refuses a request.
func openAIError(w http.ResponseWriter, msg string) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
		"message": msg, "type": "invalid_request_error", "param": nil, "code": nil}})
}

// supportModel is the scripted model of the support agent. It decides its
// turn from the conversation it is sent (the assistant messages so far):
// turn 1 looks up the order and the customer at once; turn 2, from their
// results, posts a reply and issues the refund at once; turn 3 answers.
func (s *Services) supportModel(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	s.mu.Lock()
	s.counts.SupportModel++
	s.seen(r)
	s.mu.Unlock()
	var req chatRequest
	if err := strictDecode(body, &req); err != nil {
		openAIError(w, "invalid request: "+err.Error())
		return
	}
	turn, err := checkConversation(req)
	if err != nil {
		openAIError(w, err.Error())
		return
	}
	s.mu.Lock()
	s.counts.SupportModelTurns[turn-1]++
	s.mu.Unlock()
	if !s.wait(r, [...]HoldPoint{HoldModelTurn1, HoldModelTurn2, HoldModelTurn3}[turn-1]) {
		return
	}
	content, calls, err := supportTurn(turn, req.Messages)
	if err != nil {
		openAIError(w, err.Error())
		return
	}
	msg := map[string]any{"role": "assistant", "content": nil}
	finish := "tool_calls"
	if len(calls) > 0 {
		msg["tool_calls"] = calls
	} else {
		msg["content"], finish = content, "stop"
	}
	answer, _ := json.Marshal(msg)
	prompt, completion := len(body)/4, len(answer)/4
	s.mu.Lock()
	s.counts.SupportModelTokens += prompt + completion
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{
		"id": fmt.Sprintf("chatcmpl-support-%d", turn), "object": "chat.completion", "created": 1764633600,
		"model": SupportModel, "system_fingerprint": "fp_standin",
		"choices": []any{map[string]any{"index": 0, "message": json.RawMessage(answer), "logprobs": nil, "finish_reason": finish}},
		"usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
			"prompt_tokens_details": map[string]int{"cached_tokens": 0}},
	})
}

// checkConversation checks what a real model would refuse (a tool message
// that answers no call, a call left unanswered, functions missing) and
// returns the turn this request asks for.
func checkConversation(req chatRequest) (int, error) {
	if len(req.Messages) == 0 {
		return 0, fmt.Errorf("messages: must not be empty")
	}
	offered := map[string]bool{}
	for _, t := range req.Tools {
		if t.Type != "function" {
			return 0, fmt.Errorf("tools: type %q, want function", t.Type)
		}
		offered[t.Function.Name] = true
	}
	for _, f := range supportFunctions {
		if !offered[f] {
			return 0, fmt.Errorf("tools: the support model expects a function named %s", f)
		}
	}
	turn := 1
	pending := map[string]bool{} // tool calls not yet answered
	for i, m := range req.Messages {
		switch m.Role {
		case "system", "user":
			if len(pending) > 0 {
				return 0, fmt.Errorf("messages[%d]: tool calls %v were not answered", i, keys(pending))
			}
		case "assistant":
			if len(pending) > 0 {
				return 0, fmt.Errorf("messages[%d]: tool calls %v were not answered", i, keys(pending))
			}
			for _, c := range m.ToolCalls {
				if c.Type != "function" || c.ID == "" || !json.Valid([]byte(c.Function.Arguments)) {
					return 0, fmt.Errorf("messages[%d].tool_calls: want id, type function and arguments as JSON text", i)
				}
				pending[c.ID] = true
			}
			turn++
		case "tool":
			if !pending[m.ToolCallID] {
				return 0, fmt.Errorf("messages[%d]: tool_call_id %q answers no tool call of the assistant message before it", i, m.ToolCallID)
			}
			delete(pending, m.ToolCallID)
		default:
			return 0, fmt.Errorf("messages[%d].role: %q", i, m.Role)
		}
	}
	if len(pending) > 0 {
		return 0, fmt.Errorf("tool calls %v were not answered", keys(pending))
	}
	if turn > SupportTurns {
		return 0, fmt.Errorf("the scripted support model plays %d turns; this is turn %d", SupportTurns, turn)
	}
	return turn, nil
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// supportTurn plays one turn: the final answer's text, or the tool calls.
func supportTurn(turn int, msgs []chatMessage) (string, []chatCall, error) {
	var ticket string
	for _, m := range msgs {
		if m.Role == "user" && m.Content != nil {
			ticket = *m.Content
			break
		}
	}
	switch turn {
	case 1:
		order, email := reOrderID.FindStringSubmatch(ticket), reEmail.FindString(ticket)
		if order == nil || email == "" {
			return "I need the order number and your email address to help.", nil, nil
		}
		return "", []chatCall{
			call(turn, 1, "lookup_order", map[string]string{"order_id": order[1]}),
			call(turn, 2, "lookup_customer", map[string]string{"email": email}),
		}, nil
	case 2:
		var o Order
		var c Customer
		if err := json.Unmarshal([]byte(toolResult(msgs, call(1, 1, "", nil).ID)), &o); err != nil || o.ID == "" {
			return "I could not find your order; a colleague will get back to you.", nil, nil
		}
		if err := json.Unmarshal([]byte(toolResult(msgs, call(1, 2, "", nil).ID)), &c); err != nil || c.Name == "" {
			c.Name = "there"
		}
		ticketID := "unknown"
		if m := reTicket.FindStringSubmatch(ticket); m != nil {
			ticketID = m[1]
		}
		text := fmt.Sprintf("Hello %s, we are sorry order %s arrived damaged. We have refunded %s %s to your card.",
			c.Name, o.ID, money(o.AmountCents), o.Currency)
		return "", []chatCall{
			call(turn, 1, "post_reply", map[string]string{"ticket_id": ticketID, "body": text}),
			call(turn, 2, "issue_refund", map[string]any{"order_id": o.ID, "amount_cents": o.AmountCents, "currency": o.Currency, "reason": "damaged in transit"}),
		}, nil
	default:
		var o Order
		_ = json.Unmarshal([]byte(toolResult(msgs, call(1, 1, "", nil).ID)), &o)
		var rep struct {
			ReplyID string `json:"reply_id"`
		}
		var ref struct {
			RefundID string `json:"refund_id"`
		}
		repText, refText := toolResult(msgs, call(2, 1, "", nil).ID), toolResult(msgs, call(2, 2, "", nil).ID)
		if json.Unmarshal([]byte(repText), &rep) != nil || json.Unmarshal([]byte(refText), &ref) != nil || rep.ReplyID == "" || ref.RefundID == "" {
			return "Something went wrong; a colleague will follow up. Reply: " + repText + "; refund: " + refText, nil, nil
		}
		return fmt.Sprintf("Refunded %s %s for order %s (refund %s) and replied to the customer (reply %s).",
			money(o.AmountCents), o.Currency, o.ID, ref.RefundID, rep.ReplyID), nil, nil
	}
}

// call builds the tool call with a deterministic ID: call_T_N for the Nth
// call of turn T (a real model's IDs are random; these make tests simple).
func call(turn, n int, name string, args any) chatCall {
	var c chatCall
	c.ID, c.Type = fmt.Sprintf("call_%d_%d", turn, n), "function"
	c.Function.Name = name
	if args != nil {
		b, _ := json.Marshal(args)
		c.Function.Arguments = string(b)
	}
	return c
}

// toolResult returns the content of the tool message answering id.
func toolResult(msgs []chatMessage, id string) string {
	for _, m := range msgs {
		if m.Role == "tool" && m.ToolCallID == id && m.Content != nil {
			return *m.Content
		}
	}
	return ""
}

func money(cents int) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }
