package cluster

import (
	"os"
	"strings"
	"testing"
)

// TestEventTypesDocumented keeps docs/openapi.yaml's EventType enum and
// docs/cli.md's list in step with EventTypes: a new event type must be
// documented where a user reads the journal.
func TestEventTypesDocumented(t *testing.T) {
	api, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cli, err := os.ReadFile("../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	seen := map[EventType]bool{}
	for _, et := range EventTypes() {
		if seen[et] {
			t.Errorf("%s listed twice", et)
		}
		seen[et] = true
		names = append(names, string(et))
		if !strings.Contains(string(api), "- `"+string(et)+"`: ") {
			t.Errorf("docs/openapi.yaml does not describe event type %s", et)
		}
		if !strings.Contains(string(cli), "`"+string(et)+"`") {
			t.Errorf("docs/cli.md does not list event type %s", et)
		}
	}
	if enum := "enum: [" + strings.Join(names, ", ") + "]"; !strings.Contains(string(api), enum) {
		t.Errorf("docs/openapi.yaml EventType enum is not %s", enum)
	}
}

// TestDeadLetterClasses: the classes a dead letter can carry are the ones
// docs/cli.md lists for `dlq --class`; the retryable ones arrive there only
// as attempts_exhausted.
func TestDeadLetterClasses(t *testing.T) {
	var got []string
	for _, c := range ErrorClasses() {
		if c.DeadLetter() {
			got = append(got, string(c))
		}
	}
	if want := "permanent,policy,budget,in_doubt,attempts_exhausted"; strings.Join(got, ",") != want {
		t.Fatalf("dead-letter classes %v, want %s", got, want)
	}
	if n := len(TaskStates()); n != 8 {
		t.Fatalf("%d task states", n)
	}
}
