;; Imports a name in orloj_v1 that does not exist.
(module
  (import "orloj_v1" "teleport" (func $teleport (param i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))
