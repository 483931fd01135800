/*
 * docpipeline in C: the six-step document pipeline of examples/agents/docpipeline,
 * written against sdk/c/orloj.h. Fetch a document from the blob store, OCR
 * it, classify it with a model, extract its fields with a model, validate
 * them, post the record to the records service. Input:
 *
 *     {"document": "<blob URL>", "ocr_url": "...", "records_url": "...",
 *      "notify_url": "... (optional)"}
 *
 * Output:
 *
 *     {"class": "invoice", "fields": {...}, "record": <records service answer>}
 *
 * With notify_url, the agent also emits one http POST to it (an outbox
 * effect): the host performs it once, after the task succeeds, however many
 * attempts staged it.
 *
 * Every step but validation is a tool call, so the host records it: when the
 * records service answers 5xx the call is transient and the attempt exits 75;
 * the retry replays steps 1 to 4 from the ledger and only repeats step 6.
 * Fields that fail validation are permanent (exit 1): the task goes to the
 * dead-letter queue.
 *
 * Build: clang --target=wasm32-wasi -O2 -I sdk/c -o docpipeline.wasm main.c
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "orloj.h"
#include "json.h"

static const char classify_prompt[] = "Classify the document whose text follows. "
				      "Answer with one lowercase word: invoice, receipt, contract or other.";

/* extract_prompt takes the class from step 3. */
static const char extract_prompt[] =
	"Extract the fields of this %s as a JSON object with exactly these members: "
	"\"vendor\" (string), \"total\" (number), \"currency\" (ISO 4217 code, e.g. \"EUR\"), "
	"\"date\" (YYYY-MM-DD). Answer with the JSON object only.";

static void logf_(int level, const char *format, ...) __attribute__((format(printf, 2, 3)));
static void logf_(int level, const char *format, ...)
{
	char line[1024];
	va_list ap;
	va_start(ap, format);
	int n = vsnprintf(line, sizeof line, format, ap);
	va_end(ap);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof line)
		n = sizeof line - 1;
	orloj_log(level, (const uint8_t *)line, (uint32_t)n);
}

/*
 * fail ends the attempt: exit 75 (retry) after a transient status, exit 1
 * (permanent: dead-letter) otherwise. The message goes to stderr, which the
 * host keeps in the task's error, and to the journal.
 */
static void fail(int32_t st, const char *format, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void fail(int32_t st, const char *format, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, format);
	vsnprintf(msg, sizeof msg, format, ap);
	va_end(ap);
	fprintf(stderr, "docpipeline: %s\n", msg);
	logf_(ORLOJ_ERROR, "%s", msg);
	exit(st == ORLOJ_TRANSIENT ? ORLOJ_EXIT_TRANSIENT : 1);
}

/* message is the "message" of an error body, or the body itself. */
static const char *message(orloj_body *b)
{
	const char *v = json_member(b->data, b->data + b->len, "message");
	char *m = v ? json_string(v, b->data + b->len, NULL) : NULL;
	return m ? m : b->data;
}

/* call invokes tool with params (JSON text) and returns its result; any
 * status but ok ends the attempt. */
static orloj_body call(const char *step, const char *tool, const char *params)
{
	buf req = {0};
	buf_str(&req, "{\"tool\":");
	buf_qstr(&req, tool);
	buf_str(&req, ",\"params\":");
	buf_str(&req, params);
	buf_str(&req, "}");
	orloj_body res;
	int32_t st = orloj_call_alloc(req.data, req.len, &res);
	free(req.data);
	if (st != ORLOJ_OK)
		fail(st, "%s: %s: %s", step, orloj_status_name(st), res.data ? message(&res) : "(no body)");
	return res;
}

/* string_member returns the string member name of the JSON object b, or
 * ends the attempt. */
static char *string_member(const char *step, orloj_body *b, const char *name, size_t *len)
{
	const char *v = json_member(b->data, b->data + b->len, name);
	char *s = v ? json_string(v, b->data + b->len, len) : NULL;
	if (s == NULL)
		fail(ORLOJ_TOOL_ERROR, "%s: the result has no string %s: %.200s", step, name, b->data);
	return s;
}

/* http does one request with the http tool and returns the response body;
 * *status gets the HTTP status. A 5xx arrives as transient, a 4xx as
 * tool_error, both from the tool. */
static char *http(const char *step, const char *method, const char *url, const char *content_type,
		  const char *body, size_t body_len, size_t *len, int *status)
{
	buf p = {0};
	buf_str(&p, "{\"method\":");
	buf_qstr(&p, method);
	buf_str(&p, ",\"url\":");
	buf_qstr(&p, url);
	if (content_type != NULL) {
		buf_str(&p, ",\"headers\":{\"Content-Type\":");
		buf_qstr(&p, content_type);
		buf_str(&p, "},\"body\":");
		buf_quote(&p, body, body_len);
	}
	buf_str(&p, "}");
	orloj_body res = call(step, "http", p.data);
	free(p.data);
	const char *sv = json_member(res.data, res.data + res.len, "status");
	*status = sv ? atoi(sv) : 0;
	char *out = string_member(step, &res, "body", len);
	orloj_body_free(&res);
	return out;
}

/* chat asks the model tool and returns its answer; *tokens gets the usage. */
static char *chat(const char *step, const char *system, const char *user, int tokens[2])
{
	buf p = {0};
	buf_str(&p, "{\"messages\":[{\"role\":\"system\",\"content\":");
	buf_qstr(&p, system);
	buf_str(&p, "},{\"role\":\"user\",\"content\":");
	buf_qstr(&p, user);
	buf_str(&p, "}],\"temperature\":0}");
	orloj_body res = call(step, "model", p.data);
	free(p.data);
	char *content = string_member(step, &res, "content", NULL);
	const char *usage = json_member(res.data, res.data + res.len, "usage");
	tokens[0] = tokens[1] = 0;
	if (usage != NULL) {
		const char *end = res.data + res.len;
		const char *pt = json_member(usage, end, "prompt_tokens"), *ct = json_member(usage, end, "completion_tokens");
		tokens[0] = pt ? atoi(pt) : 0;
		tokens[1] = ct ? atoi(ct) : 0;
	}
	orloj_body_free(&res);
	return content;
}

static int is_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80; }

/* classify_answer turns "Invoice.\n" into "invoice": models decorate
 * one-word answers. */
static char *classify_answer(const char *s)
{
	size_t n = strlen(s);
	while (n > 0 && !is_letter((unsigned char)s[n - 1]))
		n--;
	while (n > 0 && !is_letter((unsigned char)*s))
		s++, n--;
	char *out = (char *)malloc(n + 1);
	if (out == NULL)
		abort();
	for (size_t i = 0; i < n; i++)
		out[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]);
	out[n] = '\0';
	return out;
}

/* unfence returns the JSON inside a model's answer (in place): models often
 * wrap it in a Markdown code fence with an info string ("```json"). */
static char *unfence(char *answer, char **end)
{
	char *e = answer + strlen(answer);
	char *open = strstr(answer, "```");
	if (open != NULL) {
		answer = open + 3;
		char *close = strstr(answer, "```");
		if (close != NULL)
			e = close;
		while (answer < e && is_letter((unsigned char)*answer))
			answer++;
	}
	*end = e;
	return answer;
}

static int digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

/* valid_date checks YYYY-MM-DD, month and day included. */
static int valid_date(const char *s)
{
	static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	if (strlen(s) != 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' || !digits(s + 8, 2))
		return 0;
	int y = atoi(s), m = atoi(s + 5), d = atoi(s + 8);
	if (m < 1 || m > 12 || d < 1 || d > days[m - 1])
		return 0;
	return !(m == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)));
}

/* The fields step 4 extracts and step 5 validates; total keeps its JSON
 * text. */
typedef struct fields {
	char *vendor, *currency, *date;
	char total[64];
} fields;

/* validate is step 5: parse the model's answer and check it against the
 * fields schema, reporting every problem at once. */
static fields validate(char *answer)
{
	char *end;
	char *p = unfence(answer, &end);
	fields f = {0};
	if (!json_valid(p, end) || *json_ws(p, end) != '{')
		fail(ORLOJ_TOOL_ERROR, "step 5 validate: extracted fields do not match the schema: answer is not a JSON object");
	buf problems = {0};
#define PROBLEM(...)                                              \
	do {                                                      \
		char m[256];                                      \
		snprintf(m, sizeof m, __VA_ARGS__);               \
		if (problems.len > 0)                             \
			buf_str(&problems, "; ");                 \
		buf_str(&problems, m);                            \
	} while (0)
	const char *v = json_member(p, end, "vendor");
	if (v == NULL || *v == 'n') {
		PROBLEM("vendor is missing");
	} else if ((f.vendor = json_string(v, end, NULL)) == NULL) {
		PROBLEM("vendor is not a string");
	} else {
		char *s = f.vendor, *e = s + strlen(s);
		while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
			s++;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
			e--;
		*e = '\0';
		f.vendor = s;
		if (*s == '\0')
			PROBLEM("vendor is empty");
	}
	v = json_member(p, end, "total");
	const char *q = v ? json_skip_number(v, end) : NULL;
	if (v == NULL || *v == 'n') {
		PROBLEM("total is missing");
	} else if (q == NULL || (size_t)(q - v) >= sizeof f.total) {
		PROBLEM("total is not a number");
	} else {
		memcpy(f.total, v, (size_t)(q - v));
	}
	v = json_member(p, end, "currency");
	if (v == NULL || *v == 'n') {
		PROBLEM("currency is missing");
	} else if ((f.currency = json_string(v, end, NULL)) == NULL) {
		PROBLEM("currency is not a string");
	} else {
		const char *c = f.currency;
		if (strlen(c) != 3 || c[0] < 'A' || c[0] > 'Z' || c[1] < 'A' || c[1] > 'Z' || c[2] < 'A' || c[2] > 'Z')
			PROBLEM("currency \"%.32s\" is not an ISO 4217 code", c);
	}
	v = json_member(p, end, "date");
	if (v == NULL || *v == 'n') {
		PROBLEM("date is missing");
	} else if ((f.date = json_string(v, end, NULL)) == NULL) {
		PROBLEM("date is not a string");
	} else if (!valid_date(f.date)) {
		PROBLEM("date \"%.32s\" is not YYYY-MM-DD", f.date);
	}
#undef PROBLEM
	if (problems.len > 0)
		fail(ORLOJ_TOOL_ERROR, "step 5 validate: extracted fields do not match the schema: %s", problems.data);
	return f;
}

static void add_fields(buf *b, const fields *f)
{
	buf_str(b, "{\"vendor\":");
	buf_qstr(b, f->vendor);
	buf_str(b, ",\"total\":");
	buf_str(b, f->total);
	buf_str(b, ",\"currency\":");
	buf_qstr(b, f->currency);
	buf_str(b, ",\"date\":");
	buf_qstr(b, f->date);
	buf_str(b, "}");
}

int main(void)
{
	orloj_body in;
	int32_t st = orloj_input_alloc(&in);
	if (st != ORLOJ_OK)
		fail(st, "input: %s", orloj_status_name(st));
	const char *end = in.data + in.len;
	const char *m;
	char *document = (m = json_member(in.data, end, "document")) ? json_string(m, end, NULL) : NULL;
	char *ocr_url = (m = json_member(in.data, end, "ocr_url")) ? json_string(m, end, NULL) : NULL;
	char *records_url = (m = json_member(in.data, end, "records_url")) ? json_string(m, end, NULL) : NULL;
	char *notify_url = (m = json_member(in.data, end, "notify_url")) ? json_string(m, end, NULL) : NULL;
	if (!document || !*document || !ocr_url || !*ocr_url || !records_url || !*records_url)
		fail(ORLOJ_INVALID_ARGUMENT, "input: document, ocr_url and records_url are required");

	int status, tokens[2];
	size_t doc_len, text_len;
	char *doc = http("step 1 fetch", "GET", document, NULL, NULL, 0, &doc_len, &status);
	logf_(ORLOJ_INFO, "1/6 fetch: %zu bytes from %s", doc_len, document);

	char *text = http("step 2 ocr", "POST", ocr_url, "application/octet-stream", doc, doc_len, &text_len, &status);
	logf_(ORLOJ_INFO, "2/6 ocr: %zu bytes of text", text_len);

	char *answer = chat("step 3 classify", classify_prompt, text, tokens);
	char *class = classify_answer(answer);
	if (*class == '\0')
		fail(ORLOJ_TOOL_ERROR, "step 3 classify: model gave no class: \"%.200s\"", answer);
	logf_(ORLOJ_INFO, "3/6 classify: %s (%d+%d tokens)", class, tokens[0], tokens[1]);

	char prompt[sizeof extract_prompt + 64];
	snprintf(prompt, sizeof prompt, extract_prompt, class);
	answer = chat("step 4 extract", prompt, text, tokens);
	logf_(ORLOJ_INFO, "4/6 extract: %zu bytes of answer (%d+%d tokens)", strlen(answer), tokens[0], tokens[1]);

	fields f = validate(answer);
	logf_(ORLOJ_INFO, "5/6 validate: ok (vendor \"%s\", total %s %s, date %s)", f.vendor, f.total, f.currency, f.date);

	/* The notification is staged now and performed once the task has
	 * succeeded: an attempt that fails at step 6 stages it too, and the
	 * host drops what a failed attempt staged. */
	if (notify_url != NULL) {
		buf note = {0}, req = {0};
		buf_str(&note, "{\"text\":");
		buf tmp = {0};
		buf_str(&tmp, document);
		buf_str(&tmp, " is a");
		buf_str(&tmp, strchr("aeiou", class[0]) ? "n " : " ");
		buf_str(&tmp, class);
		buf_str(&tmp, " from ");
		buf_str(&tmp, f.vendor);
		buf_qstr(&note, tmp.data);
		buf_str(&note, "}");
		buf_str(&req, "{\"tool\":\"http\",\"params\":{\"method\":\"POST\",\"url\":");
		buf_qstr(&req, notify_url);
		buf_str(&req, ",\"headers\":{\"Content-Type\":\"application/json\"},\"body\":");
		buf_quote(&req, note.data, note.len);
		buf_str(&req, "}}");
		if ((st = orloj_emit((const uint8_t *)req.data, (uint32_t)req.len)) != ORLOJ_OK)
			fail(st, "notify: emit: %s", orloj_status_name(st));
		free(tmp.data);
		free(note.data);
		free(req.data);
	}

	buf record = {0};
	buf_str(&record, "{\"document\":");
	buf_qstr(&record, document);
	buf_str(&record, ",\"class\":");
	buf_qstr(&record, class);
	buf_str(&record, ",\"fields\":");
	add_fields(&record, &f);
	buf_str(&record, "}");
	size_t rec_len;
	char *rec = http("step 6 record", "POST", records_url, "application/json", record.data, record.len, &rec_len, &status);
	logf_(ORLOJ_INFO, "6/6 record: records service answered %d", status);

	buf out = {0};
	buf_str(&out, "{\"class\":");
	buf_qstr(&out, class);
	buf_str(&out, ",\"fields\":");
	add_fields(&out, &f);
	buf_str(&out, ",\"record\":");
	/* The records service's answer: as JSON when it is JSON, else as a
	 * string. */
	if (json_valid(rec, rec + rec_len))
		buf_add(&out, rec, rec_len);
	else
		buf_quote(&out, rec, rec_len);
	buf_str(&out, "}");
	if ((st = orloj_output((const uint8_t *)out.data, (uint32_t)out.len)) != ORLOJ_OK)
		fail(st, "output: %s", orloj_status_name(st));
	return 0;
}
