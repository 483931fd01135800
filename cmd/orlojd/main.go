// Command orlojd is Orloj in one binary: the daemon and the operator CLI.
// This file wires the cobra command tree and maps errors to exit statuses:
// 0 success, 1 a failed operation, 2 bad usage.
package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	// Time zones built in: every node reads a schedule's --timezone from
	// the same data, whatever its machine has installed.
	_ "time/tzdata"

	"github.com/spf13/cobra"
)

// usageError marks an error caused by how the command was invoked.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "orlojd",
		Short:         "Orloj: durable execution for WebAssembly agents",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(), newRunCmd(), newAgentCmd(), newTaskCmd(), newDLQCmd(), newLeaseCmd(), newClusterCmd(), newToolCmd(), newScheduleCmd(), newApprovalCmd())
	return root
}

func main() {
	os.Exit(execute(newRootCmd(), os.Args[1:]))
}

func execute(root *cobra.Command, args []string) int {
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return 0
	}
	fmt.Fprintf(root.ErrOrStderr(), "orlojd: %v\n", err)
	if ue := (usageError{}); errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognises cobra's untyped "unknown command" error.
func isCobraUsage(err error) bool {
	return strings.HasPrefix(err.Error(), "unknown command")
}

// exactArgs is cobra.ExactArgs with an error that maps to exit status 2.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}
