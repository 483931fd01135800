package plugins

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var updateSchemas = flag.Bool("update-schemas", false, "rewrite docs/schemas from the built-in tools' Schema()")

// TestSchemaDocsMatchTools keeps docs/schemas/TOOL.params.json equal to what
// each built-in tool's Schema() returns, so the published schemas cannot
// drift from the ones the tools hand to agents and models. Run with
// -update-schemas to rewrite them after changing a schema.
func TestSchemaDocsMatchTools(t *testing.T) {
	t.Parallel()
	for tool, schema := range map[string]json.RawMessage{"http": httpSchema, "kv": kvSchema, "model": modelSchema} {
		var v any
		if err := json.Unmarshal(schema, &v); err != nil {
			t.Fatalf("%s: schema is not JSON: %v", tool, err)
		}
		var want bytes.Buffer
		if err := json.Indent(&want, schema, "", "  "); err != nil {
			t.Fatal(err)
		}
		want.WriteByte('\n')
		path := "../docs/schemas/" + tool + ".params.json"
		if *updateSchemas {
			if err := os.WriteFile(path, want.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./plugins -run TestSchemaDocsMatchTools -update-schemas writes it)", err)
		}
		if !bytes.Equal(got, want.Bytes()) {
			t.Errorf("%s differs from the %s tool's Schema() (go test ./plugins -run TestSchemaDocsMatchTools -update-schemas rewrites it)", path, tool)
		}
	}
}
