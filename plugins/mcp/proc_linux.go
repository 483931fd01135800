package mcp

import (
	"os/exec"
	"syscall"
)

// setProcAttr makes a stdio server die with the node: a node killed with
// SIGKILL cannot close its stdin first.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
