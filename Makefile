# Orloj build. Every target does its own set-up; nothing needs installing by hand
# beyond Go (see README).

GO        ?= go
BIN       := bin
AGENTS    := $(notdir $(wildcard examples/agents/*))
BENCHSTAT := $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
COUNT     ?= 6

.PHONY: all build agents test test-short bench bench-e2e check demo clean chaos brick

all: build agents

build:
	$(GO) build -o $(BIN)/orlojd ./cmd/orlojd

# The examples build as WASI reactors (-buildmode=c-shared): the host runs
# their Go start-up once per agent version instead of once per attempt (see
# docs/abi.md). AGENT_BUILDMODE=exe builds them as commands, which run too.
AGENT_BUILDMODE ?= c-shared

agents: $(AGENTS:%=$(BIN)/agents/%.wasm)

$(BIN)/agents/%.wasm: FORCE
	@mkdir -p $(BIN)/agents
	GOOS=wasip1 GOARCH=wasm $(GO) build -trimpath -buildmode=$(AGENT_BUILDMODE) -o $@ ./examples/agents/$*

FORCE:

# The whole suite under the race detector. Fuzz targets run their seed corpus.
test: build agents
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./examples/...
	$(GO) test -race -timeout 20m ./...

bench: build agents
	@mkdir -p $(BIN)
	$(GO) test -run '^$$' -bench . -benchmem -count $(COUNT) -timeout 60m ./... | tee $(BIN)/bench.txt
	$(BENCHSTAT) $(BIN)/bench.txt

# End to end against the running product: orlojd serve on loopback, the
# six-step HTTP workload, tasks/s, p50/p95, CPU per task and peak memory.
# PEER=dbos also runs DBOS Transact on a private PostgreSQL 15 (installed
# with apt-get if missing) and prints the ratios of each round.
PEER ?=
WORKERS ?= 4
NODES ?= 1
ROUNDS ?= 2
bench-e2e: build
	@if [ "$(PEER)" = dbos ] && [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then \
		echo "installing postgresql-15"; apt-get install -y postgresql-15 >/dev/null; fi
	$(GO) run ./bench/e2e -orlojd $(BIN)/orlojd -workers $(WORKERS) -nodes $(NODES) -rounds $(ROUNDS) $(if $(PEER),-peer $(PEER))

# Fails when formatting, vet or go.mod would change anything.
check:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./examples/...
	$(GO) mod tidy
	@git diff --exit-code -- go.mod go.sum || { echo "go mod tidy changed go.mod/go.sum"; exit 1; }

demo: build agents
	bash scripts/demo.sh

clean:
	rm -rf $(BIN)

# The long fault run: 3 real nodes, 600 tasks, 75 s of kills, pauses and
# partitions; prints the figures docs/BENCHMARKS.md quotes.
# CHAOS_NODES=5 runs five.
CHAOS_NODES ?= 3
chaos: build
	$(GO) test ./chaos/ -run TestChaos -count 1 -v -timeout 30m -chaos.long -chaos.nodes $(CHAOS_NODES)

# The brick scenarios at full size: on 3 real nodes, 20,000 denied calls,
# 40,000 emits, and a task that records 20,000 calls and is retried.
brick: build
	$(GO) test ./chaos/ -run TestBrick -count 1 -v -timeout 30m -brick.calls 20000
