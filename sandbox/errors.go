package sandbox

import "errors"

// Sentinel errors callers branch on with errors.Is.
var (
	// ErrInvalidModule wraps every reason Compile refuses a module: too
	// large, does not compile, imports something Orloj does not provide,
	// lacks _start (or orloj_run) or memory, a reactor whose
	// initialization fails. The wrapping message names the reason.
	ErrInvalidModule = errors.New("invalid module")
	// ErrClosed is returned by Compile, and wrapped in Run's Result, once
	// the Runtime is closing.
	ErrClosed = errors.New("sandbox: runtime closed")
	// ErrMemoryLimit is wrapped in the Result.Err of OutcomeMemoryLimit.
	ErrMemoryLimit = errors.New("memory limit")
	// ErrNotReactor is what Module.Preinitialized says of a command module.
	ErrNotReactor = errors.New("sandbox: a command module is not pre-initialized")
	// ErrSuspend is what a WaitDispatcher's Wait wraps when the attempt
	// must stop at the wait: the guest is stopped where it is and Run
	// returns OutcomeSuspended, with the Dispatcher's error in Result.Err.
	ErrSuspend = errors.New("sandbox: attempt suspended at a wait")
)
