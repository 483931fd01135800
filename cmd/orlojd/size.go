package main

import (
	"fmt"

	"github.com/orloj/orloj/host/api"
)

// parseBytes reads a size flag such as 256MiB, 64MB, 1GiB, 512KiB or
// 1048576 with api.ParseSize, the API's own parser, so a size means the same
// bytes on the command line and over HTTP. Every size flag must be positive.
func parseBytes(s string) (uint64, error) {
	n, err := api.ParseSize(s)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, fmt.Errorf("size %q: want a positive size", s)
	}
	return n, nil
}
