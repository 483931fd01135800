;; Imports a name in wasi_snapshot_preview1 that does not exist.
(module
  (import "wasi_snapshot_preview1" "sock_connect" (func $c (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
