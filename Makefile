# Orloj build. Every target does its own set-up; nothing needs installing by hand
# beyond Go (see README).

GO        ?= go
BIN       := bin
AGENTS    := $(notdir $(wildcard examples/agents/*))
BENCHSTAT := $(GO) run golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da
COUNT     ?= 6

.PHONY: all build agents guest-agents c-agents rust-agents as-agents rust-sdk-test test test-short bench bench-e2e check demo clean chaos brick

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

# Agents in C, Rust and AssemblyScript, built with their own toolchains
# (docs/sdks.md): clang with lld, wasi-libc and the wasm32 compiler-rt
# builtins for C; a rustc with the wasm32 WASI standard library for Rust;
# node and npm for AssemblyScript. Debian:
#   apt-get install clang lld wasi-libc libclang-rt-dev-wasm32 rustc libstd-rust-dev-wasm32 npm
# `make test` builds them; `make agents` and `make demo` need only Go.
CLANG        ?= clang
WASI_SYSROOT ?=
CFLAGS_WASM  ?= -Oz -Wall -Wextra -Werror -Wl,--strip-all
C_AGENTS     := $(notdir $(wildcard examples/c/*))
RUST_AGENTS  := $(notdir $(wildcard examples/rust/*))

# RUSTC: the first rustc whose sysroot has a WASI standard library (rustup's
# rustc, first on PATH, often has none, and Debian's is /usr/bin/rustc). The
# target is wasm32-wasip1 from Rust 1.78 on, wasm32-wasi before.
ifeq ($(origin RUSTC),undefined)
RUSTC := $(shell for r in rustc /usr/bin/rustc; do s=$$($$r --print sysroot 2>/dev/null) || continue; \
	if [ -d $$s/lib/rustlib/wasm32-wasip1 ] || [ -d $$s/lib/rustlib/wasm32-wasi ]; then echo $$r; break; fi; done)
endif
RUST_TARGET ?= $(shell s=$$($(RUSTC) --print sysroot 2>/dev/null); \
	if [ -d $$s/lib/rustlib/wasm32-wasip1 ]; then echo wasm32-wasip1; else echo wasm32-wasi; fi)
# -reference-types: Rust 1.82 and later (LLVM 19) turn reference types on by
# default; Orloj's sandbox refuses them (docs/abi.md, section 1).
RUSTFLAGS_WASM ?= -C opt-level=s -C target-feature=-reference-types -C strip=symbols -C lto -C codegen-units=1

guest-agents: c-agents rust-agents as-agents

# Each agent is also built with an 8-byte first buffer (NAME-tinybuf.wasm),
# so that every answer takes the buffer_too_small → response path; the e2e
# tests run both.
c-agents: $(C_AGENTS:%=$(BIN)/agents-c/%.wasm) $(C_AGENTS:%=$(BIN)/agents-c/%-tinybuf.wasm)

$(BIN)/agents-c/%-tinybuf.wasm: FORCE
	@mkdir -p $(BIN)/agents-c
	$(CLANG) --target=wasm32-wasi $(if $(WASI_SYSROOT),--sysroot=$(WASI_SYSROOT)) $(CFLAGS_WASM) -DORLOJ_FIRST_BUFFER=8 -I sdk/c -o $@ examples/c/$*/*.c

$(BIN)/agents-c/%.wasm: FORCE
	@mkdir -p $(BIN)/agents-c
	$(CLANG) --target=wasm32-wasi $(if $(WASI_SYSROOT),--sysroot=$(WASI_SYSROOT)) $(CFLAGS_WASM) -I sdk/c -o $@ examples/c/$*/*.c

rust-agents: $(RUST_AGENTS:%=$(BIN)/agents-rust/%.wasm) $(RUST_AGENTS:%=$(BIN)/agents-rust/%-tinybuf.wasm)

$(BIN)/agents-rust/liborloj.rlib $(BIN)/agents-rust/tinybuf/liborloj.rlib: FORCE
	@test -n "$(RUSTC)" || { echo "no rustc with a wasm32 WASI standard library: apt-get install rustc libstd-rust-dev-wasm32, or rustup target add wasm32-wasip1" >&2; exit 1; }
	@mkdir -p $(@D)
	$(if $(findstring tinybuf,$@),ORLOJ_FIRST_BUFFER=8) $(RUSTC) --edition 2021 --crate-type rlib --crate-name orloj --target $(RUST_TARGET) $(RUSTFLAGS_WASM) -o $@ sdk/rust/src/lib.rs

$(BIN)/agents-rust/%-tinybuf.wasm: $(BIN)/agents-rust/tinybuf/liborloj.rlib FORCE
	$(RUSTC) --edition 2021 --target $(RUST_TARGET) $(RUSTFLAGS_WASM) --extern orloj=$< -o $@ examples/rust/$*/main.rs

$(BIN)/agents-rust/%.wasm: $(BIN)/agents-rust/liborloj.rlib FORCE
	$(RUSTC) --edition 2021 --target $(RUST_TARGET) $(RUSTFLAGS_WASM) --extern orloj=$< -o $@ examples/rust/$*/main.rs

# AssemblyScript: the compiler is the npm package assemblyscript, pinned in
# sdk/assemblyscript/package-lock.json (needs node and npm).
AS_AGENTS := $(notdir $(wildcard examples/assemblyscript/*))
ASC       := sdk/assemblyscript/node_modules/.bin/asc

as-agents: $(AS_AGENTS:%=$(BIN)/agents-assemblyscript/%.wasm) $(AS_AGENTS:%=$(BIN)/agents-assemblyscript/%-tinybuf.wasm)

$(ASC): sdk/assemblyscript/package.json sdk/assemblyscript/package-lock.json
	cd sdk/assemblyscript && npm ci --no-audit --no-fund
	@touch $@

$(BIN)/agents-assemblyscript/%-tinybuf.wasm: $(ASC) FORCE
	@mkdir -p $(BIN)/agents-assemblyscript
	$(ASC) examples/assemblyscript/$*/main.ts --config sdk/assemblyscript/asconfig.json --use ORLOJ_FIRST_BUFFER=8 -o $@

$(BIN)/agents-assemblyscript/%.wasm: $(ASC) FORCE
	@mkdir -p $(BIN)/agents-assemblyscript
	$(ASC) examples/assemblyscript/$*/main.ts --config sdk/assemblyscript/asconfig.json -o $@

# The Rust SDK's unit tests, natively (no cargo needed).
rust-sdk-test: FORCE
	@mkdir -p $(BIN)
	$(RUSTC) --edition 2021 --test --crate-name orloj -o $(BIN)/orloj-sdk-test sdk/rust/src/lib.rs
	$(BIN)/orloj-sdk-test

# The whole suite under the race detector. Fuzz targets run their seed corpus.
test: build agents guest-agents rust-sdk-test
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./sdk/... ./examples/...
	$(GO) test -race -timeout 20m ./...

bench: build agents guest-agents
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
