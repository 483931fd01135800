//! docpipeline in Rust: the six-step document pipeline of
//! examples/agents/docpipeline, written against the `orloj` crate (sdk/rust)
//! with the standard library only. Fetch a document from the blob store, OCR
//! it, classify it with a model, extract its fields with a model, validate
//! them, post the record to the records service. Input:
//!
//!     {"document": "<blob URL>", "ocr_url": "...", "records_url": "...",
//!      "notify_url": "... (optional)"}
//!
//! Output:
//!
//!     {"class": "invoice", "fields": {...}, "record": <records service answer>}
//!
//! With notify_url, the agent also emits one http POST to it (an outbox
//! effect): the host performs it once, after the task succeeds, however many
//! attempts staged it.
//!
//! Every step but validation is a tool call, so the host records it: when the
//! records service answers 5xx the call is `transient` and the attempt exits
//! 75; the retry replays steps 1 to 4 from the ledger and only repeats step
//! 6. Fields that fail validation are permanent (exit 1): the task goes to
//! the dead-letter queue.

use orloj::json::{self, Value};
use orloj::{quote, Error, Level, Result};

const CLASSIFY_PROMPT: &str = "Classify the document whose text follows. \
    Answer with one lowercase word: invoice, receipt, contract or other.";

fn extract_prompt(class: &str) -> String {
    format!(
        "Extract the fields of this {} as a JSON object with exactly these members: \
         \"vendor\" (string), \"total\" (number), \"currency\" (ISO 4217 code, e.g. \"EUR\"), \
         \"date\" (YYYY-MM-DD). Answer with the JSON object only.",
        class
    )
}

fn info(message: &str) {
    orloj::log(Level::Info, message)
}

/// Parses a tool result; a result that is not JSON is the tool's fault.
fn parse(step: &str, text: &str) -> Result<Value> {
    json::parse(text).map_err(|e| Error::permanent(format!("{}: result is not JSON: {}", step, e)))
}

fn string_member(step: &str, v: &Value, name: &str) -> Result<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::permanent(format!("{}: the result has no string {}", step, name)))
}

/// An HTTP request with the http tool; the response's status and body. A
/// 5xx arrives as `transient`, a 4xx as `tool_error`, both from the tool.
fn http(step: &str, method: &str, url: &str, body: Option<(&str, &str)>) -> Result<(i64, String)> {
    let mut params = format!("{{\"method\":{},\"url\":{}", quote(method), quote(url));
    if let Some((content_type, body)) = body {
        params.push_str(&format!(
            ",\"headers\":{{\"Content-Type\":{}}},\"body\":{}",
            quote(content_type),
            quote(body)
        ));
    }
    params.push('}');
    let res = orloj::call_json("http", &params).map_err(|e| e.context(step))?;
    let res = parse(step, &res)?;
    let status = res.get("status").and_then(Value::as_i64).unwrap_or(0);
    Ok((status, string_member(step, &res, "body")?))
}

/// Asks the model tool; its answer and the tokens it used.
fn chat(step: &str, system: &str, user: &str) -> Result<(String, i64, i64)> {
    let params = format!(
        "{{\"messages\":[{{\"role\":\"system\",\"content\":{}}},{{\"role\":\"user\",\"content\":{}}}],\"temperature\":0}}",
        quote(system),
        quote(user)
    );
    let res = orloj::call_json("model", &params).map_err(|e| e.context(step))?;
    let res = parse(step, &res)?;
    let usage = |name| res.get("usage").and_then(|u| u.get(name)).and_then(Value::as_i64).unwrap_or(0);
    Ok((string_member(step, &res, "content")?, usage("prompt_tokens"), usage("completion_tokens")))
}

/// The fields step 4 extracts and step 5 validates; total keeps its JSON
/// text.
struct Fields {
    vendor: String,
    total: String,
    currency: String,
    date: String,
}

impl Fields {
    fn to_json(&self) -> String {
        format!(
            "{{\"vendor\":{},\"total\":{},\"currency\":{},\"date\":{}}}",
            quote(&self.vendor),
            self.total,
            quote(&self.currency),
            quote(&self.date)
        )
    }
}

/// The JSON inside a model's answer: models often wrap it in a Markdown code
/// fence with an info string ("```json").
fn unfence(answer: &str) -> &str {
    match answer.split_once("```") {
        None => answer.trim(),
        Some((_, rest)) => {
            let rest = rest.split_once("```").map_or(rest, |(inside, _)| inside);
            rest.trim_start_matches(char::is_alphabetic).trim()
        }
    }
}

fn valid_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if b.len() != 10 || !digits(0..4) || b[4] != b'-' || !digits(5..7) || b[7] != b'-' || !digits(8..10) {
        return false;
    }
    let (y, m, d): (u32, u32, u32) = (s[0..4].parse().unwrap(), s[5..7].parse().unwrap(), s[8..10].parse().unwrap());
    let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
    let days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12).contains(&m) && d >= 1 && d <= days[m as usize - 1]
}

/// Step 5: parse the model's answer and check it against the fields schema,
/// reporting every problem at once.
fn validate(answer: &str) -> Result<Fields> {
    let invalid = |why: String| Error::permanent(format!("extracted fields do not match the schema: {}", why));
    let v = json::parse(unfence(answer)).map_err(|e| invalid(format!("answer is not a JSON object: {}", e)))?;
    if !matches!(v, Value::Object(_)) {
        return Err(invalid("answer is not a JSON object".to_string()));
    }
    let mut problems: Vec<String> = Vec::new();
    let member = |name: &str| v.get(name).filter(|m| !m.is_null());
    let text = |name: &str, problems: &mut Vec<String>| match member(name) {
        None => {
            problems.push(format!("{} is missing", name));
            String::new()
        }
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            problems.push(format!("{} is not a string", name));
            String::new()
        }
    };
    let vendor = text("vendor", &mut problems).trim().to_string();
    if member("vendor").map_or(false, |m| m.as_str().is_some()) && vendor.is_empty() {
        problems.push("vendor is empty".to_string());
    }
    let total = match member("total") {
        None => {
            problems.push("total is missing".to_string());
            String::new()
        }
        Some(Value::Number(n)) => n.clone(),
        Some(_) => {
            problems.push("total is not a number".to_string());
            String::new()
        }
    };
    let currency = text("currency", &mut problems);
    if member("currency").map_or(false, |m| m.as_str().is_some())
        && !(currency.len() == 3 && currency.bytes().all(|c| c.is_ascii_uppercase()))
    {
        problems.push(format!("currency {} is not an ISO 4217 code", quote(&currency)));
    }
    let date = text("date", &mut problems);
    if member("date").map_or(false, |m| m.as_str().is_some()) && !valid_date(&date) {
        problems.push(format!("date {} is not YYYY-MM-DD", quote(&date)));
    }
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }
    Ok(Fields { vendor, total, currency, date })
}

fn run() -> Result<()> {
    let input = orloj::input_string()?;
    let input = json::parse(&input).map_err(|e| Error::permanent(format!("input: {}", e)))?;
    let member = |name: &str| input.get(name).and_then(Value::as_str).unwrap_or("").to_string();
    let (document, ocr_url, records_url) = (member("document"), member("ocr_url"), member("records_url"));
    if document.is_empty() || ocr_url.is_empty() || records_url.is_empty() {
        return Err(Error::permanent("input: document, ocr_url and records_url are required"));
    }

    let (_, doc) = http("step 1 fetch", "GET", &document, None)?;
    info(&format!("1/6 fetch: {} bytes from {}", doc.len(), document));

    let (_, text) = http("step 2 ocr", "POST", &ocr_url, Some(("application/octet-stream", &doc)))?;
    info(&format!("2/6 ocr: {} bytes of text", text.len()));

    let (answer, pt, ct) = chat("step 3 classify", CLASSIFY_PROMPT, &text)?;
    // Models decorate one-word answers ("Invoice.", " invoice\n").
    let class = answer.trim_matches(|c: char| !c.is_alphabetic()).to_lowercase();
    if class.is_empty() {
        return Err(Error::permanent(format!("step 3 classify: model gave no class: {}", quote(&answer))));
    }
    info(&format!("3/6 classify: {} ({}+{} tokens)", class, pt, ct));

    let (answer, pt, ct) = chat("step 4 extract", &extract_prompt(&class), &text)?;
    info(&format!("4/6 extract: {} bytes of answer ({}+{} tokens)", answer.len(), pt, ct));

    let f = match validate(&answer) {
        Ok(f) => f,
        Err(e) => {
            let e = e.context("step 5 validate");
            orloj::log(Level::Error, &e.message);
            return Err(e);
        }
    };
    info(&format!("5/6 validate: ok (vendor {}, total {} {}, date {})", quote(&f.vendor), f.total, f.currency, f.date));

    // The notification is staged now and performed once the task has
    // succeeded: an attempt that fails at step 6 stages it too, and the host
    // drops what a failed attempt staged.
    if let Some(url) = input.get("notify_url").and_then(Value::as_str) {
        let article = if class.starts_with(|c| "aeiou".contains(c)) { "an" } else { "a" };
        let note = format!("{{\"text\":{}}}", quote(&format!("{} is {} {} from {}", document, article, class, f.vendor)));
        let params = format!(
            "{{\"method\":\"POST\",\"url\":{},\"headers\":{{\"Content-Type\":\"application/json\"}},\"body\":{}}}",
            quote(url),
            quote(&note)
        );
        orloj::emit("http", &params).map_err(|e| e.context("notify"))?;
    }

    let record = format!("{{\"document\":{},\"class\":{},\"fields\":{}}}", quote(&document), quote(&class), f.to_json());
    let (status, answer) = http("step 6 record", "POST", &records_url, Some(("application/json", &record)))?;
    info(&format!("6/6 record: records service answered {}", status));

    // The records service's answer: as JSON when it is JSON, else a string.
    let rec = match json::parse(&answer) {
        Ok(v) => v.to_json(),
        Err(_) => quote(&answer),
    };
    orloj::output(&format!("{{\"class\":{},\"fields\":{},\"record\":{}}}", quote(&class), f.to_json(), rec))
}

fn main() {
    orloj::main(run)
}
