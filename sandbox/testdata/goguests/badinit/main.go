//go:build wasip1

// Command badinit panics in a package initializer: as a reactor its
// initialization fails, which Compile must refuse.
package main

import "github.com/orloj/orloj/sdk/orloj"

var _ = mustNot()

func mustNot() int { panic("badinit: initializer failed") }

func main() { orloj.Main(func() error { return nil }) }
