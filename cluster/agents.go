package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Proposer is anything that can propose a command: a *Node, or a wrapper
// that forwards to the leader.
type Proposer interface {
	Apply(ctx context.Context, cmd Command) (any, error)
}

// ProposeAgent registers an agent version with its module. A module larger
// than MaxInlineModule goes through Raft as ModuleChunkSize chunks first, so
// no log entry and no Badger transaction has to hold a whole module.
func ProposeAgent(ctx context.Context, p Proposer, ag Agent, module []byte, now int64) (Agent, error) {
	put := &PutAgent{Agent: ag, Module: module, Now: now}
	if len(module) > MaxInlineModule {
		digest, err := proposeChunks(ctx, p, module, now)
		if err != nil {
			return Agent{}, err
		}
		put.Agent.Digest, put.Agent.Size, put.Module = digest, len(module), nil
	}
	r, err := p.Apply(ctx, put)
	if err != nil {
		return Agent{}, fmt.Errorf("register agent %s@%s: %w", ag.Name, ag.Version, err)
	}
	out, ok := r.(Agent)
	if !ok {
		return Agent{}, fmt.Errorf("register agent %s@%s: unexpected response %T", ag.Name, ag.Version, r)
	}
	return out, nil
}

// proposeChunks stores module through Raft in ModuleChunkSize chunks under
// its digest, which it returns.
func proposeChunks(ctx context.Context, p Proposer, module []byte, now int64) (string, error) {
	sum := sha256.Sum256(module)
	digest := hex.EncodeToString(sum[:])
	for n, off := 0, 0; off < len(module); n, off = n+1, off+ModuleChunkSize {
		chunk := &PutModuleChunk{Digest: digest, N: n, Data: module[off:min(off+ModuleChunkSize, len(module))], Now: now}
		if _, err := p.Apply(ctx, chunk); err != nil {
			return "", fmt.Errorf("upload module %.12s chunk %d: %w", digest, n, err)
		}
	}
	return digest, nil
}
