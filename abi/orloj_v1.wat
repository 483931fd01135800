;; orloj_v1: every host function a module may import from "orloj_v1", with its
;; signature. Every parameter and result is an i32; the result is a
;; status (docs/abi.md). Pointers and lengths are unsigned byte offsets into the
;; module's exported memory. A module imports only what it uses.
(module
  (import "orloj_v1" "input" (func $input (param $buf_ptr i32) (param $buf_cap i32) (param $len_ptr i32) (result i32)))
  (import "orloj_v1" "call" (func $call (param $req_ptr i32) (param $req_len i32) (param $buf_ptr i32) (param $buf_cap i32) (param $len_ptr i32) (result i32)))
  (import "orloj_v1" "response" (func $response (param $buf_ptr i32) (param $buf_cap i32) (param $len_ptr i32) (result i32)))
  (import "orloj_v1" "output" (func $output (param $ptr i32) (param $len i32) (result i32)))
  (import "orloj_v1" "log" (func $log (param $level i32) (param $ptr i32) (param $len i32) (result i32)))
  (import "orloj_v1" "now" (func $now (param $out_ptr i32) (result i32)))
  (import "orloj_v1" "emit" (func $emit (param $req_ptr i32) (param $req_len i32) (result i32)))
  (import "orloj_v1" "call_batch" (func $call_batch (param $req_ptr i32) (param $req_len i32) (param $buf_ptr i32) (param $buf_cap i32) (param $len_ptr i32) (result i32)))
  (import "orloj_v1" "wait" (func $wait (param $req_ptr i32) (param $req_len i32) (param $buf_ptr i32) (param $buf_cap i32) (param $len_ptr i32) (result i32)))
)
