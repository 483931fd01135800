package host

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
)

// PoolConfig configures a node's workers.
type PoolConfig struct {
	NodeID   string
	Workers  int           // concurrent attempts on this node
	LeaseTTL time.Duration // lease length; renewed every TTL/3
	// IdleWait bounds how long an idle worker waits before looking again
	// when nothing wakes it (a retry falling due is computed, not polled).
	IdleWait time.Duration
	Clock    func() time.Time
	Logger   hclog.Logger
	// OnAttempt, if set, hears how each attempt ended.
	OnAttempt func(AttemptReport)
	// Metrics, if set, times the pool's claims (the executor has its own).
	Metrics *Metrics
}

// DefaultPoolConfig: 4 workers, 30 s leases.
func DefaultPoolConfig() PoolConfig {
	return PoolConfig{Workers: 4, LeaseTTL: 30 * time.Second, IdleWait: time.Second, Clock: time.Now}
}

// Validate names the first bad field.
func (c PoolConfig) Validate() error {
	switch {
	case c.NodeID == "":
		return errors.New("pool config: NodeID is empty")
	case c.Workers < 1:
		return fmt.Errorf("pool config: Workers is %d, want at least 1", c.Workers)
	case c.LeaseTTL < 30*time.Millisecond:
		return fmt.Errorf("pool config: LeaseTTL %s is too short", c.LeaseTTL)
	case c.IdleWait <= 0:
		return errors.New("pool config: IdleWait must be positive")
	case c.Clock == nil:
		return errors.New("pool config: Clock is nil")
	}
	return nil
}

// Pool runs N workers, each claiming and running one attempt at a time.
type Pool struct {
	cfg  PoolConfig
	c    Cluster
	exec *Executor
	log  hclog.Logger

	mu       sync.Mutex
	started  bool
	stopping chan struct{} // closed by Stop: claim nothing more
	hardStop context.CancelFunc
	routines Routines // the workers

	// claiming counts the claim proposals in flight. A worker proposes one
	// only while fewer are in flight than the local replica has runnable
	// tasks: every idle worker wakes on a submission, and letting all of
	// them propose would cost a Raft entry (and, on a follower, a round trip
	// to the leader) per worker for one task; one at a time, as before,
	// made a claim's Raft round the ceiling of a node's throughput.
	claiming atomic.Int64
}

// NewPool builds a pool; Start runs it.
func NewPool(cfg PoolConfig, c Cluster, exec *Executor) (*Pool, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c = cfg.Metrics.Instrument(c)
	log := cfg.Logger.Named("worker")
	return &Pool{cfg: cfg, c: c, exec: exec, log: log, stopping: make(chan struct{}), routines: Routines{Logger: log}}, nil
}

// Start launches the workers. Starting twice is a no-op.
func (p *Pool) Start(ctx context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return
	}
	p.started = true
	ctx, p.hardStop = context.WithCancel(ctx)
	for i := 0; i < p.cfg.Workers; i++ {
		p.routines.Go(fmt.Sprintf("worker %d", i), func() { p.work(ctx, i) })
	}
}

// Stop stops claiming, lets running attempts finish for up to grace, then
// cancels them (their leases lapse and another node takes over). Safe to call
// twice, or before Start.
func (p *Pool) Stop(grace time.Duration) {
	p.mu.Lock()
	select {
	case <-p.stopping:
	default:
		close(p.stopping)
	}
	hard := p.hardStop
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.routines.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(grace):
		if hard != nil {
			hard()
		}
		<-done
	}
	if hard != nil {
		hard()
	}
}

func (p *Pool) work(ctx context.Context, n int) {
	log := p.log.With("worker", n)
	for {
		select {
		case <-p.stopping:
			return
		case <-ctx.Done():
			return
		default:
		}
		changed := p.c.FSM().Changed() // before looking, so no wake-up is missed
		wait := p.cfg.IdleWait
		// Look at the local replica first: proposing a claim costs a Raft
		// round, and idle workers would otherwise fill the log with empty ones.
		now := p.cfg.Clock().UnixNano()
		if p.admitClaim(now) {
			claim, err := p.claim(ctx)
			p.claiming.Add(-1)
			if err != nil {
				log.Debug("claim", "error", err)
			}
			if claim != nil {
				p.run(ctx, claim, log)
				continue
			}
		} else if at, ok := p.c.FSM().NextRunnableAt(); ok {
			if until := time.Duration(at - now); until > 0 {
				wait = min(wait, until)
			} else {
				// As many claims are in flight as there are tasks to take;
				// their entries may land before this worker starts
				// waiting, so look again soon rather than idle.
				wait = min(wait, 5*time.Millisecond)
			}
		}
		// Jitter spreads idle workers so they do not all claim at once.
		wait = max(wait, time.Millisecond) + time.Duration(rand.Int64N(int64(time.Millisecond)))
		t := time.NewTimer(wait)
		select {
		case <-p.stopping:
		case <-ctx.Done():
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// admitClaim admits one more claim proposal while fewer are in flight than
// the local replica has runnable tasks at now; the caller, admitted, ends
// it with claiming.Add(-1).
func (p *Pool) admitClaim(now int64) bool {
	runnable := int64(p.c.FSM().RunnableCount(now))
	for {
		n := p.claiming.Load()
		if n >= runnable {
			return false
		}
		if p.claiming.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// claim proposes one claim. A panic is an error: the caller is counted in
// claiming, which must be given back.
func (p *Pool) claim(ctx context.Context) (claim *cluster.Claim, err error) {
	err = CatchPanic(p.log, "claim", func() error {
		r, err := p.c.Apply(ctx, &cluster.ClaimTask{Node: p.cfg.NodeID, TTL: p.cfg.LeaseTTL, Now: p.cfg.Clock().UnixNano()})
		if err != nil {
			return err
		}
		claim, _ = r.(*cluster.Claim)
		return nil
	})
	return claim, err
}

// run runs one attempt. A panic ends it without a report: its lease is no
// longer renewed and lapses, and the leader counts the attempt as expired
// and retries the task, as if this node had crashed. The worker goes on.
func (p *Pool) run(ctx context.Context, claim *cluster.Claim, log hclog.Logger) {
	_ = CatchPanic(log.With("task", claim.Task.ID), "attempt", func() error {
		rep := p.exec.Run(ctx, claim)
		if p.cfg.OnAttempt != nil {
			p.cfg.OnAttempt(rep)
		}
		return nil
	})
}
