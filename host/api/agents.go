package api

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/sandbox"
)

// maxAttemptsLimit bounds max_attempts so a typo cannot make a task retry
// for months.
const maxAttemptsLimit = 1000

// pushAgent: POST /v1/agents?name=&version=&tools=&memory_limit=&timeout=&max_attempts=&budget=
// with the raw module as the body. The module is validated (imports,
// exports, size) before it is proposed, so the log never carries one the
// sandbox would refuse.
func (s *Server) pushAgent(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "name", "version", "tools", "approve", "memory_limit", "timeout", "max_attempts", "budget"); err != nil {
		return err
	}
	name, version := q.Get("name"), q.Get("version")
	if err := checkName("agent name (query parameter name)", name); err != nil {
		return err
	}
	if version != "" {
		if err := checkName("version", version); err != nil {
			return err
		}
	}
	var m cluster.AgentManifest
	seen := map[string]bool{}
	for _, t := range strings.Split(q.Get("tools"), ",") {
		if t = strings.TrimSpace(t); t == "" || seen[t] {
			continue
		}
		if err := checkToolName(t); err != nil {
			return err
		}
		seen[t] = true
		m.Tools = append(m.Tools, t)
	}
	if err := s.checkManifestTools(m.Tools); err != nil {
		return err
	}
	for _, t := range strings.Split(q.Get("approve"), ",") {
		if t = strings.TrimSpace(t); t == "" || slices.Contains(m.Approve, t) {
			continue
		}
		if !seen[t] {
			return badRequest("approve: %q is not one of the agent's tools (%s)", t, strings.Join(m.Tools, ", "))
		}
		m.Approve = append(m.Approve, t)
	}
	if v := q.Get("memory_limit"); v != "" {
		n, err := ParseSize(v)
		if err != nil {
			return badRequest("memory_limit: %v", err)
		}
		if n > sandbox.MaxMemoryLimit {
			return badRequest("memory_limit %s exceeds the 4 GiB a wasm32 guest can address", v)
		}
		m.MemoryLimit = n
	}
	if v := q.Get("timeout"); v != "" {
		d, err := parseDuration("timeout", v)
		if err != nil {
			return err
		}
		m.Timeout = d
	}
	if v := q.Get("max_attempts"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxAttemptsLimit {
			return badRequest("max_attempts %q must be a whole number from 0 (the default, 8) to %d", v, maxAttemptsLimit)
		}
		m.MaxAttempts = n
	}
	if v := q.Get("budget"); v != "" {
		b, err := cluster.ParseBudget(v)
		if err != nil {
			return badRequest("budget: %v", err)
		}
		m.Budget = b
	}
	wasm, mod, err := s.readModule(w, r)
	if err != nil {
		return err
	}
	warnings := moduleWarnings(mod)
	sum := sha256.Sum256(wasm)
	digest := hex.EncodeToString(sum[:])
	if version == "" {
		version = "sha-" + digest[:12]
	}
	existing, err := s.fsm.Agent(name, version)
	switch {
	case err == nil && existing.Digest == digest:
		v := agentView(existing)
		v.Warnings = warnings
		s.reply(w, http.StatusOK, v)
		return nil
	case err == nil:
		return conflict("agent %s version %s exists with another module (digest %.12s); push this one under a new version", name, version, existing.Digest)
	case !errors.Is(err, cluster.ErrUnknownAgent):
		return err
	}
	now := s.cfg.Clock().UnixNano()
	// Large modules travel through Raft in chunks (cluster.ProposeAgent).
	ag, err := cluster.ProposeAgent(r.Context(), s.c, cluster.Agent{Name: name, Version: version, Digest: digest, Manifest: m}, wasm, now)
	if err != nil {
		return err
	}
	status := http.StatusCreated
	if ag.CreatedAt != now {
		status = http.StatusOK // an identical push raced this one and won
	}
	s.log.Info("agent pushed", "agent", name, "version", version, "digest", digest, "size", len(wasm))
	v := agentView(ag)
	v.Warnings = warnings
	s.reply(w, status, v)
	return nil
}

// moduleWarnings says what about a module costs every attempt: a reactor
// the host cannot pre-initialize runs its initialization in each one.
func moduleWarnings(m *sandbox.Module) []string {
	if m.Kind() != sandbox.ModuleReactor {
		return nil
	}
	if err := m.Preinitialized(); err != nil {
		return []string{fmt.Sprintf("this reactor cannot be pre-initialized, so every attempt runs its initialization: %v", err)}
	}
	return nil
}

// listAgents: GET /v1/agents, the newest version of each agent.
func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) error {
	if err := checkQuery(r.URL.Query()); err != nil {
		return err
	}
	as, err := s.fsm.Agents()
	if err != nil {
		return err
	}
	s.reply(w, http.StatusOK, agentViews(as))
	return nil
}

// showAgent: GET /v1/agents/{name}, the newest version and all versions.
func (s *Server) showAgent(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := checkName("agent name", name); err != nil {
		return err
	}
	vs, err := s.fsm.AgentVersions(name)
	if err != nil {
		return err
	}
	if len(vs) == 0 {
		return notFound("agent %s: unknown agent", name)
	}
	s.reply(w, http.StatusOK, AgentDetail{Agent: agentView(vs[len(vs)-1]), Versions: agentViews(vs)})
	return nil
}

// readModule reads an uploaded module (at most MaxModuleBytes) and refuses
// one that does not compile.
func (s *Server) readModule(w http.ResponseWriter, r *http.Request) ([]byte, *sandbox.Module, error) {
	wasm, err := readCapped(w, r, s.cfg.MaxModuleBytes)
	if err != nil {
		return nil, nil, err
	}
	if len(wasm) == 0 {
		return nil, nil, badRequest("request body is empty; send the module's bytes (Content-Type: application/wasm)")
	}
	m, err := s.cfg.Runtime.Compile(r.Context(), wasm)
	if err != nil {
		if errors.Is(err, sandbox.ErrInvalidModule) {
			return nil, nil, newError(http.StatusBadRequest, CodeInvalidModule, "%s", err.Error())
		}
		return nil, nil, err
	}
	return wasm, m, nil
}
