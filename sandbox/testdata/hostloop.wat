;; Benchmark guest: reads (count u32, mode u32) from the input and makes count
;; host calls in a loop. Mode 0: now(out); 1: log of length 0; 2: call of the
;; "echo" tool. Any non-OK status exits with 100+status.
(module
  (import "orloj_v1" "input" (func $input (param i32 i32 i32) (result i32)))
  (import "orloj_v1" "call" (func $call (param i32 i32 i32 i32 i32) (result i32)))
  (import "orloj_v1" "log" (func $log (param i32 i32 i32) (result i32)))
  (import "orloj_v1" "now" (func $now (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
  (data (i32.const 0x300) "{\"tool\":\"echo\",\"params\":{\"a\":1}}")
  (func $check (param $st i32)
    (if (local.get $st)
      (then (call $proc_exit (i32.add (i32.const 100) (local.get $st))))))
  (func (export "_start")
    (local $n i32) (local $mode i32)
    (call $check (call $input (i32.const 0x100) (i32.const 16) (i32.const 0x0)))
    (local.set $n (i32.load (i32.const 0x100)))
    (local.set $mode (i32.load (i32.const 0x104)))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (local.get $n)))
        (if (i32.eqz (local.get $mode))
          (then (call $check (call $now (i32.const 0x200)))))
        (if (i32.eq (local.get $mode) (i32.const 1))
          (then (call $check (call $log (i32.const 0) (i32.const 0x200) (i32.const 0)))))
        (if (i32.eq (local.get $mode) (i32.const 2))
          (then (call $check (call $call (i32.const 0x300) (i32.const 32)
                                          (i32.const 0x1000) (i32.const 0x1000) (i32.const 0x8)))))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $next)))))
