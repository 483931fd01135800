;; Imports a function Orloj does not provide.
(module
  (import "evil" "steal" (func $steal))
  (memory (export "memory") 1)
  (func (export "_start") (call $steal)))
