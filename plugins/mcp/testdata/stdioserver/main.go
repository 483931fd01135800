// Command stdioserver serves mcptest over stdio, for tests that need a
// stdio MCP server as a program of its own.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/orloj/orloj/plugins/mcp/mcptest"
)

func main() {
	if err := mcptest.New().RunStdio(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "stdioserver:", err)
		os.Exit(1)
	}
}
