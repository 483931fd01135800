// docpipeline in AssemblyScript: the six-step document pipeline of
// examples/agents/docpipeline, written against sdk/assemblyscript. Fetch a
// document from the blob store, OCR it, classify it with a model, extract
// its fields with a model, validate them, post the record to the records
// service. Input:
//
//   {"document": "<blob URL>", "ocr_url": "...", "records_url": "...",
//    "notify_url": "... (optional)"}
//
// Output:
//
//   {"class": "invoice", "fields": {...}, "record": <records service answer>}
//
// With notify_url, the agent also emits one http POST to it (an outbox
// effect): the host performs it once, after the task succeeds, however many
// attempts staged it.
//
// Every step but validation is a tool call, so the host records it: when the
// records service answers 5xx the call is transient and the attempt exits
// 75; the retry replays steps 1 to 4 from the ledger and only repeats step
// 6. Fields that fail validation are permanent (exit 1): the task goes to the
// dead-letter queue.
//
// The program is the module's start function, which asconfig.json exports
// as _start: the host runs it once per attempt.
import * as orloj from "../../../sdk/assemblyscript/assembly/index";
import * as json from "../../../sdk/assemblyscript/assembly/json";

const quote = orloj.quote;

const CLASSIFY_PROMPT =
  "Classify the document whose text follows. " +
  "Answer with one lowercase word: invoice, receipt, contract or other.";

function extractPrompt(cls: string): string {
  return (
    "Extract the fields of this " + cls + " as a JSON object with exactly these members: " +
    "\"vendor\" (string), \"total\" (number), \"currency\" (ISO 4217 code, e.g. \"EUR\"), " +
    "\"date\" (YYYY-MM-DD). Answer with the JSON object only."
  );
}

function info(message: string): void {
  orloj.log(orloj.Level.Info, message);
}

// result calls tool and parses its result; any status but ok ends the
// attempt (75 for transient).
function result(step: string, tool: string, params: string): json.Value {
  const a = orloj.callJSON(tool, params);
  if (!a.ok) orloj.fail(a.status, step + ": " + orloj.statusName(a.status) + ": " + a.message);
  const v = json.parse(a.body);
  if (v === null) {
    orloj.fail(orloj.Status.ToolError, step + ": result is not JSON");
    return new json.Value(); // not reached
  }
  return v;
}

function stringMember(step: string, v: json.Value, name: string): string {
  const s = v.str(name);
  if (s === null) {
    orloj.fail(orloj.Status.ToolError, step + ": the result has no string " + name);
    return "";
  }
  return s;
}

// The http tool's response: status and body. A 5xx arrives as transient, a
// 4xx as tool_error, both from the tool.
class HTTPResponse {
  constructor(public status: i32, public body: string) {}
}

function http(step: string, method: string, url: string, contentType: string | null, body: string): HTTPResponse {
  let params = "{\"method\":" + quote(method) + ",\"url\":" + quote(url);
  if (contentType !== null) {
    params += ",\"headers\":{\"Content-Type\":" + quote(contentType) + "},\"body\":" + quote(body);
  }
  const res = result(step, "http", params + "}");
  const st = res.num("status");
  return new HTTPResponse(isNaN(st) ? 0 : <i32>st, stringMember(step, res, "body"));
}

class Chat {
  constructor(public content: string, public prompt: i32, public completion: i32) {}
}

function chat(step: string, system: string, user: string): Chat {
  const params =
    "{\"messages\":[{\"role\":\"system\",\"content\":" + quote(system) +
    "},{\"role\":\"user\",\"content\":" + quote(user) + "}],\"temperature\":0}";
  const res = result(step, "model", params);
  let pt = 0, ct = 0;
  const usage = res.get("usage");
  if (usage !== null) {
    const p = usage.num("prompt_tokens"), c = usage.num("completion_tokens");
    pt = isNaN(p) ? 0 : <i32>p;
    ct = isNaN(c) ? 0 : <i32>c;
  }
  return new Chat(stringMember(step, res, "content"), pt, ct);
}

function isLetter(c: i32): bool {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c >= 0x80;
}

// classifyAnswer turns "Invoice.\n" into "invoice": models decorate
// one-word answers.
function classifyAnswer(s: string): string {
  let start = 0, end = s.length;
  while (end > start && !isLetter(s.charCodeAt(end - 1))) end--;
  while (start < end && !isLetter(s.charCodeAt(start))) start++;
  return s.substring(start, end).toLowerCase();
}

// unfence returns the JSON inside a model's answer: models often wrap it in
// a Markdown code fence with an info string ("```json").
function unfence(answer: string): string {
  const open = answer.indexOf("```");
  if (open < 0) return answer.trim();
  let rest = answer.substring(open + 3);
  const close = rest.indexOf("```");
  if (close >= 0) rest = rest.substring(0, close);
  let i = 0;
  while (i < rest.length && isLetter(rest.charCodeAt(i))) i++;
  return rest.substring(i).trim();
}

function isDigits(s: string, from: i32, to: i32): bool {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

// validDate checks YYYY-MM-DD, month and day included.
function validDate(s: string): bool {
  if (s.length != 10 || !isDigits(s, 0, 4) || s.charAt(4) != "-" || !isDigits(s, 5, 7) || s.charAt(7) != "-" || !isDigits(s, 8, 10)) {
    return false;
  }
  const y = I32.parseInt(s.substring(0, 4)), m = I32.parseInt(s.substring(5, 7)), d = I32.parseInt(s.substring(8, 10));
  const leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
  const days: i32[] = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
  return m >= 1 && m <= 12 && d >= 1 && d <= days[m - 1];
}

// The fields step 4 extracts and step 5 validates; total keeps its JSON text.
class Fields {
  vendor: string = "";
  total: string = "";
  currency: string = "";
  date: string = "";

  toJSON(): string {
    return "{\"vendor\":" + quote(this.vendor) + ",\"total\":" + this.total +
      ",\"currency\":" + quote(this.currency) + ",\"date\":" + quote(this.date) + "}";
  }
}

// member is an object's member, with null for a JSON null.
function member(v: json.Value, name: string): json.Value | null {
  const m = v.get(name);
  return m !== null && m.kind != json.NULL ? m : null;
}

// text is a string member, or "" with a problem noted.
function text(v: json.Value, name: string, problems: string[]): string {
  const m = member(v, name);
  if (m === null) {
    problems.push(name + " is missing");
    return "";
  }
  if (m.kind != json.STRING) {
    problems.push(name + " is not a string");
    return "";
  }
  return m.text;
}

// validate is step 5: parse the model's answer and check it against the
// fields schema, reporting every problem at once.
function validate(answer: string): Fields {
  const prefix = "step 5 validate: extracted fields do not match the schema: ";
  const v = json.parse(unfence(answer));
  if (v === null || v.kind != json.OBJECT) {
    orloj.fail(orloj.Status.ToolError, prefix + "answer is not a JSON object");
    return new Fields();
  }
  const problems: string[] = [];
  const f = new Fields();
  f.vendor = text(v, "vendor", problems).trim();
  const vm = member(v, "vendor");
  if (vm !== null && vm.kind == json.STRING && f.vendor.length == 0) problems.push("vendor is empty");
  const t = member(v, "total");
  if (t === null) problems.push("total is missing");
  else if (t.kind != json.NUMBER) problems.push("total is not a number");
  else f.total = t.text;
  f.currency = text(v, "currency", problems);
  const cm = member(v, "currency");
  if (cm !== null && cm.kind == json.STRING) {
    let ok = f.currency.length == 3;
    for (let i = 0; ok && i < 3; i++) {
      const c = f.currency.charCodeAt(i);
      ok = c >= 0x41 && c <= 0x5a;
    }
    if (!ok) problems.push("currency " + quote(f.currency) + " is not an ISO 4217 code");
  }
  f.date = text(v, "date", problems);
  const dm = member(v, "date");
  if (dm !== null && dm.kind == json.STRING && !validDate(f.date)) problems.push("date " + quote(f.date) + " is not YYYY-MM-DD");
  if (problems.length > 0) {
    orloj.fail(orloj.Status.ToolError, prefix + problems.join("; "));
  }
  return f;
}

function run(): void {
  const input = json.parse(orloj.input());
  if (input === null) {
    orloj.fail(orloj.Status.InvalidArgument, "input: not JSON");
    return;
  }
  const document = input.str("document"), ocrURL = input.str("ocr_url"), recordsURL = input.str("records_url");
  if (document === null || ocrURL === null || recordsURL === null || document.length == 0 || ocrURL.length == 0 || recordsURL.length == 0) {
    orloj.fail(orloj.Status.InvalidArgument, "input: document, ocr_url and records_url are required");
    return;
  }

  const doc = http("step 1 fetch", "GET", document, null, "").body;
  info("1/6 fetch: " + String.UTF8.byteLength(doc).toString() + " bytes from " + document);

  const txt = http("step 2 ocr", "POST", ocrURL, "application/octet-stream", doc).body;
  info("2/6 ocr: " + String.UTF8.byteLength(txt).toString() + " bytes of text");

  let c = chat("step 3 classify", CLASSIFY_PROMPT, txt);
  const cls = classifyAnswer(c.content);
  if (cls.length == 0) orloj.fail(orloj.Status.ToolError, "step 3 classify: model gave no class: " + quote(c.content));
  info("3/6 classify: " + cls + " (" + c.prompt.toString() + "+" + c.completion.toString() + " tokens)");

  c = chat("step 4 extract", extractPrompt(cls), txt);
  info("4/6 extract: " + String.UTF8.byteLength(c.content).toString() + " bytes of answer (" +
    c.prompt.toString() + "+" + c.completion.toString() + " tokens)");

  const f = validate(c.content);
  info("5/6 validate: ok (vendor " + quote(f.vendor) + ", total " + f.total + " " + f.currency + ", date " + f.date + ")");

  // The notification is staged now and performed once the task has
  // succeeded: an attempt that fails at step 6 stages it too, and the host
  // drops what a failed attempt staged.
  const notifyURL = input.str("notify_url");
  if (notifyURL !== null) {
    const article = "aeiou".includes(cls.charAt(0)) ? "an" : "a";
    const note = "{\"text\":" + quote(document + " is " + article + " " + cls + " from " + f.vendor) + "}";
    const params = "{\"method\":\"POST\",\"url\":" + quote(notifyURL) +
      ",\"headers\":{\"Content-Type\":\"application/json\"},\"body\":" + quote(note) + "}";
    const st = orloj.emit("http", params);
    if (st != orloj.Status.Ok) orloj.fail(st, "notify: emit: " + orloj.statusName(st));
  }

  const record = "{\"document\":" + quote(document) + ",\"class\":" + quote(cls) + ",\"fields\":" + f.toJSON() + "}";
  const res = http("step 6 record", "POST", recordsURL, "application/json", record);
  info("6/6 record: records service answered " + res.status.toString());

  // The records service's answer: as JSON when it is JSON, else a string.
  const rec = json.valid(res.body) ? res.body : quote(res.body);
  const st = orloj.output("{\"class\":" + quote(cls) + ",\"fields\":" + f.toJSON() + ",\"record\":" + rec + "}");
  if (st != orloj.Status.Ok) orloj.fail(st, "output: " + orloj.statusName(st));
}

run();
