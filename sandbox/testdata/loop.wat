;; A tight infinite loop: no calls, no memory access. Only the deadline
;; (WithCloseOnContextDone) can stop it.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever (br $forever))))
