package main

import (
	"strconv"

	"github.com/spf13/cobra"
)

// leaseView is a live lease: which node runs which task, until when.
type leaseView struct {
	TaskID    string  `json:"task_id"`
	Token     uint64  `json:"token"`
	Node      string  `json:"node"`
	Attempt   int     `json:"attempt"`
	GrantedAt apiTime `json:"granted_at"`
	ExpiresAt apiTime `json:"expires_at"`
	TTL       string  `json:"ttl"`
}

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
			var list []leaseView
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
					l.GrantedAt.short(), l.ExpiresAt.relative(), orDash(l.TTL)})
			}
			return table(c.stdout, []string{"TASK", "NODE", "ATTEMPT", "TOKEN", "GRANTED", "EXPIRES", "TTL"}, rows)
		},
	})
	return cmd
}
