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
