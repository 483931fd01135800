package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

// dlqClasses are the error classes a dead letter can carry.
var dlqClasses = func() []string {
	var out []string
	for _, c := range cluster.ErrorClasses() {
		if c.DeadLetter() {
			out = append(out, string(c))
		}
	}
	return out
}()

func newDLQCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "dlq",
		Short: "Inspect, retry and discard dead-lettered tasks",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newDLQLsCmd(&o), newDLQShowCmd(&o), newDLQRetryCmd(&o), newDLQDiscardCmd(&o), newDLQResolveCmd(&o))
	return cmd
}

// dlqFilter is the --agent/--class selection of ls and the bulk verbs.
type dlqFilter struct {
	agent, class string
}

func (f *dlqFilter) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.agent, "agent", "", "only dead letters of this agent")
	cmd.Flags().StringVar(&f.class, "class", "", "only dead letters of this error class ("+strings.Join(dlqClasses, ", ")+")")
}

func (f *dlqFilter) check() error {
	if f.class != "" && !slices.Contains(dlqClasses, f.class) {
		return usagef("--class %q: want one of %s", f.class, strings.Join(dlqClasses, ", "))
	}
	return nil
}

func newDLQLsCmd(o *clientOptions) *cobra.Command {
	var fl dlqFilter
	var since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List dead-lettered tasks",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if err := fl.check(); err != nil {
				return err
			}
			q := url.Values{}
			if fl.agent != "" {
				q.Set("agent", fl.agent)
			}
			if fl.class != "" {
				q.Set("class", fl.class)
			}
			if err := setWhen(q, since, until); err != nil {
				return err
			}
			var list []api.TaskView
			raw, err := c.getList(cmd.Context(), "/v1/dlq", q, limit, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			rows := make([][]string, 0, len(list))
			for _, t := range list {
				class, msg := "-", "-"
				if t.Error != nil {
					class, msg = string(t.Error.Class), t.Error.Message
				}
				rows = append(rows, []string{t.ID, t.Agent + "@" + t.Version, class, strconv.Itoa(t.Attempts), timeOf(t.UpdatedAt).short(), truncate(msg, 70)})
			}
			return table(c.stdout, []string{"ID", "AGENT", "CLASS", "ATTEMPTS", "SINCE", "ERROR"}, rows)
		},
	}
	fl.flags(cmd)
	cmd.Flags().StringVar(&since, "since", "", "only tasks dead-lettered since then: RFC 3339, or a duration ago (e.g. 1h)")
	cmd.Flags().StringVar(&until, "until", "", "only tasks dead-lettered until then: RFC 3339, or a duration ago")
	cmd.Flags().IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many entries (default %d, at most %d)", api.DefaultListLimit, api.MaxListLimit))
	return cmd
}

// parseWhen reads an RFC 3339 time or a duration meaning that long ago.
func parseWhen(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time nor a positive duration", s)
	}
	return time.Now().Add(-d), nil
}

func newDLQShowCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a dead letter: why it failed, its stderr, its recorded calls and journal",
		Args:  exactArgs(1, "one task ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var v api.DLQEntry
			raw, err := c.getJSON(cmd.Context(), "/v1/dlq/"+url.PathEscape(args[0]), nil, &v)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			if err := printTask(c.stdout, v.Task); err != nil {
				return err
			}
			if v.CallsTotal > len(v.Calls) {
				fmt.Fprintf(c.stdout, "Ledger (the last %d of %d calls; a retry replays every recorded result):\n", len(v.Calls), v.CallsTotal)
			} else {
				fmt.Fprintln(c.stdout, "Ledger (a retry replays every recorded result):")
			}
			rows := make([][]string, 0, len(v.Calls))
			for _, l := range v.Calls {
				rec := "recorded"
				if !l.HasResult {
					rec = "intent only (in doubt)"
				}
				rows = append(rows, []string{"  " + l.Tool, strconv.Itoa(l.Attempt), rec, orDash(l.Status), shortDigest(l.ID)})
			}
			if err := table(c.stdout, []string{"  TOOL", "ATTEMPT", "RESULT", "STATUS", "CALL"}, rows); err != nil {
				return err
			}
			if len(v.Events) > 0 {
				if v.EventsTotal > len(v.Events) {
					fmt.Fprintf(c.stdout, "Journal (the last %d of %d events; orlojd task events lists them all):\n", len(v.Events), v.EventsTotal)
				} else {
					fmt.Fprintln(c.stdout, "Journal:")
				}
				return eventTable(c.stdout, v.Events)
			}
			return nil
		},
	}
}

func newDLQRetryCmd(o *clientOptions) *cobra.Command {
	var version, budget string
	var all bool
	var fl dlqFilter
	cmd := &cobra.Command{
		Use:   "retry ID | --all [--agent A] [--class C]",
		Short: "Requeue dead letters: attempts reset, ledger kept",
		Long: `Requeue a dead-lettered task (or, with --all, every one the filters select).
Its attempts start again from zero and its ledger is kept, so every call
that already has a recorded result is replayed, not repeated. With
--agent-version the task runs a newer version of its agent: a fixed agent
finishes from the step that failed. With --budget the task gets more to
spend (a task dead-lettered with class budget continues from its ledger).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if err := bulkArgs(args, all, fl); err != nil {
				return err
			}
			if all && budget != "" {
				return usagef("--budget goes with one ID, not --all")
			}
			if all {
				return dlqBulk(cmd, c, "/v1/dlq/retry", map[string]string{"agent": fl.agent, "class": fl.class, "version": version}, "requeued")
			}
			req := api.RetryDLQRequest{Version: version}
			if budget != "" {
				b, err := budgetFlag(budget)
				if err != nil {
					return err
				}
				req.Budget = &b
			}
			var tv api.TaskView
			raw, err := c.postJSON(cmd.Context(), "/v1/dlq/"+url.PathEscape(args[0])+"/retry", req, &tv)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			_, err = fmt.Fprintf(c.stdout, "requeued %s (%s@%s)\n", tv.ID, tv.Agent, tv.Version)
			return err
		},
	}
	cmd.Flags().StringVar(&version, "agent-version", "", "run the retry on this version of the task's agent")
	cmd.Flags().StringVar(&budget, "budget", "", "replace the named budgets of the task: calls=N,tokens=N,effects=N,duration=D")
	cmd.Flags().BoolVar(&all, "all", false, "retry every dead letter the filters select")
	fl.flags(cmd)
	return cmd
}

func newDLQDiscardCmd(o *clientOptions) *cobra.Command {
	var reason string
	var all bool
	var fl dlqFilter
	cmd := &cobra.Command{
		Use:   "discard ID --reason R | --all [--agent A] [--class C] --reason R",
		Short: "Discard dead letters, with a reason kept for audit",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if err := bulkArgs(args, all, fl); err != nil {
				return err
			}
			if strings.TrimSpace(reason) == "" {
				return usagef("--reason is required: say why, for whoever audits the task later")
			}
			if all {
				return dlqBulk(cmd, c, "/v1/dlq/discard", map[string]string{"agent": fl.agent, "class": fl.class, "reason": reason}, "discarded")
			}
			var tv api.TaskView
			raw, err := c.postJSON(cmd.Context(), "/v1/dlq/"+url.PathEscape(args[0])+"/discard", map[string]string{"reason": reason}, &tv)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			_, err = fmt.Fprintf(c.stdout, "discarded %s\n", tv.ID)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (required)")
	cmd.Flags().BoolVar(&all, "all", false, "discard every dead letter the filters select")
	fl.flags(cmd)
	return cmd
}

func newDLQResolveCmd(o *clientOptions) *cobra.Command {
	var callID, result, note, by string
	var applied, notApplied bool
	cmd := &cobra.Command{
		Use:   "resolve ID --call CALL_ID (--applied --result JSON|@FILE | --not-applied) --note TEXT [--by NAME]",
		Short: "Say whether a call left in doubt took effect, so a retry can go on",
		Long: `A dead letter of class in_doubt stopped at a call that may have taken effect
(its tool is unsafe and the answer was lost). Find out from the service, then
record what you learned: --applied with the result the call returned (a retry
replays it and goes on), or --not-applied (a retry invokes the call again).
The answer, who gave it and the note go into the task's journal. Then run
dlq retry ID.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if applied == notApplied {
				return usagef("give exactly one of --applied and --not-applied")
			}
			if callID == "" {
				return usagef("--call is required: the call ID dlq show names")
			}
			if strings.TrimSpace(note) == "" {
				return usagef("--note is required: say how you know, for whoever audits the task later")
			}
			body := map[string]any{"call_id": callID, "applied": applied, "by": by, "note": note}
			switch {
			case applied && result == "":
				return usagef("--result is required with --applied: the JSON the call returned, or @FILE")
			case notApplied && result != "":
				return usagef("--result goes with --applied; a call that was not applied is invoked again")
			case applied:
				r, err := readJSONArg("--result", result)
				if err != nil {
					return err
				}
				body["result"] = json.RawMessage(r)
			}
			var lv api.LedgerView
			raw, err := c.postJSON(cmd.Context(), "/v1/dlq/"+url.PathEscape(args[0])+"/resolve", body, &lv)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			answer := "not applied: a retry invokes it again"
			if applied {
				answer = "applied: a retry replays the given result"
			}
			_, err = fmt.Fprintf(c.stdout, "call %s of %s resolved as %s\n", lv.ID, args[0], answer)
			return err
		},
	}
	cmd.Flags().StringVar(&callID, "call", "", "the call left in doubt (required)")
	cmd.Flags().BoolVar(&applied, "applied", false, "the call took effect")
	cmd.Flags().BoolVar(&notApplied, "not-applied", false, "the call did not take effect")
	cmd.Flags().StringVar(&result, "result", "", "with --applied: the result the call returned, JSON or @FILE")
	cmd.Flags().StringVar(&note, "note", "", "how you know (required)")
	cmd.Flags().StringVar(&by, "by", currentUser(), "who decided")
	return cmd
}

// currentUser names the person at the terminal, for the journal.
func currentUser() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return "operator"
}

// bulkArgs checks that a task ID and --all are not both given, nor neither.
func bulkArgs(args []string, all bool, fl dlqFilter) error {
	switch {
	case all && len(args) > 0:
		return usagef("give a task ID or --all, not both")
	case !all && len(args) != 1:
		return usagef("expected one task ID (or --all), got %d argument(s)", len(args))
	case !all && (fl.agent != "" || fl.class != ""):
		return usagef("--agent and --class select tasks for --all")
	}
	return fl.check()
}

func dlqBulk(cmd *cobra.Command, c *client, path string, req map[string]string, verb string) error {
	for k, v := range req {
		if v == "" {
			delete(req, k)
		}
	}
	// The node acts on at most api.MaxBulk entries per request: ask again
	// while more remain and the last request changed some (entries that
	// cannot change are skipped, and would be matched forever).
	total := api.BulkResult{IDs: []string{}}
	for {
		var res api.BulkResult
		if _, err := c.postJSON(cmd.Context(), path, req, &res); err != nil {
			if total.Count > 0 {
				fmt.Fprintf(c.stderr, "%s %d task(s) before the error\n", verb, total.Count)
			}
			return err
		}
		total.Count += res.Count
		total.IDs = append(total.IDs, res.IDs...)
		total.Remaining = res.Remaining
		if !c.json {
			for _, id := range res.IDs {
				fmt.Fprintln(c.stdout, id)
			}
		}
		if res.Remaining == 0 || res.Count == 0 {
			break
		}
		fmt.Fprintf(c.stderr, "%s %d task(s), %d more match\n", verb, total.Count, res.Remaining)
	}
	if c.json {
		raw, err := json.Marshal(total)
		if err != nil {
			return err
		}
		return c.printJSON(raw)
	}
	_, err := fmt.Fprintf(c.stderr, "%s %d task(s)\n", verb, total.Count)
	return err
}

// setWhen puts --since and --until, each a time or a duration before now,
// into q as RFC 3339 times.
func setWhen(q url.Values, since, until string) error {
	for _, p := range []struct{ flag, v string }{{"since", since}, {"until", until}} {
		if p.v == "" {
			continue
		}
		t, err := parseWhen(p.v)
		if err != nil {
			return usagef("--%s: %v", p.flag, err)
		}
		q.Set(p.flag, t.UTC().Format(time.RFC3339Nano))
	}
	return nil
}
