package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/host/api"
)

func newScheduleCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Run an agent on a cron schedule: create, list, show, pause, resume, delete",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newScheduleCreateCmd(&o), newScheduleLsCmd(&o), newScheduleShowCmd(&o),
		newScheduleSetCmd(&o, "pause", "Pause a schedule: it fires nothing until resumed"),
		newScheduleSetCmd(&o, "resume", "Resume a paused schedule from its next firing after now (what was missed is not made)"),
		newScheduleDeleteCmd(&o))
	return cmd
}

func newScheduleCreateCmd(o *clientOptions) *cobra.Command {
	var agent, cronExpr, input, tz, overlap, catchUp string
	var paused bool
	cmd := &cobra.Command{
		Use:   "create NAME --agent AGENT[@VERSION] --cron EXPR [--input JSON|@FILE]",
		Short: "Create a schedule that submits a task of an agent at each firing",
		Long: `Create a schedule. The cluster's leader fires it: each firing submits a
task of the agent (its newest version at the time, or VERSION) with the
schedule's input, and the idempotency key schedule/NAME/UNIX-SECONDS, so a
firing is made once whatever node leads.

--cron takes five fields (minute hour day-of-month month day-of-week),
six with seconds first, or @hourly, @daily, @every 30s and the like; it is
read in --timezone (an IANA name, default UTC).

--overlap skip (the default) passes over a firing while the previous
firing's task is still queued, running or waiting to retry; allow submits
it anyway. A firing missed by more than a minute (the cluster had no
leader) is made by --catch-up: one (the default) makes one firing for all
that were missed, all makes each of them (at most 100), none makes none.`,
		Args: exactArgs(1, "one schedule NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if agent == "" || cronExpr == "" {
				return usagef("--agent and --cron are required")
			}
			name, version, _ := strings.Cut(agent, "@")
			req := api.ScheduleRequest{Name: args[0], Agent: name, Version: version, Cron: cronExpr, Timezone: tz,
				Overlap: overlap, CatchUp: catchUp, Paused: paused}
			if cmd.Flags().Changed("input") {
				in, err := readJSONArg("--input", input)
				if err != nil {
					return err
				}
				req.Input = json.RawMessage(in)
			}
			body, _ := json.Marshal(req)
			raw, err := c.do(cmd.Context(), http.MethodPost, "/v1/schedules", nil, body, "application/json")
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			var v api.ScheduleView
			if err := decode(raw, &v, "/v1/schedules"); err != nil {
				return err
			}
			next := "paused"
			if !v.Paused {
				next = "next " + timeOf(v.Next).long()
			}
			_, err = fmt.Fprintf(c.stdout, "created schedule %s (%s %s, %s)\n", v.Name, v.Cron, v.Timezone, next)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&agent, "agent", "", "agent to run, AGENT or AGENT@VERSION (default its newest version at each firing)")
	f.StringVar(&cronExpr, "cron", "", `when to fire: "*/5 * * * *", "*/10 * * * * *" (with seconds), "@hourly", "@every 30s"`)
	f.StringVar(&input, "input", "null", "each task's input as JSON, or @FILE to read it from a file")
	f.StringVar(&tz, "timezone", "", "time zone the cron expression is read in, e.g. Europe/Prague (default UTC)")
	f.StringVar(&overlap, "overlap", "", "while the previous firing's task runs: skip (default) or allow")
	f.StringVar(&catchUp, "catch-up", "", "firings missed by more than a minute: one (default), all or none")
	f.BoolVar(&paused, "paused", false, "create it paused")
	return cmd
}

func newScheduleLsCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List schedules",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var list []api.ScheduleView
			raw, err := c.getJSON(cmd.Context(), "/v1/schedules", nil, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			rows := make([][]string, 0, len(list))
			for _, v := range list {
				next := timeOf(v.Next).short()
				if v.Paused {
					next = "paused"
				}
				rows = append(rows, []string{v.Name, agentRef(v), v.Cron, v.Timezone, next,
					strconv.FormatUint(v.Fired, 10), strconv.FormatUint(v.Skipped, 10), orDash(v.LastTask)})
			}
			return table(c.stdout, []string{"NAME", "AGENT", "CRON", "TIMEZONE", "NEXT", "FIRED", "SKIPPED", "LAST TASK"}, rows)
		},
	}
}

func agentRef(v api.ScheduleView) string {
	if v.Version == "" {
		return v.Agent
	}
	return v.Agent + "@" + v.Version
}

func newScheduleShowCmd(o *clientOptions) *cobra.Command {
	return showCmd(o, "show NAME", "Show a schedule", "one schedule NAME",
		func(name string) string { return "/v1/schedules/" + url.PathEscape(name) }, showSchedule)
}

func showSchedule(c *client, v api.ScheduleView) error {
	next := timeOf(v.Next).long()
	if v.Paused {
		next = "paused"
	}
	if err := fields(c.stdout, [][2]string{
		{"Name", v.Name}, {"Agent", agentRef(v)}, {"Cron", v.Cron}, {"Timezone", v.Timezone},
		{"Overlap", v.Overlap}, {"Catch-up", v.CatchUp}, {"Next", next}, {"Last firing", timeOf(v.LastFire).long()},
		{"Last task", orDash(v.LastTask)}, {"Last error", orDash(v.LastError)},
		{"Fired", strconv.FormatUint(v.Fired, 10)}, {"Skipped", strconv.FormatUint(v.Skipped, 10)},
		{"Created", timeOf(v.CreatedAt).long()},
	}); err != nil {
		return err
	}
	_, err := fmt.Fprintf(c.stdout, "\nInput:\n%s\n", indentJSON(v.Input))
	return err
}

// newScheduleSetCmd is pause or resume.
func newScheduleSetCmd(o *clientOptions, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME",
		Short: short,
		Args:  exactArgs(1, "one schedule NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			return schedulePost(cmd.Context(), c, args[0], verb)
		},
	}
}

func schedulePost(ctx context.Context, c *client, name, verb string) error {
	raw, err := c.do(ctx, http.MethodPost, "/v1/schedules/"+url.PathEscape(name)+"/"+verb, nil, nil, "")
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var v api.ScheduleView
	if err := decode(raw, &v, "/v1/schedules"); err != nil {
		return err
	}
	if v.Paused {
		_, err = fmt.Fprintf(c.stdout, "paused schedule %s\n", v.Name)
	} else {
		_, err = fmt.Fprintf(c.stdout, "resumed schedule %s (next %s)\n", v.Name, timeOf(v.Next).long())
	}
	return err
}

func newScheduleDeleteCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a schedule (the tasks it submitted stay)",
		Args:  exactArgs(1, "one schedule NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), http.MethodDelete, "/v1/schedules/"+url.PathEscape(args[0]), nil, nil, ""); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "deleted schedule %s\n", args[0])
			return err
		},
	}
}
