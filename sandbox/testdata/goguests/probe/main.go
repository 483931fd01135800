//go:build wasip1

// Command probe tries, on request, the doors a sandboxed guest must find
// closed, and reports what the WASI environment looks like from inside.
//
//	probe open   read /etc/passwd (must fail: no preopened directories)
//	probe dial   dial tcp 127.0.0.1:80 (must fail: no sockets)
//	probe env    print argv and the environment, one per line
//	probe rand   print 32 bytes of crypto/rand in hex
//	probe time   print time.Now, and sleep 50ms to show the runtime copes
//	probe stdout print N bytes (argv[2]) of 'x' to stdout and exit 0
package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe open|dial|env|rand|time|stdout")
		os.Exit(64)
	}
	switch os.Args[1] {
	case "open":
		b, err := os.ReadFile("/etc/passwd")
		if err != nil {
			fmt.Fprintln(os.Stderr, "open failed:", err)
			os.Exit(1)
		}
		fmt.Printf("read %d bytes of /etc/passwd\n", len(b))
	case "dial":
		c, err := net.Dial("tcp", "127.0.0.1:80")
		if err != nil {
			fmt.Fprintln(os.Stderr, "dial failed:", err)
			os.Exit(1)
		}
		c.Close()
		fmt.Println("dialed 127.0.0.1:80")
	case "env":
		fmt.Println("args=" + strings.Join(os.Args, ","))
		for _, kv := range os.Environ() {
			fmt.Println("env=" + kv)
		}
		if _, err := os.ReadDir("/"); err == nil {
			fmt.Println("readdir / succeeded")
		}
	case "rand":
		var b [32]byte
		if _, err := rand.Read(b[:]); err != nil {
			fmt.Fprintln(os.Stderr, "rand:", err)
			os.Exit(1)
		}
		fmt.Println(hex.EncodeToString(b[:]))
	case "time":
		start := time.Now()
		time.Sleep(50 * time.Millisecond)
		fmt.Println(start.UnixNano(), time.Since(start) >= 50*time.Millisecond)
	case "stdout":
		n, _ := strconv.Atoi(os.Args[2])
		os.Stdout.WriteString(strings.Repeat("x", n))
	default:
		fmt.Fprintln(os.Stderr, "unknown probe", os.Args[1])
		os.Exit(64)
	}
}
