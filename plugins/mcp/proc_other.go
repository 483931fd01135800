//go:build !linux

package mcp

import "os/exec"

// setProcAttr: elsewhere a stdio server ends when its stdin closes, which
// happens when the node exits.
func setProcAttr(*exec.Cmd) {}
