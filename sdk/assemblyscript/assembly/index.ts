// Orloj guest SDK for AssemblyScript: bindings for the host functions of the
// Orloj guest ABI, version 1 (orloj_v1, docs/abi.md), and small helpers. No
// dependencies beyond the compiler. Build with the asconfig.json beside this
// file, which exports the module's start function as _start (so the host
// runs the program once per attempt) and routes abort here, so a module
// imports nothing but orloj_v1 and wasi_snapshot_preview1.
//
// AssemblyScript has no exceptions: every call answers an Answer (a status
// and a body) and fail() ends the attempt.

// The host functions, with the signatures of docs/abi.md section 4.
@external("orloj_v1", "input")
declare function _input(buf: usize, cap: u32, lenPtr: usize): i32;
@external("orloj_v1", "call")
declare function _call(req: usize, reqLen: u32, buf: usize, cap: u32, lenPtr: usize): i32;
@external("orloj_v1", "call_batch")
declare function _callBatch(req: usize, reqLen: u32, buf: usize, cap: u32, lenPtr: usize): i32;
@external("orloj_v1", "wait")
declare function _wait(req: usize, reqLen: u32, buf: usize, cap: u32, lenPtr: usize): i32;
@external("orloj_v1", "response")
declare function _response(buf: usize, cap: u32, lenPtr: usize): i32;
@external("orloj_v1", "output")
declare function _output(ptr: usize, len: u32): i32;
@external("orloj_v1", "log")
declare function _log(level: i32, ptr: usize, len: u32): i32;
@external("orloj_v1", "now")
declare function _now(outPtr: usize): i32;
@external("orloj_v1", "emit")
declare function _emit(req: usize, reqLen: u32): i32;

@external("wasi_snapshot_preview1", "fd_write")
declare function fd_write(fd: u32, iovs: usize, iovsLen: u32, written: usize): u16;
@external("wasi_snapshot_preview1", "proc_exit")
declare function proc_exit(code: u32): void;

// Statuses every host function returns (docs/abi.md section 3).
export namespace Status {
  export const Ok: i32 = 0;
  export const NotFound: i32 = 1;
  export const PermissionDenied: i32 = 2;
  export const ToolError: i32 = 3;
  export const Transient: i32 = 4;
  export const InDoubt: i32 = 5;
  export const BudgetExceeded: i32 = 6;
  export const BufferTooSmall: i32 = 7;
  export const InvalidArgument: i32 = 8;
  export const Fault: i32 = 9;
  export const Timeout: i32 = 10;
}

const statusNames: string[] = [
  "ok", "not_found", "permission_denied", "tool_error", "transient", "in_doubt",
  "budget_exceeded", "buffer_too_small", "invalid_argument", "fault", "timeout",
];

// statusName is the status's name, as error bodies spell it.
export function statusName(status: i32): string {
  return status >= 0 && status < statusNames.length ? statusNames[status] : "unknown";
}

// Log levels for log().
export namespace Level {
  export const Debug: i32 = 0;
  export const Info: i32 = 1;
  export const Warn: i32 = 2;
  export const Error: i32 = 3;
}

// EXIT_TRANSIENT is the exit code that asks the host for a retry.
export const EXIT_TRANSIENT: u32 = 75;

// The first buffer offered for a body. A larger body costs one more host
// call (response), never a second tool call. asc's --use
// ORLOJ_FIRST_BUFFER=N changes it.
// @ts-ignore: a compile-time constant asc can override
@lazy const FIRST_BUFFER: u32 = isDefined(ORLOJ_FIRST_BUFFER) ? <u32>ORLOJ_FIRST_BUFFER : 4096;

// One 4-byte slot for the lengths the host writes.
const lenSlot: usize = memory.data(8);

// An answer from the host: the final status and the body (the result on
// ok, else the error body {"status": "...", "message": "..."}).
export class Answer {
  constructor(public status: i32, public body: string) {}

  get ok(): bool {
    return this.status == Status.Ok;
  }

  // message is the error body's message, or the body itself.
  get message(): string {
    const start = this.body.indexOf("\"message\":\"");
    if (start < 0) return this.body;
    return unquote(this.body, start + 10);
  }
}

// withBody does the buffer_too_small dance: when the body does not fit, the
// host keeps it and response copies it into a buffer of the announced size,
// returning the original call's status. Any status can arrive as
// buffer_too_small first, so nothing branches on it before this.
function finish(status: i32, buf: ArrayBuffer): Answer {
  let tries = 0;
  while (status == Status.BufferTooSmall && tries < 4) {
    tries++;
    const want = load<u32>(lenSlot);
    buf = new ArrayBuffer(<i32>want);
    store<u32>(lenSlot, 0);
    status = _response(changetype<usize>(buf), want, lenSlot);
  }
  if (status == Status.Fault || status == Status.BufferTooSmall) return new Answer(status, "");
  const len = load<u32>(lenSlot);
  return new Answer(status, String.UTF8.decodeUnsafe(changetype<usize>(buf), <usize>min(len, <u32>buf.byteLength)));
}

type HostFn = (req: usize, reqLen: u32, buf: usize, cap: u32, lenPtr: usize) => i32;

function request(fn: HostFn, req: string): Answer {
  const r = String.UTF8.encode(req);
  const buf = new ArrayBuffer(<i32>FIRST_BUFFER);
  store<u32>(lenSlot, 0);
  const st = fn(changetype<usize>(r), <u32>r.byteLength, changetype<usize>(buf), FIRST_BUFFER, lenSlot);
  return finish(st, buf);
}

// input is the task input, a JSON text ("" when it cannot be read).
export function input(): string {
  const buf = new ArrayBuffer(<i32>FIRST_BUFFER);
  store<u32>(lenSlot, 0);
  const a = finish(_input(changetype<usize>(buf), FIRST_BUFFER, lenSlot), buf);
  return a.ok ? a.body : "";
}

// call invokes a tool with a whole request: {"tool", "params", "key"}.
export function call(req: string): Answer {
  return request((r, n, b, c, l) => _call(r, n, b, c, l), req);
}

// callJSON invokes tool with params (JSON text).
export function callJSON(tool: string, params: string): Answer {
  return call(callRequest(tool, params, null));
}

// callKeyed is callJSON with a key, which names the call for the ledger.
export function callKeyed(tool: string, params: string, key: string): Answer {
  return call(callRequest(tool, params, key));
}

// callBatch invokes the JSON array of call requests at once.
export function callBatch(requests: string): Answer {
  return request((r, n, b, c, l) => _callBatch(r, n, b, c, l), requests);
}

// wait waits durably: a sleep or a signal (docs/waits.md).
export function wait(req: string): Answer {
  return request((r, n, b, c, l) => _wait(r, n, b, c, l), req);
}

// callRequest is {"tool": tool, "params": params} (with "key" if given).
export function callRequest(tool: string, params: string, key: string | null): string {
  let r = "{\"tool\":" + quote(tool) + ",\"params\":" + params;
  if (key !== null) r += ",\"key\":" + quote(key);
  return r + "}";
}

// output sets the task output, a JSON text.
export function output(json: string): i32 {
  const b = String.UTF8.encode(json);
  return _output(changetype<usize>(b), <u32>b.byteLength);
}

// log writes one line to the task's journal.
export function log(level: i32, message: string): void {
  const b = String.UTF8.encode(message);
  _log(level, changetype<usize>(b), <u32>min(b.byteLength, 1 << 20));
}

// now is the recorded time in nanoseconds since the Unix epoch (0 if the
// host refused).
export function now(): u64 {
  const slot = memory.data(8);
  return _now(slot) == Status.Ok ? load<u64>(slot) : 0;
}

// emit stages an outbox effect, performed once after the task succeeds.
export function emit(tool: string, params: string): i32 {
  return emitRequest(callRequest(tool, params, null));
}

// emitKeyed is emit with a key, which names the effect for the ledger.
export function emitKeyed(tool: string, params: string, key: string): i32 {
  return emitRequest(callRequest(tool, params, key));
}

function emitRequest(req: string): i32 {
  const b = String.UTF8.encode(req);
  return _emit(changetype<usize>(b), <u32>b.byteLength);
}

// stderr writes text to the attempt's stderr, which the host keeps with the
// task's error.
export function stderr(text: string): void {
  const b = String.UTF8.encode(text);
  const iov = memory.data(16);
  store<usize>(iov, changetype<usize>(b));
  store<usize>(iov, <usize>b.byteLength, sizeof<usize>());
  fd_write(2, iov, 1, iov + 8);
}

// exit ends the attempt with code.
export function exit(code: u32): void {
  proc_exit(code);
}

// fail ends the attempt after status: exit 75 (retry) for transient, 1
// otherwise, writing message to stderr and the journal.
export function fail(status: i32, message: string): void {
  stderr(message + "\n");
  log(Level.Error, message);
  proc_exit(status == Status.Transient ? EXIT_TRANSIENT : 1);
}

// abort is where asconfig.json routes the runtime's aborts (failed
// assertions, out-of-bounds array access): a bug no retry would fix.
export function orlojAbort(message: string | null, fileName: string | null, line: u32, column: u32): void {
  let m = "abort";
  if (message !== null) m += ": " + message;
  if (fileName !== null) m += " at " + fileName + ":" + line.toString() + ":" + column.toString();
  stderr(m + "\n");
  proc_exit(1);
}

const HEX = "0123456789abcdef";

// quote is s as a JSON string.
export function quote(s: string): string {
  let out = "\"";
  let from = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0x20 && c != 0x22 && c != 0x5c) continue;
    out += s.substring(from, i);
    from = i + 1;
    if (c == 0x22) out += "\\\"";
    else if (c == 0x5c) out += "\\\\";
    else if (c == 0x0a) out += "\\n";
    else if (c == 0x0d) out += "\\r";
    else if (c == 0x09) out += "\\t";
    else out += "\\u00" + HEX.charAt(c >> 4) + HEX.charAt(c & 15);
  }
  return out + s.substring(from) + "\"";
}

// unquote decodes the JSON string starting at s[at] (the opening quote).
export function unquote(s: string, at: i32): string {
  let out = "";
  let i = at + 1;
  let from = i;
  while (i < s.length) {
    const c = s.charCodeAt(i);
    if (c == 0x22) break;
    if (c != 0x5c) {
      i++;
      continue;
    }
    out += s.substring(from, i);
    const e = s.charCodeAt(i + 1);
    i += 2;
    if (e == 0x6e) out += "\n";
    else if (e == 0x72) out += "\r";
    else if (e == 0x74) out += "\t";
    else if (e == 0x62) out += "\b";
    else if (e == 0x66) out += "\f";
    else if (e == 0x75) {
      out += String.fromCharCode(<i32>parseInt(s.substring(i, i + 4), 16));
      i += 4;
    } else out += String.fromCharCode(e);
    from = i;
  }
  return out + s.substring(from, i);
}
