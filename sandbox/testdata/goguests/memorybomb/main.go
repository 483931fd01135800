//go:build wasip1

// Command memorybomb allocates and touches memory until the host refuses to
// grow its linear memory. The Go runtime then aborts with "out of memory".
package main

import "fmt"

var keep [][]byte

func main() {
	for i := 0; ; i++ {
		b := make([]byte, 1<<20)
		for j := 0; j < len(b); j += 4096 {
			b[j] = byte(i) // touch every page so it is really committed
		}
		keep = append(keep, b)
		if i%16 == 0 {
			fmt.Println("allocated MiB:", i+1)
		}
	}
}
