package orloj

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/orloj/orloj/abi"
)

// Sleep waits durably for d. The first time the task reaches it, the
// attempt stops and the task waits without holding a worker, on no node in
// particular; when d has passed, the task runs again from the start, every
// call before the Sleep returns its recorded result, and Sleep returns at
// once. A crash, a restart or a leader change while it sleeps loses
// nothing. Code before a Sleep therefore runs again after it, as on any
// retry: only host calls are remembered.
//
// A d of zero or less returns at once without asking the host.
func Sleep(d time.Duration) error {
	if d <= 0 {
		return nil
	}
	return sleep(abi.WaitRequest{Kind: abi.WaitSleep, Duration: int64(d)}, "sleep")
}

// SleepUntil is Sleep until t; a t already past returns at once (the host
// still records it, so a replay agrees).
func SleepUntil(t time.Time) error {
	ns := t.UnixNano()
	if ns <= 0 {
		return nil
	}
	return sleep(abi.WaitRequest{Kind: abi.WaitSleep, Until: ns}, "sleep until")
}

func sleep(req abi.WaitRequest, what string) error {
	_, err := wait(req)
	if err != nil {
		return fmt.Errorf("orloj: %s: %w", what, err)
	}
	return nil
}

// Await waits durably for the signal name sent to the task (`orlojd task
// signal`, POST /v1/tasks/{id}/signals/{name}) and returns its JSON
// payload. A signal sent before the task awaits it is kept for it. While it
// waits the task holds no worker, as with Sleep, and runs again from the
// start when the signal comes; the payload is recorded, so every replay
// sees the same one. With a timeout above zero, Await returns an error
// wrapping ErrTimeout if the signal has not come by then; zero waits
// without end. Each Await takes one signal: a second Await of the same
// name waits for the next.
func Await(name string, timeout time.Duration) (json.RawMessage, error) {
	if timeout < 0 {
		timeout = 0
	}
	body, err := wait(abi.WaitRequest{Kind: abi.WaitSignal, Name: name, Timeout: int64(timeout)})
	if err != nil {
		return nil, fmt.Errorf("orloj: await %s: %w", name, err)
	}
	return body, nil
}

// AwaitInto is Await followed by json.Unmarshal of the payload into out.
func AwaitInto(name string, timeout time.Duration, out any) error {
	p, err := Await(name, timeout)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(p, out); err != nil {
		return fmt.Errorf("orloj: await %s: decode payload: %w", name, err)
	}
	return nil
}

func wait(req abi.WaitRequest) (json.RawMessage, error) {
	h, err := host()
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidArgument, err)
	}
	st, body, err := exchange(
		func(buf []byte) (abi.Status, uint32) { return h.wait(b, buf) },
		h.response,
	)
	if err != nil {
		return nil, err
	}
	if st != abi.StatusOK {
		return nil, abi.DecodeErrorBody(st, body)
	}
	return body, nil
}
