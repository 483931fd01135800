package host

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// DeclaredTools builds the declared tools tasks pinned, from the
// definitions in the local replica, with this node's secrets. A version
// never changes, so each is built once per node and kept, with its
// client's connections. The executor and the outbox share one.
type DeclaredTools struct {
	c       Cluster
	secrets plugins.Secrets
	rt      *sandbox.Runtime // for wasm tools; nil refuses them
	log     hclog.Logger
	built   sync.Map // "name@version" → plugins.Tool
}

// WithSandbox lets d build wasm tools, running their plugins in rt.
func (d *DeclaredTools) WithSandbox(rt *sandbox.Runtime, log hclog.Logger) *DeclaredTools {
	d.rt, d.log = rt, log
	return d
}

// NewDeclaredTools returns the node's declared-tool builder. secrets nil
// resolves none: a call that needs one fails, transient, naming it.
func NewDeclaredTools(c Cluster, secrets plugins.Secrets) *DeclaredTools {
	return &DeclaredTools{c: c, secrets: secrets}
}

// Tool returns version v of the declared tool name.
func (d *DeclaredTools) Tool(name string, v uint64) (plugins.Tool, error) {
	key := name + "@" + strconv.FormatUint(v, 10)
	if t, ok := d.built.Load(key); ok {
		return t.(plugins.Tool), nil
	}
	def, err := d.c.FSM().Tool(name, v)
	if err != nil {
		return nil, fmt.Errorf("load declared tool %s: %w", key, err)
	}
	doc, err := plugins.ParseDefinition(def.Spec)
	var t plugins.Tool
	switch {
	case err != nil:
	case doc.Kind == plugins.KindWASM:
		t, err = d.wasm(doc, def)
	default:
		t, err = plugins.NewDeclared(doc, plugins.DeclaredOptions{Secrets: d.secrets})
	}
	if err != nil {
		return nil, fmt.Errorf("build declared tool %s: %w", key, err)
	}
	kept, _ := d.built.LoadOrStore(key, t)
	return kept.(plugins.Tool), nil
}

// wasm builds a plugin tool: its module from the replica, checked against
// the digest the definition names, run in the node's sandbox.
func (d *DeclaredTools) wasm(doc plugins.Definition, def cluster.ToolDef) (plugins.Tool, error) {
	if d.rt == nil {
		return nil, fmt.Errorf("%w: this node runs no wasm tools", plugins.ErrKindNotSupported)
	}
	w := doc.WASM
	module, err := d.c.FSM().Module(w.Module)
	if err != nil {
		return nil, fmt.Errorf("module %.12s: %w", w.Module, err)
	}
	if sum := sha256.Sum256(module); hex.EncodeToString(sum[:]) != w.Module {
		return nil, fmt.Errorf("module %.12s: the stored bytes do not match the digest", w.Module)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return NewWASMTool(ctx, WASMToolConfig{Module: module, Runtime: d.rt, Name: doc.Name, Semantics: w.Semantics,
		AllowHosts: w.AllowHosts, Secrets: d.secrets, Timeout: w.TimeoutOrDefault(), MemoryLimit: w.MemoryLimit, Logger: d.log})
}

// forTask returns the declared tool name as task pinned it, or false when
// the task pinned no such tool.
func (d *DeclaredTools) forTask(task cluster.Task, name string) (plugins.Tool, bool, error) {
	v, pinned := task.Tools[name]
	if d == nil || !pinned {
		return nil, false, nil
	}
	t, err := d.Tool(name, v)
	return t, err == nil, err
}

// WithDeclaredTools lets the executor run the declared tools tasks pinned;
// without it, only the node's built-in tools are offered.
func WithDeclaredTools(d *DeclaredTools) ExecutorOption {
	return func(e *Executor) { e.declared = d }
}

// toolsFor returns the tools one attempt of task may call: the node's
// built-in tools, then the declared tools the task pinned at submission,
// for the names of its agent's manifest that no built-in tool has (a
// declared name cannot shadow a built-in one). Without pins it is the
// built-in registry itself.
func (e *Executor) toolsFor(task cluster.Task, agent cluster.Agent) (*plugins.Registry, error) {
	var more []plugins.Tool
	for _, name := range agent.Manifest.Tools {
		if _, builtin := e.tools.Get(name); builtin {
			continue
		}
		t, ok, err := e.declared.forTask(task, name)
		if err != nil {
			return nil, err
		}
		if ok {
			more = append(more, t)
		}
	}
	if len(more) == 0 {
		return e.tools, nil
	}
	reg, err := e.tools.With(more...)
	if err != nil {
		return nil, fmt.Errorf("task %s: declared tools: %w", task.ID, err)
	}
	return reg, nil
}

// toolsError classifies a failure to resolve an attempt's tools: a
// definition this node cannot build yet (a kind it does not know, in a
// rolling upgrade) or cannot read now may work elsewhere or later; a
// definition that is wrong, or gone, is so everywhere.
func toolsError(err error) cluster.ErrorClass {
	if errors.Is(err, plugins.ErrInvalidDefinition) || errors.Is(err, cluster.ErrUnknownTool) {
		return cluster.ClassPermanent
	}
	return cluster.ClassTransient
}
