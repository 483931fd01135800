package api

import (
	"net/http"

	"github.com/orloj/orloj/cluster"
)

// countTasks: GET /v1/tasks/counts[?agent=], how many tasks are in each
// state (every state named, 0 included). It reads every task record, as
// the Prometheus gauges do.
func (s *Server) countTasks(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if err := checkQuery(q, "agent"); err != nil {
		return err
	}
	var fl cluster.TaskFilter
	if fl.Agent = q.Get("agent"); fl.Agent != "" {
		if err := checkName("agent", fl.Agent); err != nil {
			return err
		}
	}
	ts, err := s.fsm.Tasks(fl)
	if err != nil {
		return err
	}
	counts := make(map[cluster.TaskState]int, len(cluster.TaskStates()))
	for _, st := range cluster.TaskStates() {
		counts[st] = 0
	}
	for _, t := range ts {
		counts[t.State]++
	}
	s.reply(w, http.StatusOK, counts)
	return nil
}
