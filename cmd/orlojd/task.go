package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/spf13/cobra"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/host/api"
)

// taskStates are the task states of the API, as the --state flag takes them.
var taskStates = func() []string {
	var out []string
	for _, s := range cluster.TaskStates() {
		out = append(out, string(s))
	}
	return out
}()

// waitEnds reports whether `task wait` stops at state s: a final state, or
// dead_letter, which only a person leaves.
func waitEnds(s cluster.TaskState) bool { return s.Final() || s == cluster.StateDeadLetter }

func newTaskCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Submit, inspect, wait for and cancel tasks",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newTaskSubmitCmd(&o), newTaskGetCmd(&o), newTaskLsCmd(&o), newTaskEventsCmd(&o),
		newTaskCallsCmd(&o), newTaskWaitCmd(&o), newTaskCancelCmd(&o), newTaskSignalCmd(&o))
	return cmd
}

func newTaskSubmitCmd(o *clientOptions) *cobra.Command {
	var input, key, version, budget string
	var maxAttempts int
	var wait, quiet bool
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "submit AGENT",
		Short: "Submit a task and print its ID (with --wait, wait until it ends)",
		Long: `Submit a task for AGENT (its newest version, or --version) and print the
task ID. With --key, submitting again with the same key returns the task
the first submission created instead of a new one.

With --wait, submit and wait in one request, then show the task as
` + "`task wait`" + ` does: the exit status is 0 only if it succeeded, 1 if it ended
otherwise or is still going after --timeout.`,
		Args: exactArgs(1, "one AGENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			req := map[string]any{"agent": args[0]}
			if cmd.Flags().Changed("input") {
				in, err := readJSONArg("--input", input)
				if err != nil {
					return err
				}
				req["input"] = json.RawMessage(in)
			}
			if version != "" {
				req["version"] = version
			}
			if key != "" {
				req["idempotency_key"] = key
			}
			if maxAttempts < 0 {
				return usagef("--max-attempts must be positive, got %d", maxAttempts)
			}
			if maxAttempts > 0 {
				req["max_attempts"] = maxAttempts
			}
			if budget != "" {
				b, err := budgetFlag(budget)
				if err != nil {
					return err
				}
				req["budget"] = b
			}
			if !wait && (cmd.Flags().Changed("timeout") || quiet) {
				return usagef("--timeout and --quiet go with --wait")
			}
			if timeout < 0 {
				return usagef("--timeout must be positive, got %s", timeout)
			}
			var progress io.Writer
			var q url.Values
			start := time.Now()
			if wait {
				if !quiet && isTerminal(c.stderr) {
					progress = c.stderr
				}
				q = url.Values{"wait": {roundDuration(max(waitStep(progress, timeout, start), time.Millisecond)).String()}}
			}
			var tv api.TaskView
			raw, err := c.postJSONQuery(cmd.Context(), "/v1/tasks", q, req, &tv)
			if err != nil {
				return err
			}
			if tv.Existing {
				fmt.Fprintf(c.stderr, "key %q already submitted: task %s is %s\n", key, tv.ID, tv.State)
			}
			if !wait {
				if c.json {
					return c.printJSON(raw)
				}
				_, err = fmt.Fprintln(c.stdout, tv.ID)
				return err
			}
			if !waitEnds(tv.State) {
				left := time.Duration(0) // none
				if timeout > 0 {
					if left = timeout - time.Since(start); left <= 0 {
						return fmt.Errorf("task %s is still %s after %s", tv.ID, tv.State, timeout)
					}
				}
				if tv, raw, err = waitTask(cmd.Context(), c, tv.ID, left, progress); err != nil {
					return err
				}
			}
			return showEnded(c, tv, raw)
		},
	}
	f := cmd.Flags()
	f.StringVar(&input, "input", "null", "task input as JSON, or @FILE to read it from a file")
	f.StringVar(&key, "key", "", "idempotency key: a resubmission with the same key returns the same task")
	f.StringVar(&version, "version", "", "agent version (default the newest)")
	f.IntVar(&maxAttempts, "max-attempts", 0, "attempts before the task dead-letters (default the agent's)")
	f.StringVar(&budget, "budget", "", budgetHelp+" (default the agent's)")
	f.BoolVar(&wait, "wait", false, "wait until the task ends and show it; exit 0 only if it succeeded")
	f.DurationVar(&timeout, "timeout", 0, "with --wait: give up after this long (exit 1); 0 waits for as long as it takes")
	f.BoolVarP(&quiet, "quiet", "q", false, "with --wait: no progress lines, even on a terminal")
	return cmd
}

// waitStep is how long one long-poll may last: a whole poll, cut to
// what is left of timeout (0: none) since start.
func waitStep(progress io.Writer, timeout time.Duration, start time.Time) time.Duration {
	step := waitPoll
	if progress != nil {
		step = waitProgressPoll
	}
	if timeout > 0 {
		step = min(step, timeout-time.Since(start))
	}
	return step
}

// showEnded prints a task that a wait returned and turns anything but
// success into the error that makes the exit status 1.
func showEnded(c *client, tv api.TaskView, raw []byte) error {
	if c.json {
		if err := c.printJSON(raw); err != nil {
			return err
		}
	} else if err := printTask(c.stdout, tv); err != nil {
		return err
	}
	if tv.State != cluster.StateSucceeded {
		msg := fmt.Sprintf("task %s ended %s", tv.ID, tv.State)
		if tv.Error != nil {
			msg += ": " + string(tv.Error.Class) + ": " + tv.Error.Message
		}
		return errors.New(msg)
	}
	return nil
}

const budgetHelp = "what the task may spend over all its attempts: calls=N,tokens=N,effects=N,duration=D"

// budgetFlag turns a --budget value into the API's budget object.
func budgetFlag(spec string) (api.BudgetRequest, error) {
	b, err := cluster.ParseBudget(spec)
	if err != nil {
		return api.BudgetRequest{}, usagef("--budget: %v", err)
	}
	r := api.BudgetRequest{MaxCalls: b.MaxCalls, MaxTokens: b.MaxTokens, MaxEffects: b.MaxEffects}
	if b.MaxDuration > 0 {
		r.MaxDuration = b.MaxDuration.String()
	}
	return r, nil
}

func newTaskGetCmd(o *clientOptions) *cobra.Command {
	return showCmd(o, "get ID", "Show a task: state, attempts, output or error, history", "one task ID",
		func(id string) string { return "/v1/tasks/" + url.PathEscape(id) },
		func(c *client, tv api.TaskView) error { return printTask(c.stdout, tv) })
}

// printTask is the table form of a task, shared by get, wait and dlq show.
func printTask(w io.Writer, tv api.TaskView) error {
	attempts := strconv.Itoa(tv.Attempts)
	if tv.MaxAttempts > 0 {
		attempts += " of " + strconv.Itoa(tv.MaxAttempts)
	}
	kv := [][2]string{
		{"ID", tv.ID}, {"Agent", tv.Agent + "@" + tv.Version}, {"State", string(tv.State)}, {"Attempts", attempts},
		{"Key", tv.IdempotencyKey}, {"Created", timeOf(tv.CreatedAt).long()}, {"Updated", timeOf(tv.UpdatedAt).long()},
	}
	if tv.State == cluster.StateRetryPending {
		kv = append(kv, [2]string{"Next try", timeOf(tv.NextAt).relative()})
	}
	if w := tv.Wait; w != nil {
		kv = append(kv, [2]string{"Waits for", waitLine(*w)})
	}
	if l := tv.Lease; l != nil {
		kv = append(kv, [2]string{"Lease", fmt.Sprintf("node %s, token %d, expires %s", l.Node, l.Token, timeOf(l.ExpiresAt).relative())})
	}
	kv = append(kv, [2]string{"Input", truncate(compactJSON(tv.Input), 400)})
	if tv.State == cluster.StateSucceeded {
		kv = append(kv, [2]string{"Output", compactJSON(tv.Output)})
	}
	if e := tv.Error; e != nil {
		kv = append(kv, [2]string{"Error", string(e.Class) + ": " + e.Message})
	}
	kv = append(kv, [2]string{"Discarded", tv.DiscardReason})
	kv = append(kv, [2]string{"Budget", budgetLine(tv.Budget)})
	if sp := tv.Spent; sp != nil {
		line := fmt.Sprintf("%d calls, %d tokens", sp.Calls, sp.Tokens)
		if sp.Tokens > 0 {
			var per []string
			for _, a := range sp.ByAttempt {
				per = append(per, fmt.Sprintf("attempt %d: %d", a.Attempt, a.Tokens))
			}
			line += " (" + strings.Join(per, ", ") + ")"
		}
		kv = append(kv, [2]string{"Spent", line})
	}
	if err := fields(w, kv); err != nil {
		return err
	}
	if e := tv.Error; e != nil && e.StderrTail != "" {
		fmt.Fprintln(w, "Stderr (tail):")
		for _, line := range strings.Split(strings.TrimRight(e.StderrTail, "\n"), "\n") {
			fmt.Fprintln(w, "  "+line)
		}
	}
	if len(tv.History) == 0 {
		return nil
	}
	fmt.Fprintln(w, "History:")
	rows := make([][]string, 0, len(tv.History))
	for _, h := range tv.History {
		started, ended := timeOf(h.StartedAt), timeOf(h.EndedAt)
		took := "-"
		if !ended.IsZero() && !started.IsZero() {
			took = roundDuration(ended.Sub(started.Time)).String()
		}
		retry := deref(h.RetryDelay)
		if d, err := time.ParseDuration(retry); err == nil {
			retry = roundDuration(d).String()
		}
		rows = append(rows, []string{"  " + strconv.Itoa(h.N), h.Node, started.short(), took,
			orDash(h.Outcome), orDash(retry), truncate(orDash(h.Error), 80)})
	}
	return table(w, []string{"  #", "NODE", "STARTED", "TOOK", "OUTCOME", "RETRY IN", "ERROR"}, rows)
}

func newTaskLsCmd(o *clientOptions) *cobra.Command {
	var state, agent, since, until string
	var limit int
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List tasks, oldest first",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			q := url.Values{}
			if state != "" {
				if !slices.Contains(taskStates, state) {
					return usagef("--state %q: want one of %s", state, strings.Join(taskStates, ", "))
				}
				q.Set("state", state)
			}
			if agent != "" {
				q.Set("agent", agent)
			}
			if err := setWhen(q, since, until); err != nil {
				return err
			}
			var list []api.TaskView
			raw, err := c.getList(cmd.Context(), "/v1/tasks", q, limit, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			rows := make([][]string, 0, len(list))
			for _, t := range list {
				rows = append(rows, []string{t.ID, t.Agent + "@" + t.Version, string(t.State), strconv.Itoa(t.Attempts),
					timeOf(t.CreatedAt).short(), timeOf(t.UpdatedAt).short()})
			}
			return table(c.stdout, []string{"ID", "AGENT", "STATE", "ATTEMPTS", "CREATED", "UPDATED"}, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&state, "state", "", "only tasks in this state ("+strings.Join(taskStates, ", ")+")")
	f.StringVar(&agent, "agent", "", "only tasks of this agent")
	f.StringVar(&since, "since", "", "only tasks submitted since then: RFC 3339, or a duration ago (e.g. 1h)")
	f.StringVar(&until, "until", "", "only tasks submitted before then: RFC 3339, or a duration ago")
	f.IntVar(&limit, "limit", 0, fmt.Sprintf("at most this many tasks (default %d, at most %d)", api.DefaultListLimit, api.MaxListLimit))
	return cmd
}

func newTaskEventsCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "events ID",
		Short: "Show a task's journal: every lease, call, log line and outcome",
		Args:  exactArgs(1, "one task ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var list []api.EventView
			raw, err := c.getJSON(cmd.Context(), "/v1/tasks/"+url.PathEscape(args[0])+"/events", nil, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			return eventTable(c.stdout, list)
		},
	}
}

// eventTable shows a journal by time (see callTable for why not by seq).
func eventTable(w io.Writer, list []api.EventView) error {
	list = slices.Clone(list)
	slices.SortStableFunc(list, func(a, b api.EventView) int { return timeOf(a.At).Compare(timeOf(b.At).Time) })
	rows := make([][]string, 0, len(list))
	for _, e := range list {
		msg := e.Message
		if e.Type == cluster.EventCall {
			var d host.CallDetail
			json.Unmarshal(e.Detail, &d)
			msg = strings.Join(nonEmpty(string(d.Outcome), d.Status, d.Reason, msg), " ")
		}
		attempt := "-"
		if e.Attempt > 0 {
			attempt = strconv.Itoa(e.Attempt)
		}
		rows = append(rows, []string{timeOf(e.At).clock(), attempt, string(e.Type), orDash(e.Tool), truncate(msg, 100)})
	}
	return table(w, []string{"AT", "ATTEMPT", "EVENT", "TOOL", "DETAIL"}, rows)
}

func nonEmpty(vs ...string) []string {
	var out []string
	for _, v := range vs {
		if v != "" {
			out = append(out, v)
		}
	}
	return out
}

func newTaskCallsCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "calls ID",
		Short: "Show a task's tool calls per attempt: invoked, replayed from the ledger, ...",
		Args:  exactArgs(1, "one task ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var list []api.CallView
			raw, err := c.getJSON(cmd.Context(), "/v1/tasks/"+url.PathEscape(args[0])+"/calls", nil, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			return callTable(c.stdout, list)
		},
	}
}

// callTable shows calls in the order they happened. The API lists them in
// journal order, where a replayed call is journaled with its attempt's end,
// after a call invoked in the same attempt; the table reads better by time.
// Attempts count from 1 again after a DLQ retry, so a line marks each retry.
func callTable(w io.Writer, list []api.CallView) error {
	list = slices.Clone(list)
	slices.SortStableFunc(list, func(a, b api.CallView) int { return timeOf(a.At).Compare(timeOf(b.At).Time) })
	rows := make([][]string, 0, len(list))
	var rounds []int // rows that start a round after a DLQ retry
	// A call appears once per attempt, so a call seen again under the same
	// attempt number also means a new round.
	prev, seen := 0, map[string]bool{}
	for i, cv := range list {
		if cv.Attempt < prev || (cv.Attempt == prev && seen[cv.ID]) {
			rounds = append(rounds, i)
		}
		if cv.Attempt != prev || (len(rounds) > 0 && rounds[len(rounds)-1] == i) {
			clear(seen)
		}
		prev, seen[cv.ID] = cv.Attempt, true
		rows = append(rows, []string{strconv.Itoa(cv.Attempt), cv.Tool, string(cv.Outcome), orDash(cv.Status),
			roundDuration(time.Duration(cv.DurationUS) * time.Microsecond).String(), shortDigest(cv.ID)})
	}
	var buf bytes.Buffer
	if err := table(&buf, []string{"ATTEMPT", "TOOL", "OUTCOME", "STATUS", "TOOK", "CALL"}, rows); err != nil {
		return err
	}
	// The separators go in after alignment, so they do not widen a column.
	lines := strings.SplitAfter(buf.String(), "\n")
	for i, line := range lines {
		if len(rounds) > 0 && rounds[0] == i-1 { // line 0 is the header
			fmt.Fprintln(w, "-- retried from the DLQ; attempts count from 1 again --")
			rounds = rounds[1:]
		}
		if _, err := io.WriteString(w, line); err != nil {
			return err
		}
	}
	return nil
}

func newTaskWaitCmd(o *clientOptions) *cobra.Command {
	var timeout time.Duration
	var quiet bool
	cmd := &cobra.Command{
		Use:   "wait ID",
		Short: "Wait until a task ends; exit 0 only if it succeeded",
		Long: `Wait until the task is succeeded, dead_letter, discarded or cancelled, then
show it. The exit status is 0 only if it succeeded. On a terminal, each
change of state is shown as it happens.`,
		Args: exactArgs(1, "one task ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if timeout < 0 {
				return usagef("--timeout must be positive, got %s", timeout)
			}
			var progress io.Writer
			if !quiet && isTerminal(c.stderr) {
				progress = c.stderr
			}
			tv, raw, err := waitTask(cmd.Context(), c, args[0], timeout, progress)
			if err != nil {
				return err
			}
			return showEnded(c, tv, raw)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up after this long (exit 1); 0 waits for as long as it takes")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress lines, even on a terminal")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// Long-poll lengths: without progress to show, one request per 30 s; with
// it, short polls so a state change shows within about a second (the wait
// endpoint answers only at a final state or its timeout).
const (
	waitPoll         = 30 * time.Second
	waitProgressPoll = time.Second
)

// waitTask long-polls until the task reaches a final state or timeout (0:
// none) passes. progress, if set, hears one line per change of state.
func waitTask(ctx context.Context, c *client, id string, timeout time.Duration, progress io.Writer) (api.TaskView, []byte, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	start := time.Now()
	path := "/v1/tasks/" + url.PathEscape(id) + "/wait"
	last := ""
	for {
		step := waitStep(progress, timeout, start)
		var tv api.TaskView
		raw, err := c.getJSON(ctx, path, url.Values{"timeout": {roundDuration(max(step, time.Millisecond)).String()}}, &tv)
		if err != nil {
			return tv, nil, err
		}
		// One line per change of state or attempt; the countdown to the next
		// try changes every poll and is not a change.
		if key := fmt.Sprintf("%s/%d", tv.State, tv.Attempts); progress != nil && key != last {
			fmt.Fprintf(progress, "%s  %s\n", time.Now().Format("15:04:05"), progressLine(tv))
			last = key
		}
		if waitEnds(tv.State) {
			return tv, raw, nil
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return tv, raw, fmt.Errorf("task %s is still %s after %s", id, tv.State, timeout)
		}
	}
}

// progressLine describes where a task is, for `task wait` on a terminal.
func progressLine(tv api.TaskView) string {
	of := ""
	if tv.MaxAttempts > 0 {
		of = " of " + strconv.Itoa(tv.MaxAttempts)
	}
	switch tv.State {
	case cluster.StateRunning:
		node := ""
		if tv.Lease != nil {
			node = ", node " + tv.Lease.Node
		}
		return fmt.Sprintf("running: attempt %d%s%s", tv.Attempts, of, node)
	case cluster.StateRetryPending:
		why := ""
		if tv.Error != nil {
			why = ": " + string(tv.Error.Class) + ": " + truncate(tv.Error.Message, 60)
		}
		return fmt.Sprintf("retry_pending: attempt %d%s failed%s; next try %s", tv.Attempts, of, why, timeOf(tv.NextAt).relative())
	case cluster.StateDeadLetter:
		why := ""
		if tv.Error != nil {
			why = ": " + string(tv.Error.Class)
		}
		return fmt.Sprintf("dead_letter after %d attempt(s)%s", tv.Attempts, why)
	case cluster.StateSucceeded:
		return fmt.Sprintf("succeeded after %d attempt(s)", tv.Attempts)
	case cluster.StateWaiting:
		if tv.Wait != nil {
			return "waiting: " + waitLine(*tv.Wait)
		}
	}
	return string(tv.State)
}

// waitLine says what a waiting task waits for.
func waitLine(w api.WaitView) string {
	switch w.Kind {
	case cluster.WaitSleep:
		return "sleep until " + timeOf(w.Until).relative()
	case cluster.WaitSignal:
		if w.Until != nil {
			return fmt.Sprintf("signal %q, timeout %s", w.Signal, timeOf(w.Until).relative())
		}
		return fmt.Sprintf("signal %q", w.Signal)
	}
	return string(w.Kind)
}

func newTaskSignalCmd(o *clientOptions) *cobra.Command {
	var data, key string
	cmd := &cobra.Command{
		Use:   "signal ID NAME",
		Short: "Send a signal to a task, for its orloj.Await(NAME)",
		Long: `Send the signal NAME to a task. A task waiting in orloj.Await(NAME) is queued
again and its Await returns the payload; a task that does not await it yet
keeps it for its next Await of that name. With --key, a resent signal with
the same key changes nothing (a retried webhook delivers once).`,
		Args: exactArgs(2, "a task ID and a signal name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			payload, err := readJSONArg("--data", data)
			if err != nil {
				return err
			}
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var q url.Values
			if key != "" {
				q = url.Values{"key": {key}}
			}
			var sv api.SignalView
			path := "/v1/tasks/" + url.PathEscape(args[0]) + "/signals/" + url.PathEscape(args[1])
			raw, err := c.postJSONQuery(cmd.Context(), path, q, json.RawMessage(payload), &sv)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			switch {
			case sv.Duplicate:
				_, err = fmt.Fprintf(c.stdout, "task %s: a signal with key %q was sent before; nothing changed (task is %s)\n", sv.Task.ID, key, sv.Task.State)
			case sv.Delivered:
				_, err = fmt.Fprintf(c.stdout, "task %s: signal %s delivered; the task is %s\n", sv.Task.ID, args[1], sv.Task.State)
			default:
				_, err = fmt.Fprintf(c.stdout, "task %s: signal %s kept until the task awaits it (task is %s)\n", sv.Task.ID, args[1], sv.Task.State)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&data, "data", "null", "the payload as JSON, or @FILE to read it from a file")
	cmd.Flags().StringVar(&key, "key", "", "idempotency key: a second signal with this key is a no-op")
	return cmd
}

func newTaskCancelCmd(o *clientOptions) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a task that has not finished",
		Args:  exactArgs(1, "one task ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var tv api.TaskView
			raw, err := c.postJSON(cmd.Context(), "/v1/tasks/"+url.PathEscape(args[0])+"/cancel", map[string]string{"reason": reason}, &tv)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			_, err = fmt.Fprintf(c.stdout, "task %s is %s\n", tv.ID, tv.State)
			return err
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why, for the journal")
	return cmd
}

// budgetLine renders a task's budget; a zero limit is none.
func budgetLine(b api.BudgetView) string {
	limit := func(n int64) string {
		if n == 0 {
			return "none"
		}
		return strconv.FormatInt(n, 10)
	}
	return fmt.Sprintf("calls %s, tokens %s, effects %s, duration %s",
		limit(b.MaxCalls), limit(b.MaxTokens), limit(b.MaxEffects), orNone(b.MaxDuration))
}
