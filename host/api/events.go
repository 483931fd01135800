package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/orloj/orloj/cluster"
)

// Defaults of the event stream.
const (
	DefaultMaxEventStreams = 64
	DefaultEventBacklog    = 4096
	DefaultEventHeartbeat  = 15 * time.Second
)

const (
	// eventChunk is how many changes a stream copies out of the backlog
	// at a time, so it holds the lock briefly whatever it is behind by.
	eventChunk = 256
	// eventWriteTimeout cuts a stream whose client stops reading: a write
	// that cannot finish in this long ends it.
	eventWriteTimeout = 30 * time.Second
	// eventRetry is the reconnection delay the stream suggests (ms).
	eventRetry = 2000
)

// StateEventView is the data of one `task` event of GET /v1/events.
type StateEventView struct {
	ID      string             `json:"id"`
	TaskID  string             `json:"task_id"`
	Agent   string             `json:"agent"`
	Version string             `json:"version"`
	From    cluster.TaskState  `json:"from"` // "" for a new task
	State   cluster.TaskState  `json:"state"`
	Attempt int                `json:"attempt"`
	At      *string            `json:"at"`
	Class   cluster.ErrorClass `json:"class,omitempty"`
}

// ResetEventView is the data of a `reset` event: the stream cannot give
// the changes since the client's Last-Event-ID (too old for the backlog,
// or from before this node started or restored a snapshot). The client
// re-reads what it shows and goes on from the reset's id.
type ResetEventView struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// eventHub keeps the last backlog state changes this node applied, for the
// streams of GET /v1/events. The FSM's listener appends under the lock and
// wakes the streams; no stream can slow it down, and a stream that falls
// behind the backlog is told to reset instead of holding memory.
type eventHub struct {
	mu   sync.Mutex
	ring []cluster.StateChange // oldest first, from start; at most cap(ring)
	head int                   // index of the oldest in ring once it is full
	// floor: every change with an ID above it is in ring or yet to come.
	floor   uint64
	changed chan struct{} // closed and replaced on every append or reset
	stop    func()
	streams chan struct{} // one token per open stream
}

func newEventHub(fsm *cluster.FSM, backlog, maxStreams int) *eventHub {
	h := &eventHub{ring: make([]cluster.StateChange, 0, backlog), changed: make(chan struct{}), streams: make(chan struct{}, maxStreams)}
	h.stop = fsm.ListenStates(h.hear)
	// Changes of entries after this index are heard (ListenStates).
	h.mu.Lock()
	h.floor = lastID(fsm.AppliedIndex())
	h.mu.Unlock()
	return h
}

// lastID is the highest change ID an entry at index can give.
func lastID(index uint64) uint64 { return index<<16 | 0xffff }

// hear runs on the FSM's apply goroutine: an append per change, no I/O.
func (h *eventHub) hear(b cluster.StateBatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if b.Reset {
		h.ring, h.head = h.ring[:0], 0
		h.floor = max(h.floor, lastID(b.Applied))
	}
	for _, c := range b.Changes {
		if n := len(h.ring); n > 0 && c.ID <= h.at(n-1).ID {
			continue // heard already (cannot happen: changes come once, in order)
		}
		if len(h.ring) < cap(h.ring) {
			h.ring = append(h.ring, c)
			continue
		}
		h.floor = max(h.floor, h.ring[h.head].ID)
		h.ring[h.head] = c
		h.head = (h.head + 1) % len(h.ring)
	}
	close(h.changed)
	h.changed = make(chan struct{})
}

// at is the i-th oldest change in the ring.
func (h *eventHub) at(i int) cluster.StateChange {
	return h.ring[(h.head+i)%len(h.ring)]
}

// newest is the highest ID the hub can vouch for: the last change held, or
// the floor.
func (h *eventHub) newest() uint64 {
	if n := len(h.ring); n > 0 {
		return max(h.floor, h.at(n-1).ID)
	}
	return h.floor
}

// after copies up to limit changes with IDs above id. reset says id is
// below the floor: changes after it may be gone.
func (h *eventHub) after(id uint64, limit int) (out []cluster.StateChange, reset bool, head uint64, changed <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if id < h.floor {
		return nil, true, h.newest(), h.changed
	}
	n := len(h.ring)
	i := sort.Search(n, func(i int) bool { return h.at(i).ID > id })
	for ; i < n && len(out) < limit; i++ {
		out = append(out, h.at(i))
	}
	return out, false, h.newest(), h.changed
}

func (h *eventHub) close() { h.stop() }

// eventFilter selects the changes a stream sends; zero fields match all.
type eventFilter struct {
	task, agent string
	state       cluster.TaskState
}

func (f eventFilter) match(c *cluster.StateChange) bool {
	return (f.task == "" || c.TaskID == f.task) && (f.agent == "" || c.Agent == f.agent) && (f.state == "" || c.To == f.state)
}

// events: GET /v1/events[?task=&agent=&state=&last_event_id=], a
// server-sent event stream of task state changes. See docs/openapi.yaml.
func (s *Server) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "task", "agent", "state", "last_event_id"); err != nil {
		return err
	}
	var f eventFilter
	if f.task = q.Get("task"); f.task != "" {
		if err := checkID(f.task); err != nil {
			return err
		}
	}
	if f.agent = q.Get("agent"); f.agent != "" {
		if err := checkName("agent", f.agent); err != nil {
			return err
		}
	}
	if v := q.Get("state"); v != "" {
		st, err := parseState(v)
		if err != nil {
			return err
		}
		f.state = st
	}
	// The header is what EventSource sends when it reconnects; the
	// parameter lets a first connection resume too.
	resume := r.Header.Get("Last-Event-ID")
	if resume == "" {
		resume = q.Get("last_event_id")
	}
	var last uint64
	resuming := resume != ""
	if resuming {
		n, err := strconv.ParseUint(resume, 10, 64)
		if err != nil {
			return badRequest("Last-Event-ID %q must be the id of an event of this stream (a whole number)", resume)
		}
		last = n
	}
	select {
	case s.hub.streams <- struct{}{}:
		defer func() { <-s.hub.streams }()
	default:
		w.Header().Set("Retry-After", "5")
		return unavailable("too many event streams open on this node (limit %d); retry shortly", cap(s.hub.streams))
	}
	rc := http.NewResponseController(w)
	// flushEvents sets a deadline per write; a connection kept alive for
	// another request must not keep it.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n: orloj task state changes\n\n", eventRetry)
	if !resuming {
		_, _, last, _ = s.hub.after(0, 0)
	}
	sent := last // the last id the client has been given
	beat := time.NewTicker(s.cfg.EventHeartbeat)
	defer beat.Stop()
	for {
		changes, reset, head, changed := s.hub.after(last, eventChunk)
		if reset {
			b, _ := json.Marshal(ResetEventView{ID: strconv.FormatUint(head, 10),
				Reason: "the changes after the last event id are no longer held by this node; re-read the state you show"})
			fmt.Fprintf(&buf, "id: %d\nevent: reset\ndata: %s\n\n", head, b)
			last, sent = head, head
		}
		for i := range changes {
			c := &changes[i]
			last = c.ID
			if !f.match(c) {
				continue
			}
			b, _ := json.Marshal(stateEventView(c))
			fmt.Fprintf(&buf, "id: %d\nevent: task\ndata: %s\n\n", c.ID, b)
			sent = c.ID
		}
		if buf.Len() > 0 {
			if err := s.flushEvents(rc, w, &buf); err != nil {
				return nil // the client went away: nothing to answer
			}
		}
		if len(changes) == eventChunk {
			continue // more to copy out
		}
		select {
		case <-changed:
		case <-beat.C:
			// A comment keeps proxies from closing an idle stream; the id
			// moves a filtering client's Last-Event-ID past what it skipped.
			buf.WriteString(": ping\n")
			if last != sent {
				fmt.Fprintf(&buf, "id: %d\n", last)
				sent = last
			}
			buf.WriteString("\n")
			if err := s.flushEvents(rc, w, &buf); err != nil {
				return nil
			}
		case <-s.closing:
			return nil
		case <-r.Context().Done():
			return nil
		}
	}
}

// flushEvents writes buf to the client within eventWriteTimeout.
func (s *Server) flushEvents(rc *http.ResponseController, w http.ResponseWriter, buf *bytes.Buffer) error {
	_ = rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
	_, err := w.Write(buf.Bytes())
	buf.Reset()
	if err == nil {
		err = rc.Flush()
	}
	return err
}

func stateEventView(c *cluster.StateChange) StateEventView {
	return StateEventView{ID: strconv.FormatUint(c.ID, 10), TaskID: c.TaskID, Agent: c.Agent, Version: c.Version,
		From: c.From, State: c.To, Attempt: c.Attempt, At: timeView(c.At), Class: c.Class}
}
