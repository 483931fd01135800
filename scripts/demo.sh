#!/usr/bin/env bash
# make demo: the problem statement, end to end, on one node.
#
# A six-step document pipeline (fetch, OCR, classify, extract, validate,
# record) runs against local stand-ins for its services, which count every
# request. The records database fails twice; a poison document dead-letters;
# a fixed agent version finishes it from the failed step; a task over its
# token budget waits in the DLQ until it is granted more. Every step uses
# the orlojd CLI. Everything runs in a temporary directory and is stopped on
# exit, failure or Ctrl-C.
#
# Needs bin/orlojd and bin/agents/docpipeline.wasm (make build agents) and Go.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
ORLOJD_BIN=$PWD/bin/orlojd
AGENT_V1=$PWD/bin/agents/docpipeline.wasm
for f in "$ORLOJD_BIN" "$AGENT_V1"; do
	[[ -f $f ]] || { echo "demo: $f is missing; run make demo (it builds it)" >&2; exit 1; }
done

work=$(mktemp -d "${TMPDIR:-/tmp}/orloj-demo.XXXXXX")
serve_pid="" standins_pid=""

if [[ -t 1 ]]; then bold=$'\e[1m' dim=$'\e[2m' off=$'\e[0m'; else bold="" dim="" off=""; fi
say() { printf '\n%s%s%s\n' "$bold" "$*" "$off"; }
note() { printf '%s  %s%s\n' "$dim" "$*" "$off"; }

cleanup() {
	status=$?
	trap - EXIT INT TERM
	if [[ $status -eq 130 ]]; then
		echo "demo: interrupted; stopping what it started" >&2
	elif [[ $status -ne 0 && -f $work/orlojd.log ]]; then
		echo "demo: failed (exit $status); the node's log ends with:" >&2
		tail -n 20 "$work/orlojd.log" >&2 || true
	fi
	# SIGTERM drains the node; wait so its files are closed before rm.
	for pid in $serve_pid $standins_pid; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in $serve_pid $standins_pid; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# orlojd is the CLI as the reader would type it; run shows each command.
orlojd() { "$ORLOJD_BIN" "$@"; }
run() {
	printf '%s$ %s%s\n' "$bold" "$*" "$off"
	"$@"
}

# free_port picks a loopback port nothing listens on.
free_port() {
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "demo: no free port found" >&2
	return 1
}

started=$(date +%s)
say "Orloj demo: a document pipeline that survives a failing database, a poison document and a bug fix"

# Build what make does not: the stand-ins and the fixed agent version.
"$GO" build -o "$work/standins" ./examples/standins/cmd/standins
GOOS=wasip1 GOARCH=wasm "$GO" build -trimpath -buildmode=c-shared -ldflags "-X main.defaultDate=$(date -u +%F)" \
	-o "$work/docpipeline-v2.wasm" ./examples/agents/docpipeline
cp "$AGENT_V1" "$work/docpipeline.wasm"

"$work/standins" -addr 127.0.0.1:0 >"$work/standins.url" &
standins_pid=$!
for _ in $(seq 100); do [[ -s $work/standins.url ]] && break; sleep 0.05; done
S=$(<"$work/standins.url")
[[ -n $S ]] || { echo "demo: the stand-ins did not start" >&2; exit 1; }
note "stand-ins for the blob store, OCR, model and records database at $S (they count every request)"

api_port=$(free_port)
raft_port=$(free_port)
export ORLOJ_ADDR=127.0.0.1:$api_port ORLOJ_DATA_DIR=$work/data
say "Start one node (data in a temporary dir, 2 s leases)"
printf '%s$ orlojd serve --data-dir %s --api-addr %s --raft-addr 127.0.0.1:%s \\\n    --node-id n1 --http-allow 127.0.0.1 --model-url %s/v1 --model standin-1 --lease-ttl 2s &%s\n' \
	"$bold" "$ORLOJ_DATA_DIR" "$ORLOJ_ADDR" "$raft_port" "$S" "$off"
"$ORLOJD_BIN" serve --data-dir "$ORLOJ_DATA_DIR" --api-addr "$ORLOJ_ADDR" --raft-addr "127.0.0.1:$raft_port" \
	--node-id n1 --http-allow 127.0.0.1 --model-url "$S/v1" --model standin-1 --lease-ttl 2s \
	--log-level warn >"$work/orlojd.log" 2>&1 &
serve_pid=$!
ready=""
for _ in $(seq 300); do
	kill -0 "$serve_pid" 2>/dev/null || { echo "demo: orlojd serve exited" >&2; exit 1; }
	if orlojd cluster members 2>/dev/null | grep -q leader; then ready=1; break; fi
	sleep 0.1
done
[[ -n $ready ]] || { echo "demo: the node did not elect itself leader in 30 s" >&2; exit 1; }
note "ready; the CLI finds it through ORLOJ_ADDR and reads the admin token from $ORLOJ_DATA_DIR/token"

say "Push the agent: fetch -> OCR -> classify (model) -> extract (model) -> validate -> record"
cd "$work"
run orlojd agent push docpipeline.wasm --name docpipeline --version v1 --tools http,model

say "(a) The records database will fail the next 2 writes. Submit an invoice."
"$work/standins" -url "$S" -fail-records 2
printf '{"document": "%s/blobs/invoice-1.txt", "ocr_url": "%s/ocr", "records_url": "%s/records"}\n' "$S" "$S" "$S" >invoice.json
printf '{"document": "%s/blobs/poison.txt", "ocr_url": "%s/ocr", "records_url": "%s/records"}\n' "$S" "$S" "$S" >poison.json
note "invoice.json: $(<invoice.json)"
printf '%s$ orlojd task submit docpipeline --input @invoice.json%s\n' "$bold" "$off"
invoice=$(orlojd task submit docpipeline --input @invoice.json)
echo "$invoice"
run orlojd task wait "$invoice"
note "Attempts 1 and 2 failed on the record write (503) and were retried with backoff."
run orlojd task calls "$invoice"
note "OCR and both model calls were invoked once, in attempt 1; attempts 2 and 3 replayed them"
note "from the ledger. Only the record write ran again, with the same idempotency key."

say "(b) A poison document: it has no date, so validation fails. That is permanent: straight to the DLQ."
printf '%s$ orlojd task submit docpipeline --input @poison.json%s\n' "$bold" "$off"
poison=$(orlojd task submit docpipeline --input @poison.json)
echo "$poison"
printf '%s$ orlojd task wait %s%s\n' "$bold" "$poison" "$off"
rc=0
orlojd task wait -q "$poison" >/dev/null || rc=$?
[[ $rc -eq 1 ]] || { echo "demo: task wait exited $rc for the poison task, want 1 (dead_letter)" >&2; exit 1; }
note "exit status 1: the task ended in the dead-letter queue, not succeeded"
run orlojd dlq ls
run orlojd dlq show "$poison"

say "(c) The fix: docpipeline v2 gives a missing date a default. Retry the dead letter on v2."
run orlojd agent push docpipeline-v2.wasm --name docpipeline --version v2 --tools http,model
run orlojd dlq retry "$poison" --agent-version v2
run orlojd task wait "$poison"
run orlojd task calls "$poison"
note "v2 made the same fetch, OCR and model calls, so they were replayed from the ledger: only"
note "the record write, the step that never happened, ran."

say "(d) A budget: this invoice's task may spend 20 model tokens. Classify spends more, so extract is refused."
note "A call over budget never reaches its tool; the task waits in the DLQ for a person to grant more."
printf '{"document": "%s/blobs/invoice-2.txt", "ocr_url": "%s/ocr", "records_url": "%s/records"}\n' "$S" "$S" "$S" >invoice2.json
printf '%s$ orlojd task submit docpipeline --input @invoice2.json --budget tokens=20%s\n' "$bold" "$off"
capped=$(orlojd task submit docpipeline --input @invoice2.json --budget tokens=20)
echo "$capped"
rc=0
orlojd task wait -q "$capped" >/dev/null || rc=$?
[[ $rc -eq 1 ]] || { echo "demo: task wait exited $rc for the capped task, want 1 (dead_letter)" >&2; exit 1; }
run orlojd task get "$capped"
run orlojd dlq retry "$capped" --budget tokens=100000
run orlojd task wait "$capped"
run orlojd task calls "$capped"
note "The retry replayed the fetch, OCR and classify calls (their tokens counted once) and ran the rest."

say "(e) What the services saw"
summary=$("$work/standins" -url "$S" -summary)
echo "$summary"
want="blob 3, ocr 3, model 6, records 5 requests; 3 records written; 0 duplicate effects"
if [[ $summary != "$want" ]]; then
	echo "demo: expected: $want" >&2
	exit 1
fi
note "Three documents: each fetched, OCR'd and sent to the model exactly once, across 7 attempts,"
note "a bug fix and a budget raised; 2 failed writes retried; 3 records written. Done in $(($(date +%s) - started)) s."
