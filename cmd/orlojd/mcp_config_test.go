package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/plugins"
)

// TestServeMCPServers: mcp_servers in the config file become the daemon's
// list; a bad entry is refused naming the setting by all its names.
func TestServeMCPServers(t *testing.T) {
	file := filepath.Join(t.TempDir(), "orlojd.json")
	os.WriteFile(file, []byte(`{"mcp_servers": [
		{"name": "docs", "url": "http://127.0.0.1:9/mcp", "timeout": "5s"},
		{"name": "fs", "command": "fs-mcp", "args": ["--root", "."], "env": {"FS_TOKEN": "t0k"}, "tools": {"write": "idempotent"}}]}`), 0o600)
	cmd := newServeCmd()
	if err := cmd.ParseFlags(nil); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadServeConfig(cmd.Flags(), file)
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.daemonConfig(hclog.NewNullLogger())
	if len(d.MCPServers) != 2 || d.MCPServers[0].Timeout != 5*time.Second || d.MCPServers[1].Args[1] != "." ||
		d.MCPServers[1].Tools["write"] != plugins.Idempotent || d.MCPServers[1].Env["FS_TOKEN"] != "t0k" {
		t.Fatalf("daemon MCP servers = %+v", d.MCPServers)
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ file, want string }{
		{`{"mcp_servers": [{"name": "x", "comand": "y"}]}`, `unknown field "comand"`},
		{`{"mcp_servers": [{"name": "x", "url": "http://a", "timeout": "soon"}]}`, "not a duration"},
		{`{"mcp_servers": [{"name": "x"}]}`, "--mcp-servers (ORLOJ_MCP_SERVERS, config key mcp_servers)"},
		{`{"mcp_servers": [{"name": "x", "url": "http://a"}, {"name": "x", "url": "http://b"}]}`, "given twice"},
	} {
		os.WriteFile(file, []byte(bad.file), 0o600)
		cmd := newServeCmd()
		cmd.ParseFlags(nil)
		cfg, err := loadServeConfig(cmd.Flags(), file)
		if err == nil {
			err = cfg.explainConfigError(cfg.daemonConfig(hclog.NewNullLogger()).Validate())
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%s: %v, want %q", bad.file, err, bad.want)
		}
	}
}
