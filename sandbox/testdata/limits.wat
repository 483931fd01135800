;; Exercises the size limits with in-bounds arguments. Memory is 66 pages
;; (0x420000 bytes) so every request lies inside it. Status bytes at 0x4101F0:
;;   0 call with a request of MaxRequestBytes+1 -> InvalidArgument (8), with an
;;     ErrorBody written at 0x410200 and its length at 0x410000
;;   1 emit of MaxRequestBytes+1                -> InvalidArgument
;;   2 output of MaxOutputBytes+1               -> InvalidArgument
;;   3 log of MaxLogBytes+100 bytes             -> OK (the line is cut)
;;   4 log at level 7                           -> InvalidArgument
;; The output is the 16 bytes from 0x4101F0 followed by the error body.
(module
  (import "orloj_v1" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "orloj_v1" "output" (func $output (param i32 i32) (result i32)))
  (import "orloj_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "orloj_v1" "emit" (func $emit (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 66)
  (func $rec (param $i i32) (param $st i32)
    (i32.store8 (i32.add (i32.const 0x4101F0) (local.get $i)) (local.get $st)))
  (func (export "_start")
    (local $st i32)
    (call $rec (i32.const 0) (call $call (i32.const 0) (i32.const 0x100001) (i32.const 0x410200) (i32.const 256) (i32.const 0x410000)))
    (call $rec (i32.const 1) (call $emit (i32.const 0) (i32.const 0x100001)))
    (call $rec (i32.const 2) (call $output (i32.const 0) (i32.const 0x400001)))
    (call $rec (i32.const 3) (call $log (i32.const 1) (i32.const 0) (i32.const 0x4064)))
    (call $rec (i32.const 4) (call $log (i32.const 7) (i32.const 0) (i32.const 4)))
    (local.set $st (call $output (i32.const 0x4101F0)
      (i32.add (i32.const 16) (i32.load (i32.const 0x410000)))))
    (if (local.get $st)
      (then (call $proc_exit (i32.add (i32.const 200) (local.get $st)))))))
