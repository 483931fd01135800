;; A command that uses a tail call (return_call), a feature the sandbox
;; does not accept: the upload is refused, naming the instruction and the
;; accepted features.
(module
  (memory (export "memory") 1)
  (func $one (result i32) (i32.const 1))
  (func $tail (result i32) (return_call $one))
  (func (export "_start") (drop (call $tail))))
