// Package standins serves local stand-ins for the external services the
// example agents use — a blob store, OCR, an OpenAI-compatible model and a
// records database for the document pipeline; a shop, a helpdesk, payments
// and a scripted function-calling model for the support agent — on one
// loopback HTTP server that counts every request
// and every effect by Idempotency-Key. Tests, the demo and the fault
// harness use it to prove that effects happen once.
package standins

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// Documents the blob store serves at /blobs/NAME.
var Documents = map[string]string{
	"invoice-1.txt": "INVOICE\nVendor: ACME Tools GmbH\nTotal: 1249.50 EUR\nDate: 2026-11-02\n",
	"invoice-2.txt": "INVOICE\nVendor: Globex Ltd\nTotal: 87.00 GBP\nDate: 2026-10-30\n",
	// poison.txt has no date: the extracted fields fail validation.
	"poison.txt": "INVOICE\nVendor: Initech\nTotal: 12.00 USD\n",
}

// Counts is a snapshot of what the services received.
type Counts struct {
	Blob, OCR, Model, Records int // requests
	RecordEffects             int // records actually written (deduplicated by key)
	ModelTokens               int // tokens "spent"
	DuplicateKeys             int // requests that repeated an Idempotency-Key already applied

	// The support agent's services.
	Shop           int // order and customer lookups
	ReplyRequests  int
	RepliesWritten int // helpdesk replies stored (deduplicated by key)
	RefundRequests int
	RefundsApplied int // every refund applied: payments does not dedupe
	RefundedCents  int
	SupportModel   int // requests to the support model
	// SupportModelTurns counts the support model's requests per turn
	// (turn 1 first): a turn answered once and replayed stays at 1.
	SupportModelTurns  [SupportTurns]int
	SupportModelTokens int
}

// Services is the running stand-in server.
type Services struct {
	URL string // http://127.0.0.1:PORT

	srv *http.Server
	ln  net.Listener

	mu          sync.Mutex
	counts      Counts
	failRecords int                        // next N record writes answer 503
	recordKeys  map[string]json.RawMessage // Idempotency-Key → stored record response
	keysSeen    map[string]int             // every Idempotency-Key, all endpoints
	replyKeys   map[string]json.RawMessage // Idempotency-Key → stored reply answer
	holds       map[HoldPoint]*Hold
}

// Start listens on 127.0.0.1 (addr "" picks a free port).
func Start(addr string) (*Services, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("stand-ins: listen %s: %w", addr, err)
	}
	s := &Services{URL: "http://" + ln.Addr().String(), ln: ln,
		recordKeys: map[string]json.RawMessage{}, keysSeen: map[string]int{},
		replyKeys: map[string]json.RawMessage{}, holds: map[HoldPoint]*Hold{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /blobs/{name}", s.blob)
	mux.HandleFunc("POST /ocr", s.ocr)
	mux.HandleFunc("POST /v1/chat/completions", s.model)
	mux.HandleFunc("POST /records", s.records)
	mux.HandleFunc("POST /notify", s.notify)
	mux.HandleFunc("GET /counts", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, 200, s.Counts()) })
	mux.HandleFunc("POST /fail-records", s.failRecordsHandler)
	mux.HandleFunc("GET /shop/orders/{id}", s.shopOrder)
	mux.HandleFunc("GET /shop/customers/{email}", s.shopCustomer)
	mux.HandleFunc("POST /helpdesk/replies", s.replies)
	mux.HandleFunc("POST /payments/refunds", s.refunds)
	mux.HandleFunc("POST /support/v1/chat/completions", s.supportModel)
	mux.HandleFunc("POST /hold", s.holdHandler)
	mux.HandleFunc("POST /release", s.holdHandler)
	mux.HandleFunc("GET /held", s.holdHandler)
	s.srv = &http.Server{Handler: mux}
	go s.srv.Serve(ln)
	return s, nil
}

// Close stops the server, releasing every hold first.
func (s *Services) Close() error {
	s.mu.Lock()
	for p, h := range s.holds {
		h.Release()
		delete(s.holds, p)
	}
	s.mu.Unlock()
	return s.srv.Close()
}

// FailNextRecords makes the next n record writes answer 503.
func (s *Services) FailNextRecords(n int) {
	s.mu.Lock()
	s.failRecords = n
	s.mu.Unlock()
}

// failRecordsHandler is FailNextRecords over HTTP, for the demo, which runs
// the stand-ins in another process: POST /fail-records?n=2.
func (s *Services) failRecordsHandler(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 {
		http.Error(w, "want ?n=COUNT, a whole number >= 0", http.StatusBadRequest)
		return
	}
	s.FailNextRecords(n)
	writeJSON(w, 200, map[string]int{"fail_next_records": n})
}

// Counts returns what the services have seen so far.
func (s *Services) Counts() Counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts
}

// KeysSeen returns how many requests carried each Idempotency-Key.
func (s *Services) KeysSeen() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.keysSeen))
	for k, v := range s.keysSeen {
		out[k] = v
	}
	return out
}

func (s *Services) seen(r *http.Request) {
	if k := r.Header.Get("Idempotency-Key"); k != "" {
		s.keysSeen[k]++
	}
}

func (s *Services) blob(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.Blob++
	s.seen(r)
	s.mu.Unlock()
	doc, ok := Documents[r.PathValue("name")]
	if !ok {
		http.Error(w, "no such blob", http.StatusNotFound)
		return
	}
	io.WriteString(w, doc)
}

func (s *Services) ocr(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.counts.OCR++
	s.seen(r)
	s.mu.Unlock()
	b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	// The "scan" is already text: OCR upper-cases nothing and returns it.
	io.WriteString(w, string(b))
}

var (
	reVendor = regexp.MustCompile(`Vendor: (.+)`)
	reTotal  = regexp.MustCompile(`Total: ([0-9.]+) ([A-Z]{3})`)
	reDate   = regexp.MustCompile(`Date: (\d{4}-\d{2}-\d{2})`)
)

func (s *Services) model(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []struct{ Role, Content string } `json:"messages"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil || len(req.Messages) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	system, user := req.Messages[0].Content, req.Messages[len(req.Messages)-1].Content
	var answer string
	switch {
	case strings.Contains(strings.ToLower(system), "classify"):
		answer = "invoice"
	default:
		f := map[string]any{}
		if m := reVendor.FindStringSubmatch(user); m != nil {
			f["vendor"] = strings.TrimSpace(m[1])
		}
		if m := reTotal.FindStringSubmatch(user); m != nil {
			var total float64
			fmt.Sscanf(m[1], "%g", &total)
			f["total"], f["currency"] = total, m[2]
		}
		if m := reDate.FindStringSubmatch(user); m != nil {
			f["date"] = m[1]
		}
		b, _ := json.Marshal(f)
		answer = "```json\n" + string(b) + "\n```"
	}
	prompt, completion := len(system+user)/4, len(answer)/4
	s.mu.Lock()
	s.counts.Model++
	s.counts.ModelTokens += prompt + completion
	s.seen(r)
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{
		"id": "chatcmpl-standin", "object": "chat.completion", "model": "standin-1",
		"choices": []any{map[string]any{"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": answer}}},
		"usage": map[string]any{"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion},
	})
}

// records stores a record once per Idempotency-Key: a repeated key gets the
// stored answer back and writes nothing.
func (s *Services) records(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	key := r.Header.Get("Idempotency-Key")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts.Records++
	s.seen(r)
	if s.failRecords > 0 {
		s.failRecords--
		http.Error(w, "records database unavailable", http.StatusServiceUnavailable)
		return
	}
	if prev, ok := s.recordKeys[key]; ok && key != "" {
		s.counts.DuplicateKeys++
		writeJSONLocked(w, 200, prev)
		return
	}
	if !json.Valid(body) {
		http.Error(w, "record is not JSON", http.StatusBadRequest)
		return
	}
	s.counts.RecordEffects++
	resp, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("rec-%d", s.counts.RecordEffects)})
	if key != "" {
		s.recordKeys[key] = resp
	}
	writeJSONLocked(w, 201, resp)
}

func (s *Services) notify(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen(r)
	s.mu.Unlock()
	writeJSON(w, 200, map[string]any{"ok": true})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v)
	writeJSONLocked(w, status, b)
}

func writeJSONLocked(w http.ResponseWriter, status int, b []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(b)
}
