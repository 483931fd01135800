package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

func newClusterCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Raft membership: members, join, remove, leadership transfer",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newClusterMembersCmd(&o), newClusterJoinCmd(&o), newClusterRemoveCmd(&o), newClusterTransferCmd(&o), newClusterJoinTokenCmd(&o))
	return cmd
}

func printMembers(c *client, raw []byte) error {
	if c.json {
		return c.printJSON(raw)
	}
	var list []api.MemberView
	if err := decode(raw, &list, "/v1/cluster/members"); err != nil {
		return err
	}
	rows := make([][]string, 0, len(list))
	for _, m := range list {
		// null is a member that did not answer; 0 (nothing applied yet) shows
		// the same way, as it always has.
		applied := "-"
		if m.AppliedIndex != nil && *m.AppliedIndex > 0 {
			applied = strconv.FormatUint(*m.AppliedIndex, 10)
		}
		rows = append(rows, []string{m.ID, m.Address, m.Role, m.Suffrage, applied, orDash(deref(m.LastContact))})
	}
	return table(c.stdout, []string{"ID", "RAFT ADDRESS", "ROLE", "SUFFRAGE", "APPLIED", "LAST CONTACT"}, rows)
}

func newClusterMembersCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "members",
		Short: "List the cluster's members and their roles",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			raw, err := c.getJSON(cmd.Context(), "/v1/cluster/members", nil, nil)
			if err != nil {
				return err
			}
			return printMembers(c, raw)
		},
	}
}

func newClusterJoinCmd(o *clientOptions) *cobra.Command {
	var id string
	cmd := &cobra.Command{
		Use:   "join RAFT_ADDR",
		Short: "Add the node whose Raft transport listens on RAFT_ADDR as a voter",
		Long: `Ask the cluster (through --addr; the leader does it) to add a node as a
voting member. The node must be running with --join or without bootstrap
state. Its ID defaults to RAFT_ADDR, as orlojd serve's --node-id does.`,
		Args: exactArgs(1, "one RAFT_ADDR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			raw, err := c.postJSON(cmd.Context(), "/v1/cluster/join", map[string]any{"id": firstNonEmpty(id, args[0]), "raft_addr": args[0], "voter": true}, nil)
			if err != nil {
				return err
			}
			return printMembers(c, raw)
		},
	}
	cmd.Flags().StringVar(&id, "id", "", "the node's ID (default RAFT_ADDR)")
	return cmd
}

func newClusterJoinTokenCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "join-token",
		Short: "Print the cluster's join token from a member's data dir on this machine",
		Long: `Print DATA_DIR/join-token of a member on this machine (--data-dir). A new
node presents it once, with --join-token-file or ORLOJ_JOIN_TOKEN, to get
its certificate. Anyone holding it can add a node to the cluster: pass it
as a file or a variable, never on a command line.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			path := filepath.Join(firstNonEmpty(o.dataDir, os.Getenv(envDataDir), defaultDataDir), cluster.JoinTokenFile)
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("read the join token: %w (is --data-dir the data dir of a member?)", err)
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), strings.TrimSpace(string(b)))
			return err
		},
	}
}

func newClusterRemoveCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID",
		Short: "Remove a member from the cluster",
		Args:  exactArgs(1, "one node ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			raw, err := c.postJSON(cmd.Context(), "/v1/cluster/remove", map[string]string{"id": args[0]}, nil)
			if err != nil {
				return err
			}
			return printMembers(c, raw)
		},
	}
}

func newClusterTransferCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "transfer [ID]",
		Short: "Hand leadership to member ID (default: one Raft picks)",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 1 {
				return usagef("expected at most one node ID, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			req := map[string]string{"id": ""}
			if len(args) == 1 {
				req["id"] = args[0]
			}
			var res api.TransferResult
			raw, err := c.postJSON(cmd.Context(), "/v1/cluster/transfer", req, &res)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			_, err = fmt.Fprintf(c.stdout, "leader is now %s\n", res.Leader)
			return err
		},
	}
}
