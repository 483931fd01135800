;; Imports orloj_v1.now with the wrong signature.
(module
  (import "orloj_v1" "now" (func $now (param i64) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
