// Package plugintest holds conformance suites for the boundaries package
// plugins defines, so that every implementation — the in-memory ones in
// plugins, the Raft-backed ones in host — is held to one written contract.
// It imports testing: import it from tests only.
package plugintest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/orloj/orloj/plugins"
)

// KVHarness is one fresh, empty store under test: the backend, and the two
// ways a task's staged writes end, which plugins.KVBackend leaves to the host
// (they happen when a task completes or is discarded, not through the tool).
type KVHarness struct {
	Backend plugins.KVBackend
	// Commit makes taskID's staged writes visible to every task at once.
	Commit func(taskID string)
	// Discard drops taskID's staged writes.
	Discard func(taskID string)
	// Reencodes says Get returns a value as encoding/json writes a
	// json.RawMessage it marshals (compacted, with <, > and & as \u
	// escapes): the same JSON value, not always the same bytes. The host's
	// backend does, as the value travels in a Raft command; a guest sees
	// no difference, since the kv tool's answer is marshalled the same way.
	Reencodes bool
}

// KVBackendConformance runs the KVBackend contract against stores made by
// newHarness, one per subtest. The subtests run in parallel.
func KVBackendConformance(t *testing.T, newHarness func(t *testing.T) KVHarness) {
	cases := []struct {
		name string
		run  func(t *testing.T, h KVHarness, c kvClient)
	}{
		{"MissingKeyIsNotFound", func(t *testing.T, h KVHarness, c kvClient) {
			c.wantMissing("a", "k")
		}},
		{"StagedPutVisibleOnlyToItsTask", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `1`)
			c.want("a", "k", `1`)
			c.wantMissing("b", "k")
		}},
		{"CommitMakesWritesVisibleToAll", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k1", `"one"`)
			c.put("a", "k2", `{"n":2}`)
			c.put("b", "k3", `3`)
			h.Commit("a")
			c.want("b", "k1", `"one"`)
			c.want("c", "k2", `{"n":2}`)
			c.wantMissing("c", "k3") // b's write is still b's
			c.want("b", "k3", `3`)
		}},
		{"LastStagedWriteWins", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `1`)
			c.put("a", "k", `2`)
			c.want("a", "k", `2`)
			h.Commit("a")
			c.want("b", "k", `2`)
		}},
		{"StagingTwiceIsStagingOnce", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `[1,2]`)
			c.put("a", "k", `[1,2]`)
			c.del("a", "gone")
			c.del("a", "gone")
			h.Commit("a")
			c.want("b", "k", `[1,2]`)
			c.wantMissing("b", "gone")
		}},
		{"StagedDeleteHidesCommittedValueFromItsTaskOnly", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `1`)
			h.Commit("a")
			c.del("b", "k")
			c.wantMissing("b", "k")
			c.want("c", "k", `1`)
			h.Commit("b")
			c.wantMissing("c", "k")
		}},
		{"PutAfterDelete", func(t *testing.T, h KVHarness, c kvClient) {
			c.del("a", "k")
			c.put("a", "k", `"back"`)
			c.want("a", "k", `"back"`)
			h.Commit("a")
			c.want("b", "k", `"back"`)
		}},
		{"DiscardDropsStagedWritesOnly", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `1`)
			h.Commit("a")
			c.put("b", "k", `2`)
			c.put("b", "new", `true`)
			h.Discard("b")
			c.want("b", "k", `1`)
			c.wantMissing("b", "new")
			c.want("c", "k", `1`)
		}},
		{"EndingATaskTwiceIsHarmless", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `1`)
			h.Commit("a")
			h.Commit("a")
			h.Discard("a") // the writes are no longer staged; nothing to drop
			c.want("b", "k", `1`)
			h.Commit("never-staged")
			h.Discard("never-staged")
		}},
		{"NullIsAValue", func(t *testing.T, h KVHarness, c kvClient) {
			c.put("a", "k", `null`)
			c.want("a", "k", `null`)
			h.Commit("a")
			c.want("b", "k", `null`)
		}},
		{"ValuesRoundTripExactly", func(t *testing.T, h KVHarness, c kvClient) {
			vals := []string{`""`, `"héllo \u2028 <>&"`, `0`, `-1.5e300`, `{"a":[true,false,null],"b":{}}`}
			for i, v := range vals {
				c.put("a", fmt.Sprint("k", i), v)
			}
			h.Commit("a")
			for i, v := range vals {
				c.want("b", fmt.Sprint("k", i), v)
			}
		}},
		{"KeysAreOpaqueBytes", func(t *testing.T, h KVHarness, c kvClient) {
			keys := []string{"K", "k", "k ", "a/b", "ключ", string(bytes.Repeat([]byte("x"), plugins.MaxKVKeyBytes))}
			for i, k := range keys {
				c.put("a", k, fmt.Sprint(i))
			}
			h.Commit("a")
			for i, k := range keys {
				c.want("b", k, fmt.Sprint(i))
			}
		}},
		{"ValuesAreCopied", func(t *testing.T, h KVHarness, c kvClient) {
			v := []byte(`"abc"`)
			if err := h.Backend.Stage(t.Context(), "a", plugins.KVWrite{Key: "k", Value: v}); err != nil {
				t.Fatalf("Stage: %v", err)
			}
			v[1] = 'X' // the caller reuses its buffer
			got := c.want("a", "k", `"abc"`)
			got[1] = 'Y' // the caller scribbles on what it read
			c.want("a", "k", `"abc"`)
			h.Commit("a")
			got = c.want("b", "k", `"abc"`)
			got[1] = 'Z'
			c.want("b", "k", `"abc"`)
		}},
		{"ConcurrentTasks", func(t *testing.T, h KVHarness, c kvClient) {
			const tasks, keys = 8, 20
			var wg sync.WaitGroup
			for i := range tasks {
				wg.Go(func() {
					task := fmt.Sprint("task-", i)
					for j := range keys {
						key := fmt.Sprintf("k%d", j) // every task writes the same keys
						val := fmt.Sprintf(`"%d-%d"`, i, j)
						if err := h.Backend.Stage(t.Context(), task, plugins.KVWrite{Key: key, Value: json.RawMessage(val)}); err != nil {
							t.Errorf("Stage: %v", err)
							return
						}
						got, ok, err := h.Backend.Get(t.Context(), task, key)
						if err != nil || !ok || string(got) != val {
							t.Errorf("task %s: Get(%q) = %s, %v, %v; want %s", task, key, got, ok, err, val)
						}
					}
				})
			}
			wg.Wait()
			for i := range tasks {
				h.Commit(fmt.Sprint("task-", i))
			}
			for j := range keys {
				c.want("reader", fmt.Sprintf("k%d", j), fmt.Sprintf(`"%d-%d"`, tasks-1, j)) // last commit wins
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			tc.run(t, h, kvClient{t: t, b: h.Backend, reencodes: h.Reencodes})
		})
	}
}

// kvClient wraps a backend with assertions, failing the test on any error.
type kvClient struct {
	t         *testing.T
	b         plugins.KVBackend
	reencodes bool // see KVHarness.Reencodes
}

func (c kvClient) put(task, key, val string) {
	c.t.Helper()
	if err := c.b.Stage(c.t.Context(), task, plugins.KVWrite{Key: key, Value: json.RawMessage(val)}); err != nil {
		c.t.Fatalf("task %s: stage put %q: %v", task, key, err)
	}
}

func (c kvClient) del(task, key string) {
	c.t.Helper()
	if err := c.b.Stage(c.t.Context(), task, plugins.KVWrite{Key: key, Delete: true}); err != nil {
		c.t.Fatalf("task %s: stage delete %q: %v", task, key, err)
	}
}

func (c kvClient) want(task, key, val string) json.RawMessage {
	c.t.Helper()
	got, ok, err := c.b.Get(c.t.Context(), task, key)
	if err != nil {
		c.t.Fatalf("task %s: get %q: %v", task, key, err)
	}
	if c.reencodes {
		b, err := json.Marshal(json.RawMessage(val))
		if err != nil {
			c.t.Fatalf("bad test value %s: %v", val, err)
		}
		val = string(b)
	}
	if !ok || string(got) != val {
		c.t.Fatalf("task %s: get %q = %s (found %v); want %s", task, key, got, ok, val)
	}
	return got
}

func (c kvClient) wantMissing(task, key string) {
	c.t.Helper()
	got, ok, err := c.b.Get(c.t.Context(), task, key)
	if err != nil {
		c.t.Fatalf("task %s: get %q: %v", task, key, err)
	}
	if ok {
		c.t.Fatalf("task %s: get %q = %s; want not found", task, key, got)
	}
}
