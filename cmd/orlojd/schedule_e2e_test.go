package main

import (
	"strings"
	"testing"
	"time"
)

type scheduleJSON struct {
	Name     string         `json:"name"`
	Agent    string         `json:"agent"`
	Cron     string         `json:"cron"`
	Timezone string         `json:"timezone"`
	Overlap  string         `json:"overlap"`
	CatchUp  string         `json:"catch_up"`
	Paused   bool           `json:"paused"`
	Next     *string        `json:"next"`
	LastTask string         `json:"last_task"`
	Fired    uint64         `json:"fired"`
	Input    map[string]any `json:"input"`
}

// TestScheduleCLI, through `orlojd serve`: a schedule created with the CLI
// fires tasks of its agent with its input and the firing's key; ls and show
// report it; pause stops the firings and resume restarts them; delete
// leaves its tasks. What is wrong is refused, saying why.
func TestScheduleCLI(t *testing.T) {
	t.Parallel()
	needBinary(t)
	n := startNode(t)
	n.ok("agent", "push", agent("hello"), "--name", "hello")
	n.fails(1, []string{`cron expression "every minute"`}, "schedule", "create", "s", "--agent", "hello", "--cron", "every minute")
	n.fails(1, []string{`timezone "Mars/Base"`}, "schedule", "create", "s", "--agent", "hello", "--cron", "@hourly", "--timezone", "Mars/Base")
	n.fails(1, []string{"overlap"}, "schedule", "create", "s", "--agent", "hello", "--cron", "@hourly", "--overlap", "queue")
	n.fails(1, []string{"nosuch"}, "schedule", "create", "s", "--agent", "nosuch", "--cron", "@hourly")
	n.fails(2, []string{"--agent and --cron"}, "schedule", "create", "s", "--cron", "@hourly")

	out := n.ok("schedule", "create", "tick", "--agent", "hello", "--cron", "* * * * * *", "--input", `{"from":"schedule"}`, "--timezone", "Europe/Prague")
	if !strings.Contains(out, "created schedule tick (* * * * * * Europe/Prague, next ") {
		t.Fatalf("create said %q", out)
	}
	n.fails(1, []string{"already exists"}, "schedule", "create", "tick", "--agent", "hello", "--cron", "@hourly")
	var sv scheduleJSON
	deadline := time.Now().Add(30 * time.Second)
	for n.okJSON(&sv, "schedule", "show", "tick"); sv.Fired < 2; n.okJSON(&sv, "schedule", "show", "tick") {
		if time.Now().After(deadline) {
			t.Fatalf("two firings did not come within 30 s: %+v", sv)
		}
		time.Sleep(200 * time.Millisecond) // a poll interval, not synchronisation
	}
	if sv.Agent != "hello" || sv.Overlap != "skip" || sv.CatchUp != "one" || sv.Input["from"] != "schedule" || sv.LastTask == "" {
		t.Fatalf("show: %+v", sv)
	}
	n.ok("task", "wait", sv.LastTask, "--timeout", "1m")
	var tk struct {
		taskJSON
		IdempotencyKey string `json:"idempotency_key"`
	}
	n.okJSON(&tk, "task", "get", sv.LastTask)
	if tk.State != "succeeded" || compact(tk.Output) != `{"from":"schedule"}` || !strings.HasPrefix(tk.IdempotencyKey, "schedule/tick/") {
		t.Fatalf("the firing's task: %+v key %q", tk.taskJSON, tk.IdempotencyKey)
	}
	if ls := n.ok("schedule", "ls"); !strings.Contains(ls, "tick") || !strings.Contains(ls, "Europe/Prague") {
		t.Fatalf("ls:\n%s", ls)
	}

	if out := n.ok("schedule", "pause", "tick"); out != "paused schedule tick\n" {
		t.Fatalf("pause said %q", out)
	}
	n.okJSON(&sv, "schedule", "show", "tick")
	fired := sv.Fired
	if !sv.Paused || sv.Next != nil {
		t.Fatalf("paused: %+v", sv)
	}
	if show := n.ok("schedule", "show", "tick"); !strings.Contains(show, "paused") {
		t.Fatalf("show of a paused schedule:\n%s", show)
	}
	// Two firing times pass: nothing fires.
	time.Sleep(2500 * time.Millisecond) // the time a firing would take, not synchronisation
	if n.okJSON(&sv, "schedule", "show", "tick"); sv.Fired != fired {
		t.Fatalf("a paused schedule fired: %d, then %d", fired, sv.Fired)
	}
	if out := n.ok("schedule", "resume", "tick"); !strings.HasPrefix(out, "resumed schedule tick (next ") {
		t.Fatalf("resume said %q", out)
	}
	deadline = time.Now().Add(30 * time.Second)
	for n.okJSON(&sv, "schedule", "show", "tick"); sv.Fired <= fired; n.okJSON(&sv, "schedule", "show", "tick") {
		if time.Now().After(deadline) {
			t.Fatalf("no firing after resume: %+v", sv)
		}
		time.Sleep(200 * time.Millisecond) // a poll interval
	}
	n.ok("schedule", "pause", "tick")
	n.okJSON(&sv, "schedule", "show", "tick")
	n.ok("schedule", "delete", "tick")
	n.fails(1, []string{"unknown schedule"}, "schedule", "show", "tick")
	n.fails(1, []string{"unknown schedule"}, "schedule", "delete", "tick")
	var tasks []taskJSON
	n.okJSON(&tasks, "task", "ls", "--agent", "hello")
	if uint64(len(tasks)) != sv.Fired {
		t.Fatalf("%d tasks after delete; the schedule fired %d", len(tasks), sv.Fired)
	}
}
