package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host"
	"github.com/orloj/orloj/plugins"
)

// ToolView is one version of a declared tool. Definition is the document
// as stored: it names the secrets its headers use, never their values,
// which only the nodes hold.
type ToolView struct {
	Name       string            `json:"name"`
	Version    uint64            `json:"version"`
	Kind       string            `json:"kind"`
	Semantics  plugins.Semantics `json:"semantics,omitempty"`
	Digest     string            `json:"digest"`
	Secrets    []string          `json:"secrets"` // names the definition refers to
	Definition json.RawMessage   `json:"definition"`
	CreatedAt  *string           `json:"created_at"`
	Removed    bool              `json:"removed,omitempty"`
}

// ToolDetail is a declared tool's newest version and all its versions.
type ToolDetail struct {
	Tool     ToolView   `json:"tool"`
	Versions []ToolView `json:"versions"`
	Removed  bool       `json:"removed"`
}

func toolView(d cluster.ToolDef) ToolView {
	v := ToolView{Name: d.Name, Version: d.Version, Kind: d.Kind, Digest: d.Digest, Secrets: []string{},
		Definition: rawView(d.Spec), CreatedAt: timeView(d.CreatedAt)}
	// The spec was checked when pushed; a document this node cannot parse
	// (a newer kind) is shown as stored, without the derived fields.
	if def, err := plugins.ParseDefinition(d.Spec); err == nil {
		if def.HTTP != nil {
			v.Semantics = def.HTTP.Semantics
		}
		v.Secrets = def.SecretNames()
	}
	return v
}

func toolViews(ds []cluster.ToolDef) []ToolView {
	out := make([]ToolView, 0, len(ds))
	for _, d := range ds {
		out = append(out, toolView(d))
	}
	return out
}

// pushTool: POST /v1/tools with a definition document (JSON) as the body.
// The definition is checked whole before it is proposed; a name that a
// built-in tool of this node has is refused, since the built-in one would
// win on every call. 201 with a new version, 200 when the newest version
// has the same content.
func (s *Server) pushTool(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	body, err := readCapped(w, r, min(s.cfg.MaxBodyBytes, plugins.MaxDefinitionBytes))
	if err != nil {
		return err
	}
	def, err := plugins.ParseDefinition(body)
	if err != nil {
		return badRequest("%s", err.Error())
	}
	if err := checkName("tool name", def.Name); err != nil {
		return err
	}
	if s.builtinTool(def.Name) {
		return conflict("tool %s is a built-in tool of this node; declare it under another name", def.Name)
	}
	spec, err := def.Canonical()
	if err != nil {
		return badRequest("%s", err.Error())
	}
	td := cluster.ToolDef{Name: def.Name, Kind: string(def.Kind), Spec: spec}
	if def.Kind == plugins.KindWASM {
		size, err := s.checkPlugin(r.Context(), def)
		if err != nil {
			return err
		}
		td.Module, td.ModuleSize = def.WASM.Module, size
	}
	now := s.cfg.Clock().UnixNano()
	d, err := cluster.ProposeTool(r.Context(), s.c, td, now)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if d.CreatedAt != now {
		status = http.StatusOK // the newest version already had this content
	} else {
		s.log.Info("tool pushed", "tool", d.Name, "version", d.Version, "kind", d.Kind, "digest", d.Digest)
	}
	s.reply(w, status, toolView(d))
	return nil
}

// listTools: GET /v1/tools, the newest version of each declared tool.
func (s *Server) listTools(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	ds, err := s.fsm.Tools()
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, toolViews(ds))
	return nil
}

// showTool: GET /v1/tools/{name}[?version=N], the newest (or the given)
// version and all versions.
func (s *Server) showTool(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "version"); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := checkName("tool name", name); err != nil {
		return err
	}
	vs, removed, err := s.fsm.ToolVersions(name)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return notFound("tool %s: unknown tool", name)
	}
	shown := vs[len(vs)-1]
	if v := q.Get("version"); v != "" {
		n, err := strconv.ParseUint(strings.TrimPrefix(v, "v"), 10, 64)
		if err != nil || n == 0 {
			return badRequest("version %q: want a version number (1, 2, ...)", v)
		}
		if n > uint64(len(vs)) || vs[n-1].Version != n {
			return notFound("tool %s version %d: unknown tool version (newest is %d)", name, n, vs[len(vs)-1].Version)
		}
		shown = vs[n-1]
	} else if removed {
		return notFound("tool %s was removed (its versions stay for the tasks that use them; ask for one with ?version=N)", name)
	}
	tv := toolView(shown)
	tv.Removed = removed
	s.reply(w, http.StatusOK, ToolDetail{Tool: tv, Versions: toolViews(vs), Removed: removed})
	return nil
}

// removeTool: DELETE /v1/tools/{name}. The name stops resolving for new
// tasks and agent pushes; tasks that pinned a version keep it.
func (s *Server) removeTool(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	name := r.PathValue("name")
	if err := checkName("tool name", name); err != nil {
		return err
	}
	if _, err := s.c.Apply(r.Context(), &cluster.RemoveTool{Name: name, Now: s.cfg.Clock().UnixNano()}); err != nil {
		if errors.Is(err, cluster.ErrUnknownTool) {
			return notFound("tool %s: unknown tool", name)
		}
		return err
	}
	s.log.Info("tool removed", "tool", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// builtinTool reports whether this node has a built-in tool called name.
func (s *Server) builtinTool(name string) bool {
	return s.cfg.Tools != nil && slices.Contains(s.cfg.Tools(), name)
}

// checkManifestTools refuses an agent manifest naming a tool that is
// neither built into this node nor declared. Without Config.Tools, any
// name is accepted (the node's tools are unknown to the API).
func (s *Server) checkManifestTools(names []string) error {
	if s.cfg.Tools == nil {
		return nil
	}
	for _, n := range names {
		if s.builtinTool(n) {
			continue
		}
		// "<server>/<tool>": a tool of a declared MCP server, whose list
		// is the server's to give; the server must be declared.
		server, _, isMCP := strings.Cut(n, "/")
		d, err := s.fsm.Tool(server, 0)
		switch {
		case err == nil && isMCP && d.Kind != string(plugins.KindMCP):
			return badRequest("tools: %q names a tool of %s, which is a declared tool of kind %s, not an mcp server", n, server, d.Kind)
		case err == nil:
			continue
		case !errors.Is(err, cluster.ErrUnknownTool):
			return err
		}
		return badRequest("tools: %q is neither a built-in tool of this node (%s) nor a declared tool (orlojd tool push)", n, strings.Join(s.cfg.Tools(), ", "))
	}
	return nil
}

// checkPlugin refuses a wasm tool whose module is not uploaded, or is not a
// tool plugin (it must compile and describe itself), and returns the
// module's size.
func (s *Server) checkPlugin(ctx context.Context, def plugins.Definition) (int, error) {
	module, err := s.fsm.Module(def.WASM.Module)
	if errors.Is(err, cluster.ErrNotFound) {
		return 0, badRequest("module %s is not uploaded: POST it to /v1/modules first (orlojd tool push FILE --module PLUGIN.wasm does both)", def.WASM.Module)
	}
	if err != nil {
		return 0, err
	}
	if sum := sha256.Sum256(module); hex.EncodeToString(sum[:]) != def.WASM.Module {
		return 0, badRequest("module %s: the stored bytes do not match the digest; upload it again", def.WASM.Module)
	}
	if _, err := host.NewWASMTool(ctx, host.WASMToolConfig{Module: module, Runtime: s.cfg.Runtime, Name: def.Name,
		Semantics: def.WASM.Semantics, AllowHosts: def.WASM.AllowHosts, Timeout: def.WASM.TimeoutOrDefault()}); err != nil {
		if errors.Is(err, host.ErrBadPlugin) {
			return 0, newError(http.StatusBadRequest, CodeInvalidModule, "%s", err.Error())
		}
		return 0, err
	}
	return len(module), nil
}

// ModuleView answers POST /v1/modules.
type ModuleView struct {
	Digest string `json:"digest"`
	Size   int    `json:"size"`
}

// uploadModule: POST /v1/modules (application/wasm): stores a tool
// plugin's module, which a wasm tool definition then names by digest.
func (s *Server) uploadModule(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	wasm, _, err := s.readModule(w, r)
	if err != nil {
		return err
	}
	digest, size, err := cluster.ProposeModule(r.Context(), s.c, wasm, s.cfg.Clock().UnixNano())
	if err != nil {
		return err
	}
	s.reply(w, http.StatusCreated, ModuleView{Digest: digest, Size: size})
	return nil
}
