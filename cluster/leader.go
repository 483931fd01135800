package cluster

import (
	"context"
	"math/rand/v2"
	"time"
)

// leaderLoop follows leadership changes and runs the leader's duties while
// this node leads. Only the leader expires leases (as etcd's lessor does).
func (n *Node) leaderLoop(notify <-chan bool) {
	defer n.wg.Done()
	var cancel context.CancelFunc
	stopDuties := func() {
		if cancel != nil {
			cancel()
			cancel = nil
		}
	}
	defer stopDuties()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-notify:
			stopDuties()
			ready := make(chan struct{})
			n.leaderMu.Lock()
			n.isLeader, n.ready = leader, ready
			n.leaderGen++
			n.leaderMu.Unlock()
			n.log.Info("leadership changed", "leader", leader, "node", n.cfg.NodeID)
			if leader {
				ctx, c := context.WithCancel(context.Background())
				cancel = c
				n.wg.Add(1)
				go n.leaderDuties(ctx, ready)
			}
		}
	}
}

// leaderDuties: first catch up and extend every live lease by one TTL, so a
// worker whose renewals went to the old leader is not expired for that gap;
// then expire leases as they lapse and wake waits whose time has come.
func (n *Node) leaderDuties(ctx context.Context, ready chan struct{}) {
	defer n.wg.Done()
	for {
		err := n.safely("take over leases", func() error {
			if err := n.Barrier(ctx); err != nil {
				return err
			}
			_, err := n.Apply(ctx, &ExtendLeases{Now: n.cfg.Clock().UnixNano()})
			return err
		})
		if err == nil {
			break
		}
		n.log.Warn("take over leases", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(n.cfg.ExpiryInterval):
		}
	}
	close(ready)
	t := time.NewTicker(n.cfg.ExpiryInterval)
	defer t.Stop()
	// Retention's first pass comes one interval after taking over, so an
	// election storm does not scan every task each time.
	var compact <-chan time.Time
	if n.cfg.Retention > 0 {
		ct := time.NewTicker(retentionInterval(n.cfg.Retention))
		defer ct.Stop()
		compact = ct.C
	}
	sched := time.NewTicker(scheduleInterval)
	defer sched.Stop()
	fs := &firer{fsm: n.fsm, clock: n.cfg.Clock, apply: n.Apply, log: n.log, warned: map[string]time.Time{}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = n.safely("expire leases", func() error { n.expireLapsed(ctx); return nil })
			_ = n.safely("wake due waits", func() error { n.wakeDue(ctx); return nil })
		case <-sched.C:
			_ = n.safely("fire schedules", func() error { fs.fireDue(ctx); return nil })
		case <-compact:
			if err := n.safely("compact finished tasks", func() error { return n.compactExpired(ctx) }); err != nil && ctx.Err() == nil {
				n.log.Warn("compact finished tasks past retention", "error", err)
			}
		}
	}
}

func (n *Node) expireLapsed(ctx context.Context) {
	now := n.cfg.Clock().UnixNano()
	expired, err := n.fsm.ExpiredLeases(now)
	if err != nil {
		n.log.Error("list expired leases", "error", err)
		return
	}
	for _, l := range expired {
		if ctx.Err() != nil {
			return
		}
		cmd := &ExpireLease{TaskID: l.TaskID, Token: l.Token, Jitter: rand.Uint64(), Now: now}
		done := n.cfg.History.Begin(cmd)
		res, err := n.Apply(ctx, cmd)
		done(res, err)
		if err != nil {
			n.log.Warn("expire lease", "task", l.TaskID, "token", l.Token, "error", err)
			return
		}
		n.log.Info("lease expired", "task", l.TaskID, "token", l.Token, "node", l.Node)
	}
}
