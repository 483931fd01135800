;; Grows memory until memory.grow fails, then exits cleanly: a guest that
;; copes with allocation failure succeeds.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))
