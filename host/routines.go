package host

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Routines launches and tracks background goroutines, as hashicorp/raft's
// goFunc does: every goroutine of a node starts through one, under a name.
// A panic that escapes one is logged with its stack under an error ID and
// handed to OnPanic instead of ending the process; Wait returns when all
// have returned. The zero value is ready to use.
type Routines struct {
	Logger  hclog.Logger      // nil logs nothing
	OnPanic func(*PanicError) // nil: logged only

	wg sync.WaitGroup
}

// Go runs f on a new goroutine.
func (r *Routines) Go(name string, f func()) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		log := r.Logger
		if log == nil {
			log = hclog.NewNullLogger()
		}
		err := CatchPanic(log, name, func() error { f(); return nil })
		var pe *PanicError
		if errors.As(err, &pe) && r.OnPanic != nil {
			r.OnPanic(pe)
		}
	}()
}

// Wait blocks until every goroutine started with Go has returned.
func (r *Routines) Wait() { r.wg.Wait() }

// ErrServiceStarted is a service's Start called while it runs.
var ErrServiceStarted = errors.New("service already started")

// service is the Start/Stop half of a background loop (River's startstop):
// Start launches the loop once under a context of its own; Stop cancels
// that context and waits until the loop has returned. A service can be
// started again after Stop. Embed it and give Start the loop.
type service struct {
	mu       sync.Mutex
	cancel   context.CancelFunc
	routines *Routines
}

func (s *service) start(ctx context.Context, name string, log hclog.Logger, loop func(context.Context)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel != nil {
		return fmt.Errorf("%s: %w", name, ErrServiceStarted)
	}
	ctx, s.cancel = context.WithCancel(ctx)
	s.routines = &Routines{Logger: log}
	s.routines.Go(name, func() { loop(ctx) })
	return nil
}

// stop ends the loop and waits for it; a no-op when not started.
func (s *service) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancel == nil {
		return
	}
	s.cancel()
	s.routines.Wait()
	s.cancel, s.routines = nil, nil
}
