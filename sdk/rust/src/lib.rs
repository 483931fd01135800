//! Orloj guest SDK for Rust: safe wrappers over the host functions of the
//! Orloj guest ABI, version 1 (`orloj_v1`, docs/abi.md), for agents built as
//! WASI commands with the standard library only.
//!
//! ```ignore
//! fn run() -> orloj::Result<()> {
//!     let input = orloj::input_string()?;
//!     let page = orloj::call_json("http", r#"{"method":"GET","url":"https://example.com"}"#)?;
//!     orloj::log(orloj::Level::Info, &format!("{} bytes", page.len()));
//!     orloj::output(&page)
//! }
//!
//! fn main() {
//!     orloj::main(run)
//! }
//! ```
//!
//! Requests and results are JSON text: the crate has no dependencies, so it
//! does not serialize for you. [`quote`] makes a JSON string and [`json`] is
//! a small reader for results.
//!
//! Build with `rustc --target wasm32-wasi` (Rust before 1.78) or
//! `--target wasm32-wasip1` (Rust 1.78 and later); see docs/sdks.md for the
//! flags.

use std::fmt;

pub mod json;

/// A status every host function returns (docs/abi.md, section 3). The values
/// never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Status {
    Ok = 0,
    NotFound = 1,
    PermissionDenied = 2,
    ToolError = 3,
    Transient = 4,
    InDoubt = 5,
    BudgetExceeded = 6,
    BufferTooSmall = 7,
    InvalidArgument = 8,
    Fault = 9,
    Timeout = 10,
    /// A code this SDK does not know (a newer host): treated as permanent.
    Unknown = -1,
}

impl Status {
    /// The status a host function returned.
    pub fn from_code(code: i32) -> Status {
        use Status::*;
        match code {
            0 => Ok,
            1 => NotFound,
            2 => PermissionDenied,
            3 => ToolError,
            4 => Transient,
            5 => InDoubt,
            6 => BudgetExceeded,
            7 => BufferTooSmall,
            8 => InvalidArgument,
            9 => Fault,
            10 => Timeout,
            _ => Unknown,
        }
    }

    /// The status's name, as error bodies spell it (`"tool_error"`).
    pub fn name(self) -> &'static str {
        use Status::*;
        match self {
            Ok => "ok",
            NotFound => "not_found",
            PermissionDenied => "permission_denied",
            ToolError => "tool_error",
            Transient => "transient",
            InDoubt => "in_doubt",
            BudgetExceeded => "budget_exceeded",
            BufferTooSmall => "buffer_too_small",
            InvalidArgument => "invalid_argument",
            Fault => "fault",
            Timeout => "timeout",
            Unknown => "unknown",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The exit code that asks the host to retry the task under its backoff
/// policy.
pub const EXIT_TRANSIENT: i32 = 75;

/// An error from the host (a status and the error body's message) or from
/// the agent itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// A failure that no retry would change: the task goes to the
    /// dead-letter queue.
    pub fn permanent(message: impl Into<String>) -> Error {
        Error::new(Status::ToolError, message)
    }

    /// A failure a later attempt may not see: the task is retried.
    pub fn transient(message: impl Into<String>) -> Error {
        Error::new(Status::Transient, message)
    }

    /// The same error, its message prefixed with what was being done.
    pub fn context(self, what: &str) -> Error {
        Error { status: self.status, message: format!("{}: {}", what, self.message) }
    }

    /// The exit code an attempt that ends with this error should use: 75
    /// (retry) for `transient`, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.status == Status::Transient {
            EXIT_TRANSIENT
        } else {
            1
        }
    }

    fn from_body(status: Status, body: &[u8]) -> Error {
        // An error body is {"status": "...", "message": "..."}; keep the
        // raw text when it is not one.
        let text = String::from_utf8_lossy(body);
        let message = json::parse(&text)
            .ok()
            .and_then(|v| v.get("message").and_then(|m| m.as_str().map(str::to_string)))
            .unwrap_or_else(|| text.into_owned());
        Error { status, message }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.status)
        } else {
            write!(f, "{}: {}", self.status, self.message)
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// Log levels for [`log`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
}

#[cfg(target_arch = "wasm32")]
mod sys {
    #[link(wasm_import_module = "orloj_v1")]
    extern "C" {
        pub fn input(buf: *mut u8, cap: u32, len: *mut u32) -> i32;
        pub fn call(req: *const u8, req_len: u32, buf: *mut u8, cap: u32, len: *mut u32) -> i32;
        pub fn call_batch(req: *const u8, req_len: u32, buf: *mut u8, cap: u32, len: *mut u32) -> i32;
        pub fn wait(req: *const u8, req_len: u32, buf: *mut u8, cap: u32, len: *mut u32) -> i32;
        pub fn response(buf: *mut u8, cap: u32, len: *mut u32) -> i32;
        pub fn output(ptr: *const u8, len: u32) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: u32) -> i32;
        pub fn now(out: *mut u64) -> i32;
        pub fn emit(req: *const u8, req_len: u32) -> i32;
    }
}

// Off WebAssembly (cargo test on the build machine) there is no host: every
// function answers not_found, so code that only builds requests and reads
// results can still be unit-tested.
#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::missing_safety_doc)]
mod sys {
    pub unsafe extern "C" fn input(_: *mut u8, _: u32, _: *mut u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn call(_: *const u8, _: u32, _: *mut u8, _: u32, _: *mut u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn call_batch(_: *const u8, _: u32, _: *mut u8, _: u32, _: *mut u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn wait(_: *const u8, _: u32, _: *mut u8, _: u32, _: *mut u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn response(_: *mut u8, _: u32, _: *mut u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn output(_: *const u8, _: u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn log(_: i32, _: *const u8, _: u32) -> i32 {
        1
    }
    pub unsafe extern "C" fn now(_: *mut u64) -> i32 {
        1
    }
    pub unsafe extern "C" fn emit(_: *const u8, _: u32) -> i32 {
        1
    }
}

/// The first buffer offered for a response. Most bodies fit; a larger one
/// costs one more host call (`response`), never a second tool call. Building
/// the crate with ORLOJ_FIRST_BUFFER=N in the environment changes it (a tiny
/// one makes every answer take the `response` path, which tests use).
const FIRST_BUFFER: usize = match option_env!("ORLOJ_FIRST_BUFFER") {
    Some(n) => parse_usize(n),
    None => 4096,
};

const fn parse_usize(s: &str) -> usize {
    let b = s.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "ORLOJ_FIRST_BUFFER is not a number");
        n = n * 10 + (b[i] - b'0') as usize;
        i += 1;
    }
    n
}

/// Calls a host function that writes a body into (buf, cap, len_ptr) and
/// does the buffer_too_small dance: when the body does not fit, the host
/// keeps it and `response` copies it into a buffer of the announced size,
/// returning the original call's status. Any status can arrive as
/// buffer_too_small first, so nothing branches on it before this.
fn with_body(f: impl FnOnce(*mut u8, u32, *mut u32) -> i32) -> (Status, Vec<u8>) {
    let mut buf: Vec<u8> = Vec::with_capacity(FIRST_BUFFER);
    let mut len: u32 = 0;
    let mut st = f(buf.as_mut_ptr(), buf.capacity() as u32, &mut len);
    let mut tries = 0;
    while st == Status::BufferTooSmall as i32 && tries < 4 {
        tries += 1;
        let want = len as usize;
        buf.reserve(want);
        len = 0;
        // SAFETY: buf has capacity for at least `want` bytes; the host
        // writes at most cap bytes there and the length at &len.
        st = unsafe { sys::response(buf.as_mut_ptr(), want as u32, &mut len) };
    }
    let st = Status::from_code(st);
    if st != Status::Fault && st != Status::BufferTooSmall && (len as usize) <= buf.capacity() {
        // SAFETY: the host wrote len bytes of body at the start of buf.
        unsafe { buf.set_len(len as usize) };
    }
    (st, buf)
}

fn answer(st: Status, body: Vec<u8>) -> Result<Vec<u8>> {
    if st == Status::Ok {
        Ok(body)
    } else {
        Err(Error::from_body(st, &body))
    }
}

fn utf8(b: Vec<u8>) -> Result<String> {
    String::from_utf8(b).map_err(|e| Error::new(Status::InvalidArgument, format!("body is not UTF-8: {}", e)))
}

fn len32(what: &str, b: &[u8]) -> Result<u32> {
    u32::try_from(b.len()).map_err(|_| Error::new(Status::InvalidArgument, format!("{} is too large", what)))
}

/// The task input, a JSON text.
pub fn input() -> Result<Vec<u8>> {
    let (st, body) = with_body(|buf, cap, len| unsafe { sys::input(buf, cap, len) });
    answer(st, body)
}

/// The task input as a string.
pub fn input_string() -> Result<String> {
    input().and_then(utf8)
}

type HostFn = unsafe extern "C" fn(*const u8, u32, *mut u8, u32, *mut u32) -> i32;

fn host_call(f: HostFn, req: &[u8]) -> Result<Vec<u8>> {
    let n = len32("request", req)?;
    let (st, body) = with_body(|buf, cap, len| unsafe { f(req.as_ptr(), n, buf, cap, len) });
    answer(st, body)
}

/// Invokes a tool with a whole request, `{"tool": ..., "params": ..., "key": ...}`,
/// and returns its result (JSON). A status other than `ok` is an [`Error`]
/// with the error body's message.
pub fn call(request: &[u8]) -> Result<Vec<u8>> {
    host_call(sys::call, request)
}

/// Invokes `tool` with `params`, a JSON text, and returns the result as JSON
/// text.
pub fn call_json(tool: &str, params: &str) -> Result<String> {
    call(call_request(tool, params, None).as_bytes()).and_then(utf8)
}

/// [`call_json`] with a key, which names the call for the ledger instead of
/// its position (docs/abi.md, section 5).
pub fn call_keyed(tool: &str, params: &str, key: &str) -> Result<String> {
    call(call_request(tool, params, Some(key)).as_bytes()).and_then(utf8)
}

/// Invokes several tools at once: `requests` is a JSON array of call
/// requests; the answer is a JSON array with one `{"status": ..., "result"
/// or "message": ...}` per request.
pub fn call_batch(requests: &str) -> Result<String> {
    host_call(sys::call_batch, requests.as_bytes()).and_then(utf8)
}

/// Waits durably (a sleep or a signal: docs/abi.md, `wait`). `request` is
/// the JSON request; the answer is the wait's result. A signal's timeout is
/// an error with [`Status::Timeout`].
pub fn wait(request: &str) -> Result<String> {
    host_call(sys::wait, request.as_bytes()).and_then(utf8)
}

/// The request `{"tool": tool, "params": params}` (with `"key"` if given).
pub fn call_request(tool: &str, params: &str, key: Option<&str>) -> String {
    let mut r = String::with_capacity(tool.len() + params.len() + 32);
    r.push_str("{\"tool\":");
    r.push_str(&quote(tool));
    r.push_str(",\"params\":");
    r.push_str(params);
    if let Some(k) = key {
        r.push_str(",\"key\":");
        r.push_str(&quote(k));
    }
    r.push('}');
    r
}

/// Sets the task output, a JSON text; a later call replaces it.
pub fn output(json: &str) -> Result<()> {
    let n = len32("output", json.as_bytes())?;
    status(unsafe { sys::output(json.as_ptr(), n) }, "output")
}

/// Writes one line to the task's journal. Logging never fails the agent: a
/// line the host refuses is dropped.
pub fn log(level: Level, message: &str) {
    let n = message.len().min(1 << 20) as u32;
    unsafe { sys::log(level as i32, message.as_ptr(), n) };
}

/// The current time in nanoseconds since the Unix epoch. The host records
/// it: a retried attempt that reaches the same point sees the same time.
pub fn now() -> Result<u64> {
    let mut t: u64 = 0;
    status(unsafe { sys::now(&mut t) }, "now")?;
    Ok(t)
}

/// Stages an outbox effect: `tool` with `params` (JSON text), performed by
/// the host once, after the task succeeds.
pub fn emit(tool: &str, params: &str) -> Result<()> {
    emit_request(&call_request(tool, params, None))
}

/// [`emit`] with a key: the effect's idempotency key is derived from it
/// instead of from the effect's position in the attempt (docs/abi.md, `emit`).
pub fn emit_keyed(tool: &str, params: &str, key: &str) -> Result<()> {
    emit_request(&call_request(tool, params, Some(key)))
}

fn emit_request(req: &str) -> Result<()> {
    let n = len32("effect", req.as_bytes())?;
    status(unsafe { sys::emit(req.as_ptr(), n) }, "emit")
}

fn status(code: i32, what: &str) -> Result<()> {
    match Status::from_code(code) {
        Status::Ok => Ok(()),
        st => Err(Error::new(st, what)),
    }
}

/// Runs an agent: `run`'s error ends the attempt with [`Error::exit_code`]
/// (75 for `transient`, which retries; 1 otherwise), after writing it to
/// stderr, which the host keeps with the task's error, and to the journal.
pub fn main(run: fn() -> Result<()>) -> ! {
    match run() {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("{}", e);
            log(Level::Error, &e.to_string());
            std::process::exit(e.exit_code())
        }
    }
}

/// `s` as a JSON string, with only the escapes JSON needs.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    json::quote_into(&mut out, s);
    out
}
