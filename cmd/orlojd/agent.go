package main

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

func newAgentCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Push, list and show agents",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newAgentPushCmd(&o), newAgentLsCmd(&o), newAgentShowCmd(&o))
	return cmd
}

type pushOptions struct {
	name, version, memoryLimit string
	tools, approve             []string
	timeout                    time.Duration
	maxAttempts                int
	budget                     string
}

func newAgentPushCmd(o *clientOptions) *cobra.Command {
	var p pushOptions
	cmd := &cobra.Command{
		Use:   "push FILE.wasm",
		Short: "Upload an agent module as a new version",
		Long: `Upload an agent module. The node validates it (imports, exports, size)
before registering it, so a module that would be refused at run time is
refused now, with a message naming the problem.

The manifest says which tools the agent may call (--tools), and how it runs.
Pushing the same bytes under the same name and version again is a no-op;
other bytes under an existing version are refused.`,
		Args: exactArgs(1, "one FILE.wasm"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			return agentPush(cmd.Context(), c, args[0], p)
		},
	}
	f := cmd.Flags()
	f.StringVar(&p.name, "name", "", "agent name (default: the file name without .wasm)")
	f.StringVar(&p.version, "version", "", `version label (default "sha-" and the start of the module's digest)`)
	f.StringSliceVar(&p.tools, "tools", nil, "tools the agent may call, comma-separated (e.g. http,model)")
	f.StringSliceVar(&p.approve, "approve", nil, "tools (of --tools) each of whose calls waits for a person's approval, comma-separated")
	f.StringVar(&p.memoryLimit, "memory-limit", "", "linear memory cap per attempt, e.g. 256MiB (default the node's)")
	f.DurationVar(&p.timeout, "timeout", 0, "wall-time limit per attempt, e.g. 30s (default the node's)")
	f.IntVar(&p.maxAttempts, "max-attempts", 0, "attempts before a task of this agent dead-letters (default 8)")
	f.StringVar(&p.budget, "budget", "", "what each task may spend over all its attempts: calls=N,tokens=N,effects=N,duration=D (default calls=10000,effects=1000)")
	return cmd
}

func agentPush(ctx context.Context, c *client, path string, p pushOptions) error {
	q := url.Values{}
	name := p.name
	if name == "" {
		name = strings.TrimSuffix(filepath.Base(path), ".wasm")
	}
	q.Set("name", name)
	if p.version != "" {
		q.Set("version", p.version)
	}
	if len(p.tools) > 0 {
		q.Set("tools", strings.Join(p.tools, ","))
	}
	if len(p.approve) > 0 {
		q.Set("approve", strings.Join(p.approve, ","))
	}
	if p.memoryLimit != "" {
		n, err := parseBytes(p.memoryLimit)
		if err != nil {
			return usagef("--memory-limit: %v", err)
		}
		q.Set("memory_limit", strconv.FormatUint(n, 10))
	}
	if p.timeout < 0 {
		return usagef("--timeout must be positive, got %s", p.timeout)
	}
	if p.timeout > 0 {
		q.Set("timeout", p.timeout.String())
	}
	if p.maxAttempts < 0 {
		return usagef("--max-attempts must be positive, got %d", p.maxAttempts)
	}
	if p.maxAttempts > 0 {
		q.Set("max_attempts", strconv.Itoa(p.maxAttempts))
	}
	if p.budget != "" {
		if _, err := cluster.ParseBudget(p.budget); err != nil {
			return usagef("--budget: %v", err)
		}
		q.Set("budget", p.budget)
	}
	wasm, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read module: %w", err)
	}
	raw, err := c.do(ctx, http.MethodPost, "/v1/agents", q, wasm, "application/wasm")
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var a api.AgentView
	if err := decode(raw, &a, "/v1/agents"); err != nil {
		return err
	}
	for _, w := range a.Warnings {
		fmt.Fprintf(c.stderr, "warning: %s\n", w)
	}
	_, err = fmt.Fprintf(c.stdout, "pushed %s@%s (sha256:%s, %s; tools: %s)\n",
		a.Name, a.Version, shortDigest(a.Digest), formatSize(int64(a.Size)), orNone(strings.Join(a.Tools, ",")))
	return err
}

func newAgentLsCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List agents (newest version of each)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var list []api.AgentView
			raw, err := c.getJSON(cmd.Context(), "/v1/agents", nil, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			return agentTable(c, list)
		},
	}
}

func agentTable(c *client, list []api.AgentView) error {
	rows := make([][]string, 0, len(list))
	for _, a := range list {
		rows = append(rows, []string{a.Name, a.Version, orNone(strings.Join(a.Tools, ",")), formatSize(int64(a.Size)),
			shortDigest(a.Digest), timeOf(a.CreatedAt).short()})
	}
	return table(c.stdout, []string{"NAME", "VERSION", "TOOLS", "SIZE", "DIGEST", "CREATED"}, rows)
}

func newAgentShowCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show an agent and its versions",
		Args:  exactArgs(1, "one agent NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var v api.AgentDetail
			raw, err := c.getJSON(cmd.Context(), "/v1/agents/"+url.PathEscape(args[0]), nil, &v)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			a := v.Agent
			mem := ""
			if a.MemoryLimit > 0 {
				mem = formatSize(int64(a.MemoryLimit))
			}
			attempts := ""
			if a.MaxAttempts > 0 {
				attempts = strconv.Itoa(a.MaxAttempts)
			}
			if err := fields(c.stdout, [][2]string{
				{"Name", a.Name}, {"Newest", a.Version}, {"Digest", "sha256:" + a.Digest}, {"Size", formatSize(int64(a.Size))},
				{"Tools", orNone(strings.Join(a.Tools, ", "))}, {"Memory limit", mem}, {"Timeout", a.Timeout},
				{"Max attempts", attempts}, {"Created", timeOf(a.CreatedAt).long()},
			}); err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, "\nVersions:")
			return agentTable(c, v.Versions)
		},
	}
}

func shortDigest(d string) string {
	if len(d) > 12 {
		return d[:12]
	}
	return orDash(d)
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// formatSize renders bytes in binary units, as --memory-limit takes them.
func formatSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
