// Command docpipeline is the six-step document pipeline of Orloj's problem
// statement: fetch a document from the blob store, OCR it, classify it with a
// model, extract its fields with a model, validate them, and post the record
// to the records service. Input:
//
//	{"document": "<blob URL>", "ocr_url": "...", "records_url": "..."}
//
// Output:
//
//	{"class": "invoice", "fields": {...}, "record": <records service answer>}
//
// Every step but validation is a tool call, so the host records it: when the
// records service is down (step 6 answers 5xx) the attempt exits 75, and the
// retry replays steps 1 to 4 from the ledger (no second OCR bill, no second
// model call) and only repeats step 6. Fields that fail validation are a
// permanent error: the model's answer is recorded too, so a retry would see
// the same answer and fail the same way. The task goes to the DLQ instead.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"

	"github.com/orloj/orloj/sdk/orloj"
)

// input is the task input.
type input struct {
	Document   string `json:"document"`
	OCRURL     string `json:"ocr_url"`
	RecordsURL string `json:"records_url"`
}

// fields is what step 4 extracts and step 5 validates.
type fields struct {
	Vendor   string  `json:"vendor"`
	Total    float64 `json:"total"`
	Currency string  `json:"currency"`
	Date     string  `json:"date"`
}

// record is what step 6 posts to the records service.
type record struct {
	Document string `json:"document"`
	Class    string `json:"class"`
	Fields   fields `json:"fields"`
}

// output is the task output.
type output struct {
	Class  string `json:"class"`
	Fields fields `json:"fields"`
	// Record is the records service's answer: parsed JSON when it is JSON,
	// else the body as a string.
	Record any `json:"record"`
}

// The http tool's params and result.
type httpRequest struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

type httpResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// The model tool's params and result (an OpenAI-style chat completion).
type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type modelRequest struct {
	Messages []message `json:"messages"`
	// Temperature 0 keeps answers as repeatable as the model allows; replay
	// does not depend on it, since the host records the answer.
	Temperature float64 `json:"temperature"`
}

type modelResponse struct {
	Content string `json:"content"`
	Usage   struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

const classifyPrompt = "Classify the document whose text follows. " +
	"Answer with one lowercase word: invoice, receipt, contract or other."

// extractPrompt takes the class from step 3.
const extractPrompt = "Extract the fields of this %s as a JSON object with exactly these members: " +
	`"vendor" (string), "total" (number), "currency" (ISO 4217 code, e.g. "EUR"), "date" (YYYY-MM-DD). ` +
	"Answer with the JSON object only."

// defaultDate, when set at link time, stands in for a date the document does
// not have:
//
//	go build -ldflags "-X main.defaultDate=2026-11-01"
//
// It is the "fixed version" of the demo: documents without a date dead-letter
// under the plain build, and a build with a default finishes them by a DLQ
// retry, the earlier steps replayed from the ledger. A string, not a flag or
// an input member, because -X sets only strings and because a new module
// version is how an agent's behaviour changes for tasks already submitted.
var defaultDate string

// errInvalidFields marks a step 5 failure: the extracted fields do not match
// the schema. It is permanent; see the package doc.
var errInvalidFields = errors.New("extracted fields do not match the schema")

// encoding/json learns these once per agent version; see orloj.Prepare.
var _ = orloj.Prepare(input{}, fields{}, record{}, output{}, httpRequest{}, httpResponse{}, modelRequest{}, modelResponse{})

func main() { orloj.Main(run) }

func run() error {
	var in input
	if err := orloj.DecodeInput(&in); err != nil {
		return err
	}
	if in.Document == "" || in.OCRURL == "" || in.RecordsURL == "" {
		return errors.New("input: document, ocr_url and records_url are required")
	}

	doc, err := fetch(in.Document)
	if err != nil {
		return fmt.Errorf("step 1 fetch: %w", err)
	}
	orloj.Logf("1/6 fetch: %d bytes from %s", len(doc), in.Document)

	text, err := ocr(in.OCRURL, doc)
	if err != nil {
		return fmt.Errorf("step 2 ocr: %w", err)
	}
	orloj.Logf("2/6 ocr: %d bytes of text", len(text))

	class, err := classify(text)
	if err != nil {
		return fmt.Errorf("step 3 classify: %w", err)
	}

	answer, err := extract(class, text)
	if err != nil {
		return fmt.Errorf("step 4 extract: %w", err)
	}

	f, err := validate(answer)
	if err != nil {
		orloj.LogErrorf("5/6 validate: %v", err)
		return fmt.Errorf("step 5 validate: %w", err)
	}
	orloj.Logf("5/6 validate: ok (vendor %q, total %v %s, date %s)", f.Vendor, f.Total, f.Currency, f.Date)

	res, err := post(in.RecordsURL, record{Document: in.Document, Class: class, Fields: f})
	if err != nil {
		return fmt.Errorf("step 6 record: %w", err)
	}
	orloj.Logf("6/6 record: records service answered %d", res.Status)

	var rec any = res.Body
	if json.Valid([]byte(res.Body)) {
		rec = json.RawMessage(res.Body)
	}
	return orloj.Output(output{Class: class, Fields: f, Record: rec})
}

// fetch is step 1: GET the document from the blob store.
func fetch(url string) (string, error) {
	var res httpResponse
	if err := orloj.CallInto("http", httpRequest{Method: "GET", URL: url}, &res); err != nil {
		return "", err
	}
	return res.Body, nil
}

// ocr is step 2: POST the document to the OCR service, which answers with
// its text.
func ocr(url, doc string) (string, error) {
	var res httpResponse
	err := orloj.CallInto("http", httpRequest{
		Method:  "POST",
		URL:     url,
		Headers: map[string]string{"Content-Type": "application/octet-stream"},
		Body:    doc,
	}, &res)
	if err != nil {
		return "", err
	}
	return res.Body, nil
}

// classify is step 3: ask the model what kind of document this is.
func classify(text string) (string, error) {
	res, err := chat(classifyPrompt, text)
	if err != nil {
		return "", err
	}
	// Models decorate one-word answers ("Invoice.", " invoice\n").
	class := strings.ToLower(strings.TrimFunc(res.Content, func(r rune) bool {
		return !unicode.IsLetter(r)
	}))
	if class == "" {
		return "", fmt.Errorf("model gave no class: %q", res.Content)
	}
	orloj.Logf("3/6 classify: %s (%d+%d tokens)", class, res.Usage.PromptTokens, res.Usage.CompletionTokens)
	return class, nil
}

// extract is step 4: ask the model for the fields, as JSON text.
func extract(class, text string) (string, error) {
	res, err := chat(fmt.Sprintf(extractPrompt, class), text)
	if err != nil {
		return "", err
	}
	orloj.Logf("4/6 extract: %d bytes of answer (%d+%d tokens)", len(res.Content), res.Usage.PromptTokens, res.Usage.CompletionTokens)
	return res.Content, nil
}

func chat(system, user string) (modelResponse, error) {
	var res modelResponse
	err := orloj.CallInto("model", modelRequest{
		Messages: []message{{Role: "system", Content: system}, {Role: "user", Content: user}},
	}, &res)
	return res, err
}

var currencyCode = regexp.MustCompile(`^[A-Z]{3}$`)

// validate is step 5: parse the model's answer and check it against the
// fields schema. Every problem is reported at once, for whoever reads the DLQ.
// Members outside the schema are ignored: the record is built from the
// validated struct, so they never reach the records service.
func validate(answer string) (fields, error) {
	// Pointers tell a missing member (or null) from a zero value; a member
	// of the wrong JSON type fails Unmarshal.
	var raw struct {
		Vendor   *string  `json:"vendor"`
		Total    *float64 `json:"total"`
		Currency *string  `json:"currency"`
		Date     *string  `json:"date"`
	}
	if err := json.Unmarshal([]byte(unfence(answer)), &raw); err != nil {
		return fields{}, fmt.Errorf("%w: answer is not a JSON object of the schema: %v", errInvalidFields, err)
	}
	var problems []string
	if raw.Vendor == nil {
		problems = append(problems, "vendor is missing")
	} else if strings.TrimSpace(*raw.Vendor) == "" {
		problems = append(problems, "vendor is empty")
	}
	if raw.Total == nil {
		problems = append(problems, "total is missing")
	}
	if raw.Currency == nil {
		problems = append(problems, "currency is missing")
	} else if !currencyCode.MatchString(*raw.Currency) {
		problems = append(problems, fmt.Sprintf("currency %q is not an ISO 4217 code", *raw.Currency))
	}
	if raw.Date == nil && defaultDate != "" {
		raw.Date = &defaultDate
	}
	if raw.Date == nil {
		problems = append(problems, "date is missing")
	} else if _, err := time.Parse(time.DateOnly, *raw.Date); err != nil {
		problems = append(problems, fmt.Sprintf("date %q is not YYYY-MM-DD", *raw.Date))
	}
	if len(problems) > 0 {
		return fields{}, fmt.Errorf("%w: %s", errInvalidFields, strings.Join(problems, "; "))
	}
	return fields{Vendor: strings.TrimSpace(*raw.Vendor), Total: *raw.Total, Currency: *raw.Currency, Date: *raw.Date}, nil
}

// unfence returns the JSON inside a model's answer. Models often wrap it in a
// Markdown code fence, with an info string ("```json") and sometimes a
// sentence before it; without a fence the answer is taken whole.
func unfence(answer string) string {
	_, rest, ok := strings.Cut(answer, "```")
	if !ok {
		return strings.TrimSpace(answer)
	}
	rest, _, _ = strings.Cut(rest, "```")
	// JSON starts with '{' or '[', never a letter, so leading letters are the
	// info string.
	rest = strings.TrimLeftFunc(rest, unicode.IsLetter)
	return strings.TrimSpace(rest)
}

// post is step 6: POST the record to the records service.
func post(url string, rec record) (httpResponse, error) {
	body, err := json.Marshal(rec)
	if err != nil {
		return httpResponse{}, fmt.Errorf("encode record: %w", err)
	}
	var res httpResponse
	err = orloj.CallInto("http", httpRequest{
		Method:  "POST",
		URL:     url,
		Headers: map[string]string{"Content-Type": "application/json"},
		Body:    string(body),
	}, &res)
	return res, err
}
