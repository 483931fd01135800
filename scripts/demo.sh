#!/usr/bin/env bash
# make demo: the problem statement, end to end, on one node.
#
# A six-step document pipeline (fetch, OCR, classify, extract, validate,
# record) runs against local stand-ins for its services, which count every
# request. The records database fails twice; a poison document dead-letters;
# a fixed agent version finishes it from the failed step; a task over its
# token budget waits in the DLQ until it is granted more. Then a
# function-calling support agent loses its node mid-loop: the services see
# each effect once and the model is not asked again for finished turns; and
# its refund, put under approval, waits for a person and is made once.
# Every step uses the orlojd CLI. Everything runs in a temporary directory and is stopped on
# exit, failure or Ctrl-C.
#
# Needs bin/orlojd, bin/agents/docpipeline.wasm and bin/agents/support.wasm
# (make build agents) and Go.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
ORLOJD_BIN=$PWD/bin/orlojd
AGENT_V1=$PWD/bin/agents/docpipeline.wasm
SUPPORT=$PWD/bin/agents/support.wasm
for f in "$ORLOJD_BIN" "$AGENT_V1" "$SUPPORT"; do
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
cp "$SUPPORT" "$work/support.wasm"

"$work/standins" -addr 127.0.0.1:0 >"$work/standins.url" &
standins_pid=$!
for _ in $(seq 100); do [[ -s $work/standins.url ]] && break; sleep 0.05; done
S=$(<"$work/standins.url")
[[ -n $S ]] || { echo "demo: the stand-ins did not start" >&2; exit 1; }
note "stand-ins for the blob store, OCR, model and records database at $S (they count every request)"

api_port=$(free_port)
raft_port=$(free_port)
export ORLOJ_ADDR=127.0.0.1:$api_port ORLOJ_DATA_DIR=$work/data
# The support agent's model is the endpoint "support", the stand-ins'
# scripted function-calling model; payments is an http tool declared unsafe.
support_endpoint='[{"name":"support","base_url":"'$S'/support/v1","model":"standin-support-1"}]'

# start_node starts the node (again, after a kill: same data dir) and waits
# until it is leader.
start_node() {
	"$ORLOJD_BIN" serve --data-dir "$ORLOJ_DATA_DIR" --api-addr "$ORLOJ_ADDR" --raft-addr "127.0.0.1:$raft_port" \
		--node-id n1 --http-allow 127.0.0.1 --model-url "$S/v1" --model standin-1 --lease-ttl 2s \
		--http-tool payments:unsafe --model-endpoints "$support_endpoint" \
		--log-level warn >>"$work/orlojd.log" 2>&1 &
	serve_pid=$!
	local ready=""
	for _ in $(seq 300); do
		kill -0 "$serve_pid" 2>/dev/null || { echo "demo: orlojd serve exited" >&2; exit 1; }
		if orlojd cluster members 2>/dev/null | grep -q leader; then ready=1; break; fi
		sleep 0.1
	done
	[[ -n $ready ]] || { echo "demo: the node did not elect itself leader in 30 s" >&2; exit 1; }
}

say "Start one node (data in a temporary dir, 2 s leases)"
printf '%s$ orlojd serve --data-dir %s --api-addr %s --raft-addr 127.0.0.1:%s \\\n    --node-id n1 --http-allow 127.0.0.1 --model-url %s/v1 --model standin-1 --lease-ttl 2s \\\n    --http-tool payments:unsafe --model-endpoints %s &%s\n' \
	"$bold" "$ORLOJ_DATA_DIR" "$ORLOJ_ADDR" "$raft_port" "$S" "'$support_endpoint'" "$off"
start_node
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
note "a bug fix and a budget raised; 2 failed writes retried; 3 records written."

say "(f) A function-calling agent, and a node killed mid-loop"
note "The support agent (examples/agents/support) gives a model four tools: lookup_order and lookup_customer"
note "(http GET), post_reply (http POST; the helpdesk dedupes by Idempotency-Key) and issue_refund (the"
note "payments tool, declared unsafe: payments applies every refund it is sent). The scripted model looks"
note "up the order and the customer at once, then replies and refunds at once, then answers."
run orlojd agent push support.wasm --name support --tools http,payments,model
printf '{"ticket_id": "T-1", "order_id": "O-1001", "email": "ann@example.com", "text": "My order arrived damaged.", "shop_url": "%s/shop", "helpdesk_url": "%s/helpdesk", "payments_url": "%s/payments"}\n' "$S" "$S" "$S" >ticket.json
note "ticket.json: $(<ticket.json)"
"$work/standins" -url "$S" -hold reply
note "The helpdesk will hold the reply: the node dies with it in flight."
printf '%s$ orlojd task submit support --input @ticket.json%s\n' "$bold" "$off"
ticket=$(orlojd task submit support --input @ticket.json)
echo "$ticket"
"$work/standins" -url "$S" -wait-held reply
# The refund went out at the same time as the reply; kill once its result is
# in the ledger (a kill with the refund itself in flight would leave it in
# doubt: the task would go to the DLQ for a person, never refund twice).
for _ in $(seq 300); do
	orlojd task calls "$ticket" | grep -Eq 'payments +invoked' && break
	sleep 0.05
done
orlojd task calls "$ticket" | grep -Eq 'payments +invoked' || { echo "demo: the refund was never recorded" >&2; exit 1; }
note "Model turns 1 and 2, both lookups and the refund are recorded; the reply is in flight. Kill the node:"
run kill -KILL "$serve_pid"
wait "$serve_pid" 2>/dev/null || true
"$work/standins" -url "$S" -release reply
note "Restart it on the same data dir; the task's lease expires and another attempt takes over."
printf '%s$ orlojd serve ... &%s\n' "$bold" "$off"
start_node
run orlojd task wait "$ticket"
run orlojd task calls "$ticket"
note "Attempt 2 replayed model turns 1 and 2, both lookups and the refund from the ledger; it sent the"
note "reply again with the same idempotency key and asked the model only for turn 3."
support_summary=$("$work/standins" -url "$S" -support)
echo "$support_summary"
want="shop lookups 2; helpdesk requests 2, replies written 1; payments requests 1, refunds applied 1; model requests 3, per turn 1 1 1"
if [[ $support_summary != "$want" ]]; then
	echo "demo: expected: $want" >&2
	exit 1
fi
note "Each effect once: 1 reply written (its second request deduplicated), 1 refund applied; each model"
note "turn asked once."

say "(g) A refund that needs a person: an approval bound to the exact call"
note "The same agent, pushed with --approve payments: each refund waits until a person approves that"
note "very call (its ID is the hash of the task, the tool and the exact params), holding no worker."
run orlojd agent push support.wasm --name support-guarded --tools http,payments,model --approve payments
sed 's/"T-1"/"T-2"/' ticket.json >ticket2.json
printf '%s$ orlojd task submit support-guarded --input @ticket2.json%s\n' "$bold" "$off"
guarded=$(orlojd task submit support-guarded --input @ticket2.json)
echo "$guarded"
approval=""
for _ in $(seq 300); do
	approval=$(orlojd approval ls -o json | sed -n 's/.*"id": *"\([0-9a-f]*\)".*/\1/p' | head -1)
	[[ -n $approval ]] && break
	sleep 0.1
done
[[ -n $approval ]] || { echo "demo: the refund never came to wait for approval" >&2; exit 1; }
run orlojd task get "$guarded"
run orlojd approval show "$approval"
case $("$work/standins" -url "$S" -support) in
*"payments requests 1, refunds applied 1"*) ;;
*) echo "demo: a refund under approval reached payments before the approval" >&2; exit 1 ;;
esac
note "Payments has still seen only section (f)'s refund: this one waits. Approve it:"
run orlojd approval approve "$approval" --by demo --note "damaged on arrival, checked"
run orlojd task wait "$guarded"
guarded_summary=$("$work/standins" -url "$S" -support)
echo "$guarded_summary"
case $guarded_summary in
*"payments requests 2, refunds applied 2"*) ;;
*) echo "demo: expected the approved refund to be applied once (2 in all)" >&2; exit 1 ;;
esac
note "The approved refund was made once, after the approval. Done in $(($(date +%s) - started)) s."
