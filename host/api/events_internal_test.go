package api

import (
	"testing"

	"github.com/orloj/orloj/cluster"
)

// The backlog is a fixed ring: a position that has fallen out of it is a
// reset, never a wait, and appends never block whoever is behind.
func TestEventHubBacklog(t *testing.T) {
	t.Parallel()
	h := &eventHub{ring: make([]cluster.StateChange, 0, 4), changed: make(chan struct{}), floor: lastID(1)}
	changed := h.changed
	var batch []cluster.StateChange
	for i := uint64(2); i <= 11; i++ {
		batch = append(batch, cluster.StateChange{ID: i << 16, TaskID: "t"})
	}
	h.hear(cluster.StateBatch{Changes: batch, Applied: 11})
	select {
	case <-changed:
	default:
		t.Fatal("an append did not wake the streams")
	}
	if len(h.ring) != 4 || h.at(0).ID != 8<<16 || h.at(3).ID != 11<<16 {
		t.Fatalf("ring holds %d changes from %d to %d, want the last 4", len(h.ring), h.at(0).ID>>16, h.at(3).ID>>16)
	}
	if _, reset, head, _ := h.after(2<<16, 10); !reset || head != 11<<16 {
		t.Fatalf("after an evicted id: reset %v head %d, want a reset at the newest", reset, head)
	}
	out, reset, _, _ := h.after(7<<16, 2)
	if reset || len(out) != 2 || out[0].ID != 8<<16 || out[1].ID != 9<<16 {
		t.Fatalf("after the floor: %+v reset %v, want 8 and 9 (limit 2)", out, reset)
	}
	if out, _, _, _ := h.after(11<<16, 10); len(out) != 0 {
		t.Fatalf("after the newest: %+v", out)
	}
	// A client ahead of this node (it read another) waits for newer ones.
	if out, reset, _, _ := h.after(50<<16, 10); reset || len(out) != 0 {
		t.Fatalf("ahead of the node: %+v reset %v", out, reset)
	}
	h.hear(cluster.StateBatch{Reset: true, Applied: 20})
	if _, reset, head, _ := h.after(11<<16, 10); !reset || head != lastID(20) {
		t.Fatalf("after a restore: reset %v head %d", reset, head)
	}
}
