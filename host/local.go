package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/plugins"
	"github.com/orloj/orloj/sandbox"
)

// LocalConfig is one task run the way a node runs it — the same executor,
// ledger dispatcher, retry policy and classification of exits — on a
// one-node cluster with no network, its state in a temporary directory
// removed at the end (Raft's log in memory). It is what
// orlojd run drives, so an agent that passes there behaves the same on a
// node.
type LocalConfig struct {
	Name     string // the agent's name: the guest's argv[0]
	Module   []byte
	Manifest cluster.AgentManifest
	Input    json.RawMessage
	TaskID   string
	Policy   cluster.RetryPolicy
	// Rehearse makes the first attempt that runs to its end fail as
	// transient after its calls are recorded, so a second attempt replays
	// them (see WithRehearsal).
	Rehearse bool
	Tools    *plugins.Registry
	Runtime  *sandbox.Runtime
	Logger   hclog.Logger // nil: none
}

// LocalRun is how a local task ended.
type LocalRun struct {
	Task     cluster.Task
	Journal  []cluster.Event
	Attempts []AttemptReport // in order
	Effects  []cluster.Effect
}

// ErrLocalWait is returned by RunLocal when the task waits for what a
// local run cannot give it: a signal or a person's approval.
var ErrLocalWait = errors.New("the task waits for a signal or an approval")

// localVersion is the version a local run registers its agent under.
const localVersion = "local"

// RunLocal runs cfg's task to its end: success, the dead-letter queue, or
// a wait that only the outside world could end (ErrLocalWait, with the run
// so far). Sleeps are slept. ctx bounds the whole run.
func RunLocal(ctx context.Context, cfg LocalConfig) (LocalRun, error) {
	if err := requireDeps("run locally", namedDep{"tools", cfg.Tools}, namedDep{"runtime", cfg.Runtime}); err != nil {
		return LocalRun{}, err
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	dir, err := os.MkdirTemp("", "orloj-run-")
	if err != nil {
		return LocalRun{}, fmt.Errorf("run locally: state dir: %w", err)
	}
	defer os.RemoveAll(dir)
	node, err := openLocalNode(ctx, log, dir)
	if err != nil {
		return LocalRun{}, err
	}
	defer node.Close()

	var opts []ExecutorOption
	if cfg.Rehearse {
		opts = append(opts, WithRehearsal())
	}
	exec := NewExecutor(node, cfg.Runtime, cfg.Tools, time.Now, log, opts...)
	now := time.Now().UnixNano()
	if _, err := cluster.ProposeAgent(ctx, node, cluster.Agent{Name: cfg.Name, Version: localVersion, Manifest: cfg.Manifest}, cfg.Module, now); err != nil {
		return LocalRun{}, fmt.Errorf("register agent %s: %w", cfg.Name, err)
	}
	task := cluster.Task{ID: cfg.TaskID, Agent: cfg.Name, Version: localVersion, Input: cfg.Input, Policy: cfg.Policy}
	if _, err := node.Apply(ctx, &cluster.SubmitTask{Task: task, Now: now}); err != nil {
		return LocalRun{}, fmt.Errorf("submit task: %w", err)
	}

	var (
		mu   sync.Mutex
		reps []AttemptReport
	)
	pcfg := DefaultPoolConfig()
	pcfg.NodeID, pcfg.Workers, pcfg.Logger = "local", 1, log
	pcfg.OnAttempt = func(r AttemptReport) {
		mu.Lock()
		reps = append(reps, r)
		mu.Unlock()
	}
	pool, err := NewPool(pcfg, node, exec)
	if err != nil {
		return LocalRun{}, err
	}
	pool.Start(ctx)
	t, waitErr := awaitLocalEnd(ctx, node.FSM(), cfg.TaskID)
	pool.Stop(time.Second)

	run := LocalRun{Task: t}
	mu.Lock()
	run.Attempts = slices.Clone(reps)
	mu.Unlock()
	if run.Journal, err = node.FSM().Journal(cfg.TaskID); err != nil {
		return run, fmt.Errorf("read journal: %w", err)
	}
	if run.Effects, err = node.FSM().Outbox(cfg.TaskID); err != nil {
		return run, fmt.Errorf("read outbox: %w", err)
	}
	return run, waitErr
}

// openLocalNode opens and leads a one-node cluster, its state store in
// dir: Badger in memory refuses values over 1 MiB, which a node takes.
func openLocalNode(ctx context.Context, log hclog.Logger, dir string) (*cluster.Node, error) {
	cfg := cluster.DefaultConfig()
	cfg.NodeID, cfg.Bootstrap, cfg.Logger = "local", true, log.Named("cluster")
	// Alone, a node has no one to hear from: short timeouts elect it at
	// once and it never loses its lead.
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 20*time.Millisecond, 20*time.Millisecond, 10*time.Millisecond
	cfg.ExpiryInterval = 20 * time.Millisecond
	cfg.BadgerMemTableSize = cluster.MinBadgerMemTableSize
	_, tr := raft.NewInmemTransport("local")
	node, err := cluster.OpenInMemory(cfg, cluster.InMemory{Transport: tr, StateDir: dir})
	if err != nil {
		return nil, fmt.Errorf("open local node: %w", err)
	}
	if err := node.WaitLeader(ctx); err != nil {
		node.Close()
		return nil, fmt.Errorf("open local node: %w", err)
	}
	return node, nil
}

// awaitLocalEnd waits until the task is in a final state, or waits for
// something other than time.
func awaitLocalEnd(ctx context.Context, fsm *cluster.FSM, id string) (cluster.Task, error) {
	for {
		changed := fsm.Changed()
		t, err := fsm.Task(id)
		if err != nil {
			return t, fmt.Errorf("read task: %w", err)
		}
		switch t.State {
		case cluster.StateSucceeded, cluster.StateDeadLetter, cluster.StateDiscarded, cluster.StateCancelled:
			return t, nil
		case cluster.StateWaiting:
			if t.Wait != nil && t.Wait.Until == 0 {
				return t, ErrLocalWait
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return t, fmt.Errorf("task %s is %s: %w", id, t.State, context.Cause(ctx))
		}
	}
}
