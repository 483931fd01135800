package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/orloj/orloj/host/api"
)

func newToolCmd() *cobra.Command {
	var o clientOptions
	cmd := &cobra.Command{
		Use:   "tool",
		Short: "Declare, list, show and remove declared tools",
	}
	addClientFlags(cmd, &o)
	cmd.AddCommand(newToolPushCmd(&o), newToolLsCmd(&o), newToolShowCmd(&o), newToolRmCmd(&o))
	return cmd
}

func newToolPushCmd(o *clientOptions) *cobra.Command {
	var module string
	cmd := &cobra.Command{
		Use:   "push FILE [--module PLUGIN.wasm]",
		Short: "Declare a tool, or a new version of one, from a definition file (JSON or YAML)",
		Long: `Declare a tool from a definition file, in JSON or YAML. Every node of
the cluster sees the definition. Pushing a definition whose content differs
from the tool's newest version makes the next version; pushing the same
content again changes nothing. Tasks use the newest version when they are
submitted, and keep it for all their attempts.

Secrets are named in the definition, never written in it: each node reads
them from ORLOJ_SECRET_<NAME> or DATA_DIR/secrets/<name> when a call needs
them. See docs/tools.md, "Declaring tools".

A tool of kind wasm runs a plugin module (docs/plugins.md): --module uploads
it and fills the definition's wasm.module with its digest.`,
		Args: exactArgs(1, "one definition FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			return toolPush(cmd.Context(), c, args[0], module)
		},
	}
	cmd.Flags().StringVar(&module, "module", "", "a wasm tool's plugin module to upload with the definition")
	return cmd
}

// definitionJSON reads a definition file as JSON; a file that is not a
// JSON object is read as YAML.
func definitionJSON(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read definition: %w", err)
	}
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return t, nil
	}
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, usagef("%s is neither a JSON object nor YAML: %v", path, err)
	}
	return j, nil
}

func toolPush(ctx context.Context, c *client, path, module string) error {
	doc, err := definitionJSON(path)
	if err != nil {
		return err
	}
	if module != "" {
		if doc, err = withModule(ctx, c, doc, module); err != nil {
			return err
		}
	}
	raw, err := c.do(ctx, http.MethodPost, "/v1/tools", nil, doc, "application/json")
	if err != nil {
		return err
	}
	if c.json {
		return c.printJSON(raw)
	}
	var v api.ToolView
	if err := decode(raw, &v, "/v1/tools"); err != nil {
		return err
	}
	_, err = fmt.Fprintf(c.stdout, "pushed tool %s version %d (%s, %s; sha256:%s; secrets: %s)\n",
		v.Name, v.Version, v.Kind, orDash(string(v.Semantics)), shortDigest(v.Digest), orNone(strings.Join(v.Secrets, ",")))
	return err
}

// withModule uploads a plugin module and names it in the definition's wasm
// section.
func withModule(ctx context.Context, c *client, doc []byte, path string) ([]byte, error) {
	wasm, err := os.ReadFile(path)
	if err != nil {
		return nil, usagef("--module: %v", err)
	}
	var def map[string]json.RawMessage
	if err := json.Unmarshal(doc, &def); err != nil {
		return nil, usagef("definition: %v", err)
	}
	var kind string
	_ = json.Unmarshal(def["kind"], &kind)
	if kind != "wasm" {
		return nil, usagef("--module goes with a tool of kind wasm, not %q", kind)
	}
	raw, err := c.do(ctx, http.MethodPost, "/v1/modules", nil, wasm, "application/wasm")
	if err != nil {
		return nil, err
	}
	var mv api.ModuleView
	if err := decode(raw, &mv, "/v1/modules"); err != nil {
		return nil, err
	}
	section := map[string]json.RawMessage{}
	if w, ok := def["wasm"]; ok {
		if err := json.Unmarshal(w, &section); err != nil {
			return nil, usagef("definition: wasm: %v", err)
		}
	}
	section["module"], _ = json.Marshal(mv.Digest)
	def["wasm"], _ = json.Marshal(section)
	return json.Marshal(def)
}

func newToolLsCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List declared tools (newest version of each)",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			var list []api.ToolView
			raw, err := c.getJSON(cmd.Context(), "/v1/tools", nil, &list)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			return toolTable(c, list)
		},
	}
}

func toolTable(c *client, list []api.ToolView) error {
	rows := make([][]string, 0, len(list))
	for _, v := range list {
		rows = append(rows, []string{v.Name, strconv.FormatUint(v.Version, 10), v.Kind, orDash(string(v.Semantics)),
			orNone(strings.Join(v.Secrets, ",")), shortDigest(v.Digest), timeOf(v.CreatedAt).short()})
	}
	return table(c.stdout, []string{"NAME", "VERSION", "KIND", "SEMANTICS", "SECRETS", "DIGEST", "CREATED"}, rows)
}

func newToolShowCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME[@VERSION]",
		Short: "Show a declared tool's definition (the newest, or VERSION) and its versions",
		Args:  exactArgs(1, "one tool NAME or NAME@VERSION"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			name, version, _ := strings.Cut(args[0], "@")
			q := url.Values{}
			if version != "" {
				q.Set("version", version)
			}
			var v api.ToolDetail
			raw, err := c.getJSON(cmd.Context(), "/v1/tools/"+url.PathEscape(name), q, &v)
			if err != nil {
				return err
			}
			if c.json {
				return c.printJSON(raw)
			}
			t := v.Tool
			status := "active"
			if v.Removed {
				status = "removed"
			}
			if err := fields(c.stdout, [][2]string{
				{"Name", t.Name}, {"Version", strconv.FormatUint(t.Version, 10)}, {"Kind", t.Kind},
				{"Semantics", orDash(string(t.Semantics))}, {"Secrets", orNone(strings.Join(t.Secrets, ", "))},
				{"Digest", "sha256:" + t.Digest}, {"Created", timeOf(t.CreatedAt).long()}, {"Status", status},
			}); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "\nDefinition:\n%s\n", indentJSON(t.Definition))
			fmt.Fprintln(c.stdout, "\nVersions:")
			return toolTable(c, v.Versions)
		},
	}
}

func newToolRmCmd(o *clientOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a declared tool",
		Long: `Remove a declared tool: new tasks and agent pushes can no longer use
it. Tasks that were submitted while it existed keep the version they
pinned, so they still run, and replay, as they began. Pushing the tool
again makes it the next version.`,
		Args: exactArgs(1, "one tool NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd, o)
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), http.MethodDelete, "/v1/tools/"+url.PathEscape(args[0]), nil, nil, ""); err != nil {
				return err
			}
			_, err = fmt.Fprintf(c.stdout, "removed tool %s\n", args[0])
			return err
		},
	}
}

// indentJSON renders a JSON document two spaces deep, for reading.
func indentJSON(raw []byte) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}
