;; Declares 512 pages (32 MiB) of initial memory; a run whose limit is lower
;; must fail as a memory limit without instantiating.
(module
  (memory (export "memory") 512)
  (func (export "_start")))
