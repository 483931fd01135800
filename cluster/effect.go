package cluster

import "fmt"

// effectWrites checks, then applies, the kv writes a dispatched outbox effect
// carries (MarkEffectDone.Writes). They commit in the entry that marks the
// effect done, so a kv effect is applied exactly once however often the
// leader that dispatched it died. A failed effect applies nothing.
func (a *applier) effectWrites(c *MarkEffectDone) error {
	if err := checkEffectWrites(c); err != nil { // Validate ran already; this keeps the apply self-evident
		return err
	}
	for _, w := range c.Writes {
		if w.Delete {
			a.del(kvKey(w.Key))
		} else {
			a.putRaw(kvKey(w.Key), w.Value)
		}
	}
	return nil
}

// checkEffectWrites is MarkEffectDone's rule for the writes it carries,
// shared by Validate (at proposal and in Apply).
func checkEffectWrites(c *MarkEffectDone) error {
	if c.Error != "" && len(c.Writes) > 0 {
		return fmt.Errorf("%w: effect %d of task %s failed and carries writes", ErrInvalidCmd, c.N, c.TaskID)
	}
	if len(c.Writes) > MaxStagedWrites {
		return fmt.Errorf("effect %d of task %s: %d kv writes, limit %d: %w", c.N, c.TaskID, len(c.Writes), MaxStagedWrites, ErrTooLarge)
	}
	size := 0
	for _, w := range c.Writes {
		if w.Key == "" {
			return fmt.Errorf("%w: effect %d of task %s: kv key is empty", ErrInvalidCmd, c.N, c.TaskID)
		}
		size += len(w.Key) + len(w.Value)
	}
	if size > MaxStagedBytes {
		return fmt.Errorf("effect %d of task %s: %d bytes of kv writes, limit %d: %w", c.N, c.TaskID, size, MaxStagedBytes, ErrTooLarge)
	}
	return nil
}
