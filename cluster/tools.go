package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/orloj/orloj/abi"
)

// Declared tools are versioned cluster objects, like agents: every node
// reads the same definitions from its replica. The cluster stores a
// definition as an opaque, canonical JSON document (ToolDef.Spec) with the
// few fields it indexes by; what a definition means (an http endpoint, a
// wasm plugin, an MCP server) is the plugins package's, which parses Spec.
// Secrets are never part of a definition: it names them, and each node
// resolves the names from its own environment when a call is made.

// MaxToolSpecBytes bounds a tool definition document.
const MaxToolSpecBytes = 64 << 10

// ErrUnknownTool is returned for a declared tool name or version that is not
// registered (or was removed).
var ErrUnknownTool = errors.New("unknown tool")

// ToolDef is one version of a declared tool.
type ToolDef struct {
	Name string `json:"name"`
	// Version counts the name's versions from 1; a push whose Spec differs
	// from the newest version's makes the next one.
	Version uint64 `json:"version"`
	// Kind is the definition's kind ("http", ...), as the plugins package
	// names them; indexed here for listings.
	Kind string `json:"kind"`
	// Digest is the hex sha256 of Spec, computed by Apply.
	Digest string `json:"digest"`
	// Spec is the definition document, in canonical JSON.
	Spec json.RawMessage `json:"spec"`
	// Module and ModuleSize name the plugin module a wasm tool runs (its
	// hex sha256, uploaded with ProposeModule); Apply refuses a tool whose
	// module is not stored whole.
	Module     string `json:"module,omitempty"`
	ModuleSize int    `json:"module_size,omitempty"`
	CreatedAt  int64  `json:"created_at"`
}

// toolHead is a name's newest version, and whether the name was removed.
type toolHead struct {
	Latest  uint64 `json:"latest"`
	Removed bool   `json:"removed,omitempty"`
}

// PutTool registers a tool definition. Apply makes it the name's next
// version unless it equals the newest version's, which it returns instead.
type PutTool struct {
	Tool ToolDef `json:"tool"` // Name, Kind, Spec; Apply fills the rest
	Now  int64   `json:"now"`
}

// RemoveTool removes a declared tool name: it no longer resolves as
// "latest", so new tasks and agent pushes cannot use it. Its versions stay
// stored, so a task that pinned one still runs and replays as it began. A
// later PutTool brings the name back as a new version.
type RemoveTool struct {
	Name string `json:"name"`
	Now  int64  `json:"now"`
}

func (PutTool) messageType() MessageType    { return MsgPutTool }
func (RemoveTool) messageType() MessageType { return MsgRemoveTool }

// validToolName keeps a declared name to what a guest can call and out of
// the key scheme's separators (NUL, '/').
func validToolName(name string) error {
	if err := required("tool name", name); err != nil {
		return err
	}
	if err := abi.ValidToolName(name); err != nil || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: tool name %q: not a declared tool's name", ErrInvalidCmd, name)
	}
	return nil
}

func (c *PutTool) Validate() error {
	d := &c.Tool
	if err := validToolName(d.Name); err != nil {
		return err
	}
	if err := required("tool kind", d.Kind); err != nil {
		return err
	}
	if err := checkBytes("tool spec", len(d.Spec), MaxToolSpecBytes); err != nil {
		return err
	}
	if len(d.Spec) == 0 || d.Spec[0] != '{' || !json.Valid(d.Spec) {
		return fmt.Errorf("%w: tool %s: spec must be a JSON object", ErrInvalidCmd, d.Name)
	}
	if (d.Module == "") != (d.ModuleSize == 0) || d.ModuleSize < 0 {
		return fmt.Errorf("%w: tool %s: a module needs its digest and size", ErrInvalidCmd, d.Name)
	}
	return checkNames("module digest", d.Module)
}

func (c *RemoveTool) Validate() error { return validToolName(c.Name) }

// Keys: td/NAME\x00VERSION (16 hex digits) holds a ToolDef, th/NAME its
// toolHead.
func toolKey(name string, version uint64) []byte {
	return []byte("td/" + name + "\x00" + hex16(version))
}
func toolPrefix(name string) []byte  { return []byte("td/" + name + "\x00") }
func toolHeadKey(name string) []byte { return []byte("th/" + name) }

func (a *applier) putTool(c *PutTool) any {
	d := c.Tool
	if d.Module != "" {
		m, err := a.module(d.Module, d.ModuleSize)
		if err != nil {
			return fmt.Errorf("tool %s: module %.12s: %w", d.Name, d.Module, err)
		}
		if ms := sha256.Sum256(m); hex.EncodeToString(ms[:]) != d.Module {
			return fmt.Errorf("%w: tool %s: the stored module does not match digest %.12s", ErrInvalidCmd, d.Name, d.Module)
		}
	}
	sum := sha256.Sum256(d.Spec)
	d.Digest = hex.EncodeToString(sum[:])
	var head toolHead
	if a.get(toolHeadKey(d.Name), &head) {
		var cur ToolDef
		if !a.get(toolKey(d.Name, head.Latest), &cur) {
			if a.err != nil {
				return a.err
			}
			return fmt.Errorf("tool %s: head names version %d, which is missing: %w", d.Name, head.Latest, ErrNotFound)
		}
		if !head.Removed && cur.Digest == d.Digest {
			return cur
		}
	} else if a.err != nil {
		return a.err
	}
	d.Version, d.CreatedAt = head.Latest+1, c.Now
	a.put(toolKey(d.Name, d.Version), d)
	a.put(toolHeadKey(d.Name), toolHead{Latest: d.Version})
	return d
}

func (a *applier) removeTool(c *RemoveTool) any {
	var head toolHead
	if !a.get(toolHeadKey(c.Name), &head) || head.Removed {
		if a.err != nil {
			return a.err
		}
		return fmt.Errorf("tool %s: %w", c.Name, ErrUnknownTool)
	}
	head.Removed = true
	a.put(toolHeadKey(c.Name), head)
	return nil
}

// pinTools chooses, for each name, the declared tool version a new task
// will use: the newest, unless the name was removed. A name
// "<server>/<tool>" pins the declared MCP server <server>. Names that are
// not declared (built-in tools) are left out. Pinning at submission keeps
// every attempt, and every replay, on the definition the task started with.
func (a *applier) pinTools(names []string) map[string]uint64 {
	var pins map[string]uint64
	for _, n := range names {
		// A declared name has no '/', so the first one ends a server's.
		server, _, mcpTool := strings.Cut(n, "/")
		n = server
		if _, done := pins[n]; done || n == "" {
			continue
		}
		var head toolHead
		if !a.get(toolHeadKey(n), &head) || head.Removed {
			continue
		}
		if mcpTool {
			var d ToolDef
			if !a.get(toolKey(n, head.Latest), &d) || d.Kind != toolKindMCP {
				continue
			}
		}
		if pins == nil {
			pins = map[string]uint64{}
		}
		pins[n] = head.Latest
	}
	return pins
}

// toolKindMCP is the plugins package's name for an MCP server's kind: the
// one kind whose tools are named after it ("<server>/<tool>").
const toolKindMCP = "mcp"

// Tool returns one version of a declared tool; version 0 means the newest,
// which a removed name does not have.
func (f *FSM) Tool(name string, version uint64) (ToolDef, error) {
	var d ToolDef
	err := f.view(func(tx *tx) error {
		if version == 0 {
			var head toolHead
			if !tx.get(toolHeadKey(name), &head) || head.Removed {
				if tx.err == nil {
					return fmt.Errorf("tool %s: %w", name, ErrUnknownTool)
				}
				return nil
			}
			version = head.Latest
		}
		if !tx.get(toolKey(name, version), &d) && tx.err == nil {
			return fmt.Errorf("tool %s version %d: %w", name, version, ErrUnknownTool)
		}
		return nil
	})
	return d, err
}

// ToolVersions lists a declared tool's versions, oldest first, and whether
// the name was removed.
func (f *FSM) ToolVersions(name string) (versions []ToolDef, removed bool, err error) {
	err = f.view(func(tx *tx) error {
		var head toolHead
		tx.get(toolHeadKey(name), &head)
		removed = head.Removed
		return tx.each(toolPrefix(name), func(_, v []byte) error {
			var d ToolDef
			if err := json.Unmarshal(v, &d); err != nil {
				return err
			}
			versions = append(versions, d)
			return nil
		})
	})
	sort.Slice(versions, func(i, j int) bool { return versions[i].Version < versions[j].Version })
	return versions, removed, err
}

// Tools lists the newest version of every declared tool that is not
// removed, by name.
func (f *FSM) Tools() ([]ToolDef, error) {
	var out []ToolDef
	err := f.view(func(tx *tx) error {
		return tx.each([]byte("th/"), func(k, v []byte) error {
			var head toolHead
			if err := json.Unmarshal(v, &head); err != nil {
				return err
			}
			if head.Removed {
				return nil
			}
			name := string(bytes.TrimPrefix(k, []byte("th/")))
			var d ToolDef
			if !tx.get(toolKey(name, head.Latest), &d) {
				return fmt.Errorf("tool %s: head names version %d, which is missing", name, head.Latest)
			}
			out = append(out, d)
			return nil
		})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// ProposeTool registers a tool definition and returns the version it is.
// ProposeModule stores a module (a tool plugin's) through Raft in
// ModuleChunkSize chunks and returns its digest and size, for a ToolDef to
// name.
func ProposeModule(ctx context.Context, p Proposer, module []byte, now int64) (string, int, error) {
	if len(module) == 0 {
		return "", 0, fmt.Errorf("%w: an empty module", ErrInvalidCmd)
	}
	digest, err := proposeChunks(ctx, p, module, now)
	return digest, len(module), err
}

func ProposeTool(ctx context.Context, p Proposer, d ToolDef, now int64) (ToolDef, error) {
	r, err := p.Apply(ctx, &PutTool{Tool: d, Now: now})
	if err != nil {
		return ToolDef{}, fmt.Errorf("register tool %s: %w", d.Name, err)
	}
	out, ok := r.(ToolDef)
	if !ok {
		return ToolDef{}, fmt.Errorf("register tool %s: unexpected response %T", d.Name, r)
	}
	return out, nil
}
