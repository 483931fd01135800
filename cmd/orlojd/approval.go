package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/host/api"
)

func newApprovalCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "approval",
		Short: "List, show, approve and deny calls that wait for a person's approval",
		Long: `A call of a tool the agent's manifest lists under --approve waits until
a person approves that exact call: its ID is the hash of the task, the tool,
the canonical params and the occurrence, so a call whose params change is
another call and needs another approval. Approved, the task runs again and
the call is made, once. Denied, the call answers permission_denied with the
reason, and the agent decides what to do.`,
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newApprovalLsCmd(&o), newApprovalShowCmd(&o), newApprovalDecideCmd(&o, true), newApprovalDecideCmd(&o, false))
	return cmd
}

func newApprovalLsCmd(o *clientOptions) *cobra.Command {
	var all bool
	var limit int
	cmd := &cobra.Command{
		Use:   "ls [--all]",
		Short: "List pending approvals (with --all, decided ones too), oldest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			q := url.Values{}
			if all {
				q.Set("all", "true")
			}
			var list []api.ApprovalView
			raw, err := c.getList(cmd.Context(), "/v1/approvals", q, limit, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			rows := make([][]string, 0, len(list))
			for _, a := range list {
				rows = append(rows, []string{a.ID, a.State, a.TaskID, a.Agent, a.Tool, clipText(string(a.Params), 60), timeOf(a.RequestedAt).short()})
			}
			return table(c.stdout, []string{"ID", "STATE", "TASK", "AGENT", "TOOL", "PARAMS", "REQUESTED"}, rows)
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "decided approvals too")
	cmd.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many approvals (default %d, at most %d)", api.DefaultListLimit, api.MaxListLimit))
	return cmd
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func newApprovalShowCmd(o *clientOptions) *cobra.Command {
	return showCmd(o, "show ID", "Show an approval: the call's tool and params, and the decision", "one approval ID",
		func(id string) string { return "/v1/approvals/" + url.PathEscape(id) }, showApproval)
}

func showApproval(c *client, a api.ApprovalView) error {
	if err := fields(c.stdout, [][2]string{
		{"ID", a.ID}, {"State", a.State}, {"Task", a.TaskID}, {"Agent", a.Agent + "@" + a.Version}, {"Tool", a.Tool},
		{"Attempt", strconv.Itoa(a.Attempt)}, {"Requested", timeOf(a.RequestedAt).long()}, {"Decided", timeOf(a.DecidedAt).long()},
		{"By", orDash(a.By)}, {"Note", orDash(a.Note)},
	}); err != nil {
		return err
	}
	cut := ""
	if a.ParamsCut {
		cut = " (cut: the call's params are larger)"
	}
	_, err := fmt.Fprintf(c.stdout, "\nParams%s:\n%s\n", cut, indentJSON(a.Params))
	return err
}

func newApprovalDecideCmd(o *clientOptions, approve bool) *cobra.Command {
	var by, note string
	verb, short := "deny", "Deny a call: it answers permission_denied with --reason, and the task goes on"
	if approve {
		verb, short = "approve", "Approve a call: the task runs again and the call is made, once"
	}
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  exactArgs(1, "one approval ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			req := api.DecisionRequest{By: by}
			if approve {
				req.Note = note
			} else if req.Reason = note; note == "" {
				return usagef("deny needs --reason: the agent is told it")
			}
			body, _ := json.Marshal(req)
			raw, err := c.do(cmd.Context(), http.MethodPost, "/v1/approvals/"+url.PathEscape(args[0])+"/"+verb, nil, body, "application/json")
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			var a api.ApprovalView
			if err := decode(raw, &a, "/v1/approvals"); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "%s call %s of %s (task %s)\n", a.State, a.ID, a.Tool, a.TaskID)
			return err
		},
	}
	user := os.Getenv("USER")
	if user == "" {
		user = "admin"
	}
	cmd.Flags().StringVar(&by, "by", user, "who decides, for the task's journal")
	if approve {
		cmd.Flags().StringVar(&note, "note", "", "a note for the journal")
	} else {
		cmd.Flags().StringVar(&note, "reason", "", "why (required); the agent's call answers it")
	}
	return cmd
}
