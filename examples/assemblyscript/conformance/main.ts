// conformance in AssemblyScript: the conformance agent of sdk/assemblyscript.
// It reads a case name from its input, {"case": "...", "url": "..."},
// performs that case with the SDK's public API (and, for randomness, WASI's
// random_get), and writes what it saw as its output. The conformance suite
// (docs/sdks.md, Conformance) runs every case through `orlojd run` and on a
// node and checks the results; the Go, C and Rust agents do the same.
import * as orloj from "../../../sdk/assemblyscript/assembly/index";
import * as json from "../../../sdk/assemblyscript/assembly/json";

const quote = orloj.quote;

@external("wasi_snapshot_preview1", "random_get")
declare function random_get(buf: usize, len: u32): u16;

function get(url: string, path: string): string {
  return "{\"url\":" + quote(url + path) + "}";
}

// must ends the attempt unless a is ok (exit 75 for transient).
function must(step: string, a: orloj.Answer): orloj.Answer {
  if (!a.ok) orloj.fail(a.status, step + ": " + orloj.statusName(a.status) + ": " + a.message);
  return a;
}

function put(json: string): void {
  const st = orloj.output(json);
  if (st != orloj.Status.Ok) orloj.fail(st, "output: " + orloj.statusName(st));
}

const HEX = "0123456789abcdef";

function run(): void {
  const raw = orloj.input();
  const input = json.parse(raw);
  const name = input !== null ? input.str("case") : null;
  const url = input !== null ? input.str("url") : null;
  if (name === null || url === null) {
    orloj.stderr("conformance: the input needs string members case and url\n");
    orloj.exit(2);
    return;
  }

  if (name == "echo") {
    put(raw);
  } else if (name == "large_response") {
    const res = must("call http", orloj.callJSON("http", get(url, "/big")));
    // The body arrives decoded; its UTF-8 bytes are the result's bytes.
    const b = Uint8Array.wrap(String.UTF8.encode(res.body));
    let h: u32 = 2166136261; // FNV-1a, 32 bits
    for (let i = 0; i < b.length; i++) h = (h ^ <u32>b[i]) * 16777619;
    put("{\"len\":" + b.length.toString() + ",\"fnv1a\":" + h.toString() + "}");
  } else if (name == "statuses") {
    const tools = ["http", "http", "undeclared", "bad tool!"];
    const params = [get(url, "/tool_error"), get(url, "/transient"), "null", "null"];
    const answers: string[] = [];
    for (let i = 0; i < tools.length; i++) {
      const a = orloj.callJSON(tools[i], params[i]);
      if (a.ok) orloj.fail(orloj.Status.ToolError, tools[i] + " answered ok: " + a.body);
      answers.push("{\"status\":" + quote(orloj.statusName(a.status)) + ",\"message\":" + quote(a.message) + "}");
    }
    put("{\"answers\":[" + answers.join(",") + "]}");
  } else if (name == "replay") {
    const t1 = orloj.now(), t2 = orloj.now();
    const r = new Uint8Array(16);
    if (random_get(r.dataStart, 16) != 0) orloj.fail(orloj.Status.Fault, "random_get failed");
    let hex = "";
    for (let i = 0; i < 16; i++) hex += HEX.charAt(r[i] >> 4) + HEX.charAt(r[i] & 15);
    orloj.log(orloj.Level.Info, "replay " + t1.toString() + " " + t2.toString() + " " + hex);
    // transient: the attempt exits 75, and the retry replays
    must("call http", orloj.callJSON("http", get(url, "/flaky")));
    const t3 = orloj.now();
    put("{\"now\":[" + t1.toString() + "," + t2.toString() + "," + t3.toString() + "],\"random\":\"" + hex + "\"}");
  } else if (name == "exit_transient") {
    orloj.exit(75);
  } else if (name == "exit_permanent") {
    orloj.exit(3);
  } else if (name == "exit_after_transient") {
    const a = orloj.callJSON("http", get(url, "/transient"));
    orloj.stderr("conformance: http answered " + orloj.statusName(a.status) + "\n");
    orloj.exit(1);
  } else if (name == "exit_after_denied") {
    const a = orloj.callJSON("undeclared", "null");
    orloj.stderr("conformance: undeclared answered " + orloj.statusName(a.status) + "\n");
    orloj.exit(1);
  } else if (name == "emit") {
    const p = "{\"method\":\"POST\",\"url\":" + quote(url + "/effect") + ",\"body\":\"conformance\"}";
    const sts = [orloj.emit("http", p), orloj.emitKeyed("http", p, "k1"), orloj.emit("http", p)];
    for (let i = 0; i < sts.length; i++) {
      if (sts[i] != orloj.Status.Ok) orloj.fail(sts[i], "emit http: " + orloj.statusName(sts[i]));
    }
    put("{\"emitted\":3}");
  } else if (name == "occurrence") {
    const p = get(url, "/occ");
    must("call http", orloj.callJSON("http", p));
    must("call http", orloj.callKeyed("http", p, "k"));
    must("call http", orloj.callJSON("http", p));
    put("{\"calls\":3}");
  } else {
    orloj.stderr("conformance: unknown case " + name + "\n");
    orloj.exit(2);
  }
}

run();
