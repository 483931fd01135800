package api_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/host/api"
)

// TestSignalRoute: a signal is kept for a task that does not await it, a
// resent key (query or Idempotency-Key header) is a duplicate, and what is
// malformed, too large or aimed at a finished task is refused.
func TestSignalRoute(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	tk := f.submit(api.SubmitRequest{Agent: "hello"})
	path := "/v1/tasks/" + tk.ID + "/signals/approved"

	r := f.do("POST", path+"?key=evt-1", `{"by": "ana"}`)
	want(t, r, http.StatusOK, "")
	var sv api.SignalView
	r.decode(t, &sv)
	if sv.Delivered || sv.Duplicate || sv.Task.ID != tk.ID {
		t.Fatalf("first signal: %s", r.body)
	}
	sigs, err := f.node.FSM().Signals(tk.ID)
	if err != nil || len(sigs) != 1 || string(sigs[0].Payload) != `{"by":"ana"}` {
		t.Fatalf("kept signals %+v, %v", sigs, err)
	}

	req, err := http.NewRequest("POST", f.url+path, strings.NewReader(`1`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.Header.Set("Idempotency-Key", "evt-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sigs, _ := f.node.FSM().Signals(tk.ID); resp.StatusCode != http.StatusOK || len(sigs) != 1 {
		t.Fatalf("resent by header: status %d, %d signals kept", resp.StatusCode, len(sigs))
	}
	// An empty body is a null payload.
	want(t, f.do("POST", "/v1/tasks/"+tk.ID+"/signals/other", nil), http.StatusOK, "")

	want(t, f.do("POST", path, `{"by":`), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", "/v1/tasks/"+tk.ID+"/signals/bad%20name", `1`), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", path+"?key="+strings.Repeat("k", abi.MaxKeyBytes+1), `1`), http.StatusBadRequest, api.CodeBadRequest)
	want(t, f.do("POST", path+"?nope=1", `1`), http.StatusBadRequest, api.CodeBadRequest)
	big := `"` + strings.Repeat("x", abi.MaxSignalBytes) + `"`
	want(t, f.do("POST", path, big), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	want(t, f.do("POST", "/v1/tasks/NOSUCHTASK/signals/approved", `1`), http.StatusNotFound, api.CodeNotFound)

	// Past the kept-signal limit: 413, refused by the FSM.
	for i := len(mustSignals(t, f, tk.ID)); i < cluster.MaxPendingSignals; i++ {
		want(t, f.do("POST", path, `1`), http.StatusOK, "")
	}
	want(t, f.do("POST", path, `1`), http.StatusRequestEntityTooLarge, api.CodeTooLarge)

	want(t, f.do("POST", "/v1/tasks/"+tk.ID+"/cancel", nil), http.StatusOK, "")
	want(t, f.do("POST", path, `1`), http.StatusConflict, api.CodeConflict)
}

func mustSignals(t *testing.T, f *fixture, id string) []cluster.Signal {
	t.Helper()
	sigs, err := f.node.FSM().Signals(id)
	if err != nil {
		t.Fatal(err)
	}
	return sigs
}

// TestWaitMetrics: a suspended attempt and a wake by signal are counted,
// and a waiting task shows in the task gauge and in the task's view.
func TestWaitMetrics(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.pushHello("hello", "v1")
	tk := f.submit(api.SubmitRequest{Agent: "hello"})
	l := f.claim(tk.ID)
	f.apply(&cluster.Suspend{TaskID: tk.ID, Token: l.Token, Now: time.Now().UnixNano(),
		Wait: cluster.Wait{Kind: cluster.WaitSignal, CallID: "c1", Tool: "orloj.signal", Signal: "go"}})
	r := f.do("GET", "/v1/tasks/"+tk.ID, nil)
	var v api.TaskView
	r.decode(t, &v)
	if v.State != cluster.StateWaiting || v.Wait == nil || v.Wait.Signal != "go" || v.Wait.Until != nil || v.Lease != nil {
		t.Fatalf("waiting task view: %s", r.body)
	}
	if text := string(f.do("GET", "/metrics", nil).body); !strings.Contains(text, `orloj_tasks{state="waiting"} 1`) ||
		!strings.Contains(text, `orloj_waits_total{kind="signal"} 1`) {
		t.Fatalf("metrics while waiting:\n%s", grepLines(text, "wait"))
	}
	want(t, f.do("POST", "/v1/tasks/"+tk.ID+"/signals/go", `{"ok":true}`), http.StatusOK, "")
	if text := string(f.do("GET", "/metrics", nil).body); !strings.Contains(text, `orloj_tasks{state="waiting"} 0`) ||
		!strings.Contains(text, `orloj_wakes_total{reason="signal"} 1`) {
		t.Fatalf("metrics after the signal:\n%s", grepLines(text, "wa"))
	}
}

func grepLines(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
