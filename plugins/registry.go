package plugins

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/orloj/orloj/abi"
)

// Registry holds the tools a host offers, by name. It is safe for concurrent
// use: the host looks tools up on every call while an operator may register
// more.
type Registry struct {
	mu    sync.RWMutex
	tools map[string]Tool
}

// NewRegistry returns a registry holding tools. It fails on the first tool
// Register refuses, so a misconfigured host does not start.
func NewRegistry(tools ...Tool) (*Registry, error) {
	r := &Registry{tools: make(map[string]Tool, len(tools))}
	for _, t := range tools {
		if err := r.Register(t); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// Register adds t. It refuses a name already taken (ErrDuplicateTool), a name
// a guest could not call (abi.ValidToolName), semantics that are not one of
// the four, a Reconcile tool that does not implement Reconciler and a schema
// that is not JSON. These are checked here because
// each would otherwise surface only when a guest calls the tool, or worse,
// only when a call is in doubt.
func (r *Registry) Register(t Tool) error {
	if t == nil {
		return errors.New("register tool: nil tool")
	}
	name := t.Name()
	if err := abi.ValidToolName(name); err != nil {
		return fmt.Errorf("register tool %q: %w", name, err)
	}
	sem := t.Semantics()
	if !sem.Valid() {
		return fmt.Errorf("register tool %q: unknown semantics %q", name, sem)
	}
	if _, ok := t.(Reconciler); sem == Reconcile && !ok {
		return fmt.Errorf("register tool %q: semantics %q but the tool does not implement Reconciler", name, sem)
	}
	if !json.Valid(t.Schema()) {
		return fmt.Errorf("register tool %q: schema is not valid JSON", name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.tools[name]; dup {
		return fmt.Errorf("register tool %q: %w", name, ErrDuplicateTool)
	}
	r.tools[name] = t
	return nil
}

// Get returns the tool called name.
func (r *Registry) Get(name string) (Tool, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	t, ok := r.tools[name]
	return t, ok
}

// Names returns the registered names, sorted, so listings and anything derived
// from them are the same on every node.
func (r *Registry) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return slices.Sorted(maps.Keys(r.tools))
}

// With returns a new registry holding r's tools and more, which Register
// checks; r is unchanged. The executor uses it to add the declared tools a
// task pinned to the node's built-in ones for one attempt.
func (r *Registry) With(more ...Tool) (*Registry, error) {
	r.mu.RLock()
	out := &Registry{tools: make(map[string]Tool, len(r.tools)+len(more))}
	maps.Copy(out.tools, r.tools)
	r.mu.RUnlock()
	for _, t := range more {
		if err := out.Register(t); err != nil {
			return nil, err
		}
	}
	return out, nil
}
