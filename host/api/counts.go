package api

import (
	"net/http"

	"github.com/orloj/orloj/cluster"
)

// countTasks: GET /v1/tasks/counts[?agent=], how many tasks are in each
// state (every state named, 0 included), from the FSM's running counts.
func (s *Server) countTasks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "agent"); err != nil {
		return err
	}
	agent := q.Get("agent")
	if agent != "" {
		if err := checkName("agent", agent); err != nil {
			return err
		}
	}
	got := s.fsm.TaskCounts(agent)
	counts := make(map[cluster.TaskState]int, len(cluster.TaskStates()))
	for _, st := range cluster.TaskStates() {
		counts[st] = got[st]
	}
	s.reply(w, http.StatusOK, counts)
	return nil
}
