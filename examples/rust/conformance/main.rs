//! conformance in Rust: the conformance agent of the `orloj` crate
//! (sdk/rust). It reads a case name from its input, `{"case": "...", "url":
//! "..."}`, performs that case with the crate's public API (and, for
//! randomness, WASI's `random_get`, which std does not expose), and writes
//! what it saw as its output. The conformance suite (docs/sdks.md,
//! Conformance) runs every case through `orlojd run` and on a node and
//! checks the results; the Go, C and AssemblyScript agents do the same.

use orloj::json;
use orloj::{quote, Error, Level, Result};

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn random_get(buf: *mut u8, len: u32) -> u16;
}

fn get(url: &str, path: &str) -> String {
    format!("{{\"url\":{}}}", quote(&format!("{}{}", url, path)))
}

fn run() -> Result<()> {
    let raw = orloj::input_string()?;
    let input = json::parse(&raw).map_err(|e| Error::permanent(format!("input: {}", e)))?;
    let field = |name: &str| -> Result<String> {
        input
            .get(name)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::permanent(format!("the input has no string {}", name)))
    };
    let case = field("case")?;
    let url = field("url")?;
    match case.as_str() {
        "echo" => orloj::output(&raw),
        "large_response" => {
            let res = orloj::call(orloj::call_request("http", &get(&url, "/big"), None).as_bytes())?;
            let mut h: u32 = 2166136261; // FNV-1a, 32 bits
            for b in &res {
                h = (h ^ *b as u32).wrapping_mul(16777619);
            }
            orloj::output(&format!("{{\"len\":{},\"fnv1a\":{}}}", res.len(), h))
        }
        "statuses" => {
            let calls = [
                ("http", get(&url, "/tool_error")),
                ("http", get(&url, "/transient")),
                ("undeclared", "null".to_string()),
                ("bad tool!", "null".to_string()),
            ];
            let mut answers = Vec::new();
            for (tool, params) in calls.iter() {
                match orloj::call_json(tool, params) {
                    Ok(r) => return Err(Error::permanent(format!("{} answered ok: {}", tool, r))),
                    Err(e) => answers.push(format!(
                        "{{\"status\":{},\"message\":{}}}",
                        quote(e.status.name()),
                        quote(&e.message)
                    )),
                }
            }
            orloj::output(&format!("{{\"answers\":[{}]}}", answers.join(",")))
        }
        "replay" => {
            let t1 = orloj::now()?;
            let t2 = orloj::now()?;
            let mut r = [0u8; 16];
            if unsafe { random_get(r.as_mut_ptr(), r.len() as u32) } != 0 {
                return Err(Error::permanent("random_get failed"));
            }
            let hex: String = r.iter().map(|b| format!("{:02x}", b)).collect();
            orloj::log(Level::Info, &format!("replay {} {} {}", t1, t2, hex));
            // transient: main exits 75, and the retry replays
            orloj::call_json("http", &get(&url, "/flaky"))?;
            let t3 = orloj::now()?;
            orloj::output(&format!("{{\"now\":[{},{},{}],\"random\":\"{}\"}}", t1, t2, t3, hex))
        }
        "exit_transient" => std::process::exit(75),
        "exit_permanent" => std::process::exit(3),
        "exit_after_transient" => {
            let r = orloj::call_json("http", &get(&url, "/transient"));
            eprintln!("conformance: {:?}", r);
            std::process::exit(1)
        }
        "exit_after_denied" => {
            let r = orloj::call_json("undeclared", "null");
            eprintln!("conformance: {:?}", r);
            std::process::exit(1)
        }
        "emit" => {
            let p = format!(
                "{{\"method\":\"POST\",\"url\":{},\"body\":\"conformance\"}}",
                quote(&format!("{}/effect", url))
            );
            orloj::emit("http", &p)?;
            orloj::emit_keyed("http", &p, "k1")?;
            orloj::emit("http", &p)?;
            orloj::output("{\"emitted\":3}")
        }
        "occurrence" => {
            let p = get(&url, "/occ");
            orloj::call_json("http", &p)?;
            orloj::call_keyed("http", &p, "k")?;
            orloj::call_json("http", &p)?;
            orloj::output("{\"calls\":3}")
        }
        other => {
            eprintln!("conformance: unknown case {:?}", other);
            std::process::exit(2)
        }
    }
}

fn main() {
    orloj::main(run)
}
