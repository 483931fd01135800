;; Imports its memory instead of defining it: Orloj provides no memory.
(module
  (import "orloj_v1" "memory" (memory 1))
  (export "memory" (memory 0))
  (func (export "_start")))
