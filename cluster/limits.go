package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits on what may enter the replicated state. Each is checked where a
// command is proposed (a clear error to the proposer, no Raft entry) and again
// in Apply (a deterministic refusal, the same on every replica), so no entry
// a client, guest or tool sent can make Apply fail or panic. See
// docs/RATIONALE.md, "Bounded entries".
const (
	// MaxCommandBytes is the largest encoded command Node.Apply proposes
	// or the forward route accepts. An inline module (MaxInlineModule,
	// base64 in JSON) is the largest legitimate one.
	MaxCommandBytes = 2 << 20

	// MaxEventsPerEntry bounds the journal events one entry carries
	// (CompleteTask, FailAttempt, AppendJournal). Event sequence numbers
	// give each entry 16 bits of room; this stays far below.
	MaxEventsPerEntry = 1024
	// MaxEventMessageBytes bounds an event's message; MaxEventDetailBytes
	// its detail.
	MaxEventMessageBytes = 4 << 10
	MaxEventDetailBytes  = 4 << 10

	// MaxOutputBytes bounds a task's output.
	MaxOutputBytes = 1 << 20
	// MaxStderrTailBytes bounds the stderr tail a failure keeps.
	MaxStderrTailBytes = 4 << 10
	// MaxErrorMessageBytes bounds a failure's message.
	MaxErrorMessageBytes = 8 << 10

	// MaxEffectsPerTask is the hard ceiling on a task's outbox; a task's
	// effects budget may not exceed it.
	MaxEffectsPerTask = 10_000
	// MaxStagedWrites and MaxStagedBytes bound the kv writes one task
	// stages: they are all applied in the entry that completes it.
	MaxStagedWrites = 1000
	MaxStagedBytes  = 1 << 20

	// MaxCallsPerTask is the hard ceiling on a task's calls budget.
	MaxCallsPerTask = 1_000_000

	// MaxNameBytes bounds every identifier a command carries (task, call,
	// agent, node, kv key, idempotency key, tool, event type): each is part
	// of a Badger key, and Badger refuses keys over 65,000 bytes.
	MaxNameBytes = 1 << 10
	// MaxInputBytes bounds a task's input: the task record carrying it is
	// rewritten by every claim and renewal.
	MaxInputBytes = 1 << 20
	// MaxAttemptsPerTask bounds a retry policy's attempts: each attempt
	// adds a line to the task record's history.
	MaxAttemptsPerTask = 1000
)

// ErrTooLarge marks a command, or a part of one, over a limit above. The
// proposer gets it before anything is proposed; an entry over a limit that
// only Apply can measure is refused with it, identically on every replica.
var ErrTooLarge = errors.New("too large")

// Budget bounds what one task may spend, summed over all its attempts. A
// call that would exceed a budget is refused with abi.StatusBudgetExceeded
// before its tool runs, and the attempt's task goes to the DLQ with
// ClassBudget. Calls replayed from the ledger, and the tokens they recorded,
// count once. Zero means: the default for MaxCalls and MaxEffects, no limit
// for MaxTokens and MaxDuration.
type Budget struct {
	// MaxCalls counts distinct tool calls (recorded in the ledger, or
	// refused by the manifest), not clock readings.
	MaxCalls int64 `json:"max_calls,omitempty"`
	// MaxTokens counts model tokens (prompt + completion) recorded in the
	// ledger.
	MaxTokens int64 `json:"max_tokens,omitempty"`
	// MaxEffects counts the effects one attempt emits to the outbox.
	MaxEffects int64 `json:"max_effects,omitempty"`
	// MaxDuration bounds the time spent running attempts, summed; time
	// waiting between attempts does not count.
	MaxDuration time.Duration `json:"max_duration,omitempty"`
}

// Default budgets.
const (
	DefaultMaxCalls   = 10_000
	DefaultMaxEffects = 1_000
)

// BudgetKind names one budget, in errors, metrics and `--budget` flags.
type BudgetKind string

const (
	BudgetCalls    BudgetKind = "calls"
	BudgetTokens   BudgetKind = "tokens"
	BudgetEffects  BudgetKind = "effects"
	BudgetDuration BudgetKind = "duration"
)

// WithDefaults fills the defaulted fields.
func (b Budget) WithDefaults() Budget {
	if b.MaxCalls == 0 {
		b.MaxCalls = DefaultMaxCalls
	}
	if b.MaxEffects == 0 {
		b.MaxEffects = DefaultMaxEffects
	}
	return b
}

// Override returns b with every non-zero field of o taking its place.
func (b Budget) Override(o Budget) Budget {
	if o.MaxCalls != 0 {
		b.MaxCalls = o.MaxCalls
	}
	if o.MaxTokens != 0 {
		b.MaxTokens = o.MaxTokens
	}
	if o.MaxEffects != 0 {
		b.MaxEffects = o.MaxEffects
	}
	if o.MaxDuration != 0 {
		b.MaxDuration = o.MaxDuration
	}
	return b
}

// Validate names the first field out of range.
func (b Budget) Validate() error {
	switch {
	case b.MaxCalls < 0 || b.MaxCalls > MaxCallsPerTask:
		return fmt.Errorf("budget max_calls %d: want 1 to %d (0 for the default %d)", b.MaxCalls, MaxCallsPerTask, DefaultMaxCalls)
	case b.MaxEffects < 0 || b.MaxEffects > MaxEffectsPerTask:
		return fmt.Errorf("budget max_effects %d: want 1 to %d (0 for the default %d)", b.MaxEffects, MaxEffectsPerTask, DefaultMaxEffects)
	case b.MaxTokens < 0:
		return fmt.Errorf("budget max_tokens %d: want a positive count (0 for none)", b.MaxTokens)
	case b.MaxDuration < 0:
		return fmt.Errorf("budget max_duration %s: want a positive duration (0 for none)", b.MaxDuration)
	}
	return nil
}

// ParseBudget reads the `--budget` form: comma-separated kind=value pairs,
// e.g. "calls=500,tokens=200000,effects=10,duration=5m". Kinds not named
// stay zero (the default, or none).
func ParseBudget(spec string) (Budget, error) {
	var b Budget
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || v == "" {
			return Budget{}, fmt.Errorf("budget %q: want kind=value (calls, tokens, effects, duration)", part)
		}
		if seen[k] {
			return Budget{}, fmt.Errorf("budget %q: %s given twice", spec, k)
		}
		seen[k] = true
		if BudgetKind(k) == BudgetDuration {
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return Budget{}, fmt.Errorf("budget duration=%s: want a positive duration such as 90s or 5m", v)
			}
			b.MaxDuration = d
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return Budget{}, fmt.Errorf("budget %s=%s: want a positive whole number", k, v)
		}
		switch BudgetKind(k) {
		case BudgetCalls:
			b.MaxCalls = n
		case BudgetTokens:
			b.MaxTokens = n
		case BudgetEffects:
			b.MaxEffects = n
		default:
			return Budget{}, fmt.Errorf("budget %q: unknown kind %q; want calls, tokens, effects or duration", part, k)
		}
	}
	return b, b.Validate()
}

// String renders b in ParseBudget's form, zero fields left out.
func (b Budget) String() string {
	var parts []string
	if b.MaxCalls != 0 {
		parts = append(parts, fmt.Sprintf("calls=%d", b.MaxCalls))
	}
	if b.MaxTokens != 0 {
		parts = append(parts, fmt.Sprintf("tokens=%d", b.MaxTokens))
	}
	if b.MaxEffects != 0 {
		parts = append(parts, fmt.Sprintf("effects=%d", b.MaxEffects))
	}
	if b.MaxDuration != 0 {
		parts = append(parts, "duration="+b.MaxDuration.String())
	}
	return strings.Join(parts, ",")
}
