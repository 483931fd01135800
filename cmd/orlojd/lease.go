package main

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/host/api"
)

func newLeaseCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "lease",
		Short: "Inspect the leases of running tasks",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(&cobra.Command{
		Use:   "ls",
		Short: "List live leases, soonest expiry first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, &o)
			if err != nil {
				return err
			}
			var list []api.LeaseView
			raw, err := c.getJSON(cmd.Context(), "/v1/leases", nil, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			rows := make([][]string, 0, len(list))
			for _, l := range list {
				rows = append(rows, []string{l.TaskID, l.Node, strconv.Itoa(l.Attempt), strconv.FormatUint(l.Token, 10),
					timeOf(l.GrantedAt).short(), timeOf(l.ExpiresAt).relative(), orDash(l.TTL)})
			}
			return table(c.stdout, []string{"TASK", "NODE", "ATTEMPT", "TOKEN", "GRANTED", "EXPIRES", "TTL"}, rows)
		},
	})
	return cmd
}
