#!/bin/sh
# Regenerates the committed .wasm files from the .wat sources beside them, so
# the tests need no WebAssembly toolchain. Needs wabt's wat2wasm
# (apt-get install wabt). Run from anywhere: sh sandbox/testdata/gen.sh
set -eu
cd "$(dirname "$0")"
for wat in *.wat; do
	case $wat in
	tail_call.wat) wat2wasm --enable-tail-call "$wat" -o "${wat%.wat}.wasm" ;;
	*) wat2wasm "$wat" -o "${wat%.wat}.wasm" ;;
	esac
done
# malformed.wasm: the magic number and then garbage.
printf '\000asm\001\000\000\000\377\377\377garbage' > malformed.wasm
