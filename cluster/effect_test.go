package cluster

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// TestEffectWrites: a kv effect's write commits with the mark that says it
// was dispatched, once; a failed effect, or one over the limits, writes
// nothing, and the refusal leaves the effect pending.
func TestEffectWrites(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.agent("doc", "v1", "\x00asm")
	h.submit("t1", RetryPolicy{}, 10*sec)
	c := h.claim(11 * sec)
	h.ok(&CompleteTask{TaskID: "t1", Token: c.Lease.Token, Output: json.RawMessage(`1`), Outbox: []Effect{
		{Tool: "kv", Params: json.RawMessage(`{"op":"put","key":"a","value":1}`), Key: "k0"},
		{Tool: "kv", Params: json.RawMessage(`{"op":"put","key":"b","value":2}`), Key: "k1"},
	}, Now: 12 * sec})

	put := []KVWrite{{Key: "a", Value: json.RawMessage(`{"n":1}`)}}
	if err, _ := h.apply(&MarkEffectDone{TaskID: "t1", N: 0, Error: "boom", Writes: put, Now: 13 * sec}).(error); !errors.Is(err, ErrInvalidCmd) {
		t.Fatalf("failed effect with writes: %v, want ErrInvalidCmd", err)
	}
	big := []KVWrite{{Key: "a", Value: json.RawMessage(`"` + strings.Repeat("x", MaxStagedBytes) + `"`)}}
	if err, _ := h.apply(&MarkEffectDone{TaskID: "t1", N: 0, Writes: big, Now: 13 * sec}).(error); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized writes: %v, want ErrTooLarge", err)
	}
	if eff, _ := h.fsm.PendingEffects(); len(eff) != 2 {
		t.Fatalf("a refused mark changed the outbox: %+v", eff)
	}
	if _, ok, _ := h.fsm.KV("a"); ok {
		t.Fatal("a refused mark wrote")
	}

	h.ok(&MarkEffectDone{TaskID: "t1", N: 0, Writes: put, Now: 14 * sec})
	if v, ok, _ := h.fsm.KV("a"); !ok || string(v) != `{"n":1}` {
		t.Fatalf("kv a = %s %v after the effect", v, ok)
	}
	// A second mark (a leader that did not see the first) changes nothing.
	h.ok(&MarkEffectDone{TaskID: "t1", N: 0, Writes: []KVWrite{{Key: "a", Value: json.RawMessage(`2`)}}, Now: 15 * sec})
	if v, _, _ := h.fsm.KV("a"); string(v) != `{"n":1}` {
		t.Fatalf("kv a = %s after a repeated mark", v)
	}
	h.ok(&MarkEffectDone{TaskID: "t1", N: 1, Error: "gave up", Now: 16 * sec})
	if _, ok, _ := h.fsm.KV("b"); ok {
		t.Fatal("a failed effect wrote")
	}
	ev, _ := h.fsm.Journal("t1")
	var got []string
	for _, e := range ev {
		if strings.HasPrefix(string(e.Type), "effect_") {
			got = append(got, string(e.Type)+":"+e.Message)
		}
	}
	if want := []string{"effect_dispatched:", "effect_failed:gave up"}; !equal(got, want) {
		t.Fatalf("journal effects = %v, want %v", got, want)
	}
}
