;; Grows memory one page at a time until memory.grow fails (-1), then traps,
;; as a guest that does not check for allocation failure would.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
