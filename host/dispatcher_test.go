package host

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orloj/orloj/abi"
	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/cluster/clustertest"
	"github.com/orloj/orloj/plugins"
)

// probe is a tool that counts what the dispatcher asks of it.
type probe struct {
	mu         sync.Mutex
	invoked    []string // call IDs Invoke saw
	reconciled []string // call IDs Reconcile saw
}

func (p *probe) saw(list *[]string, id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	*list = append(*list, id)
}

// tool builds the case's tool: name "t" with sem, invoking with invoke (a
// fresh result when nil) and, for Reconcile, reconciling with rec.
func (p *probe) tool(sem plugins.Semantics, invoke plugins.InvokeFunc, rec plugins.ReconcileFunc) plugins.Tool {
	if invoke == nil {
		invoke = func(context.Context, plugins.Call) (plugins.Result, error) {
			return plugins.Result{Body: json.RawMessage(`"fresh"`)}, nil
		}
	}
	inv := func(ctx context.Context, c plugins.Call) (plugins.Result, error) {
		p.saw(&p.invoked, c.ID)
		return invoke(ctx, c)
	}
	if sem != plugins.Reconcile {
		return plugins.NewStub("t", sem, inv)
	}
	return plugins.NewReconcileStub("t", inv, func(ctx context.Context, c plugins.Call) (plugins.Result, bool, error) {
		p.saw(&p.reconciled, c.ID)
		if rec == nil {
			return plugins.Result{}, false, nil
		}
		return rec(ctx, c)
	})
}

// Ledger states before and after a call, for dispatcherCase.prior and
// dispatcherCase.ledger.
const (
	ledgerNone   = "none"   // no record of the call
	ledgerIntent = "intent" // an intent without a result: an attempt may have applied it
	ledgerResult = "result" // a result (or permanent error) is recorded
)

// dispatcherCase is one row of ledgerDispatcher.Call's decision table.
type dispatcherCase struct {
	name     string
	sem      plugins.Semantics
	invoke   plugins.InvokeFunc
	rec      plugins.ReconcileFunc
	manifest []string       // tools the agent may call; default {"t"}
	budget   cluster.Budget // the task's budget over the defaults
	tool     string         // the tool the guest calls; default "t"
	// prior is the call's ledger state before the attempt: ledgerNone,
	// ledgerIntent, or ledgerResult with priorStatus and priorBody.
	prior       string
	priorStatus abi.Status
	priorBody   string
	otherCalls  int  // distinct calls recorded before this one (budget)
	stale       bool // the attempt's lease expires before the call

	// The answer: wantBody on success, else an error matching wantErr.
	wantBody string
	wantErr  error
	wantMsg  string // if set, the error's whole text
	// What the tool was asked: Invoke and Reconcile calls, each with
	// the call's ID (the idempotency key a tool passes on).
	invoked, reconciled int
	// The call's ledger state afterwards, with the recorded status and
	// body when ledgerResult.
	ledger       string
	ledgerStatus abi.Status
	ledgerBody   string
	// outcomes are the call's "call" events in the attempt's journal.
	outcomes []CallOutcome
}

func TestLedgerDispatcherDecisionTable(t *testing.T) {
	t.Parallel()
	failTransient := func(context.Context, plugins.Call) (plugins.Result, error) {
		return plugins.Result{}, abi.Errorf(abi.StatusTransient, "upstream 503")
	}
	failPermanent := func(context.Context, plugins.Call) (plugins.Result, error) {
		return plugins.Result{}, abi.Errorf(abi.StatusToolError, "no such invoice")
	}
	applied := func(context.Context, plugins.Call) (plugins.Result, bool, error) {
		return plugins.Result{Body: json.RawMessage(`"found"`)}, true, nil
	}
	cases := []dispatcherCase{
		{name: "not in manifest: denied", sem: plugins.Idempotent, manifest: []string{"other"},
			wantErr: abi.StatusPermissionDenied, ledger: ledgerNone, outcomes: []CallOutcome{OutcomeDenied}},
		{name: "unknown tool: not found", sem: plugins.Idempotent, manifest: []string{"t", "ghost"}, tool: "ghost",
			wantErr: abi.StatusNotFound, ledger: ledgerNone},
		{name: "new call: invoked and recorded", sem: plugins.Unsafe,
			wantBody: `"fresh"`, invoked: 1, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"fresh"`, outcomes: []CallOutcome{OutcomeInvoked}},
		// A result travels in a JSON-encoded Raft command: the ledger
		// holds the same JSON value re-encoded, which a replay returns.
		{name: "new call: the ledger holds the result re-encoded", sem: plugins.Idempotent,
			invoke: func(context.Context, plugins.Call) (plugins.Result, error) {
				return plugins.Result{Body: json.RawMessage(`{"a": "x<y"}`)}, nil
			},
			wantBody: `{"a": "x<y"}`, invoked: 1, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `{"a":"x\u003cy"}`, outcomes: []CallOutcome{OutcomeInvoked}},
		{name: "recorded result: replayed, tool not invoked", sem: plugins.Unsafe,
			prior: ledgerResult, priorStatus: abi.StatusOK, priorBody: `"recorded"`,
			wantBody: `"recorded"`, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"recorded"`, outcomes: []CallOutcome{OutcomeReplayed}},
		{name: "recorded tool error: replayed, tool not invoked", sem: plugins.Idempotent,
			prior: ledgerResult, priorStatus: abi.StatusToolError, priorBody: string(abi.EncodeErrorBody(abi.StatusToolError, "bad")),
			wantErr: abi.StatusToolError, ledger: ledgerResult, ledgerStatus: abi.StatusToolError, outcomes: []CallOutcome{OutcomeReplayed}},
		{name: "intent, unsafe: in doubt, tool not invoked", sem: plugins.Unsafe, prior: ledgerIntent,
			wantErr: abi.StatusInDoubt, ledger: ledgerIntent, outcomes: []CallOutcome{OutcomeInDoubt}},
		{name: "intent, reconcile applied: reconciled and recorded", sem: plugins.Reconcile, rec: applied, prior: ledgerIntent,
			wantBody: `"found"`, reconciled: 1, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"found"`, outcomes: []CallOutcome{OutcomeInvoked}},
		{name: "intent, reconcile not applied: invoked again", sem: plugins.Reconcile, prior: ledgerIntent,
			wantBody: `"fresh"`, reconciled: 1, invoked: 1, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"fresh"`, outcomes: []CallOutcome{OutcomeInvoked}},
		{name: "intent, reconcile fails: transient, not recorded", sem: plugins.Reconcile, prior: ledgerIntent,
			rec: func(context.Context, plugins.Call) (plugins.Result, bool, error) {
				return plugins.Result{}, false, errors.New("status endpoint down")
			},
			wantErr: abi.StatusTransient, reconciled: 1, ledger: ledgerIntent, outcomes: []CallOutcome{OutcomeError}},
		{name: "intent, idempotent: invoked again with the same key", sem: plugins.Idempotent, prior: ledgerIntent,
			wantBody: `"fresh"`, invoked: 1, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"fresh"`, outcomes: []CallOutcome{OutcomeInvoked}},
		{name: "intent, read only: invoked again with the same key", sem: plugins.ReadOnly, prior: ledgerIntent,
			wantBody: `"fresh"`, invoked: 1, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"fresh"`, outcomes: []CallOutcome{OutcomeInvoked}},
		// Safe-to-repeat tools commit the RESULT alone: a failed call
		// leaves no record, and the next attempt invokes again.
		{name: "transient error: not recorded, error outcome", sem: plugins.Idempotent, invoke: failTransient,
			wantErr: abi.StatusTransient, wantMsg: "transient: upstream 503", invoked: 1, ledger: ledgerNone, outcomes: []CallOutcome{OutcomeError}},
		{name: "transient error, unsafe: the intent stays", sem: plugins.Unsafe, invoke: failTransient,
			wantErr: abi.StatusTransient, invoked: 1, ledger: ledgerIntent, outcomes: []CallOutcome{OutcomeError}},
		{name: "transient error, reconcile: the intent stays", sem: plugins.Reconcile, invoke: failTransient,
			wantErr: abi.StatusTransient, invoked: 1, ledger: ledgerIntent, outcomes: []CallOutcome{OutcomeError}},
		{name: "unclassified error: transient", sem: plugins.Idempotent,
			invoke: func(context.Context, plugins.Call) (plugins.Result, error) {
				return plugins.Result{}, errors.New("connection reset")
			},
			wantErr: abi.StatusTransient, invoked: 1, ledger: ledgerNone, outcomes: []CallOutcome{OutcomeError}},
		{name: "permanent tool error: recorded", sem: plugins.Idempotent, invoke: failPermanent,
			wantErr: abi.StatusToolError, invoked: 1, ledger: ledgerResult, ledgerStatus: abi.StatusToolError, outcomes: []CallOutcome{OutcomeInvoked}},
		{name: "over budget: budget exceeded, tool not invoked", sem: plugins.Idempotent,
			budget: cluster.Budget{MaxCalls: 1}, otherCalls: 1,
			wantErr: abi.StatusBudgetExceeded, ledger: ledgerNone, outcomes: []CallOutcome{OutcomeBudget}},
		{name: "recorded result over budget: still replayed", sem: plugins.Idempotent,
			budget: cluster.Budget{MaxCalls: 1}, otherCalls: 1, prior: ledgerResult, priorStatus: abi.StatusOK, priorBody: `"recorded"`,
			wantBody: `"recorded"`, ledger: ledgerResult, ledgerStatus: abi.StatusOK, ledgerBody: `"recorded"`, outcomes: []CallOutcome{OutcomeReplayed}},
		{name: "stale token: fenced, tool not invoked", sem: plugins.Idempotent, stale: true,
			wantErr: cluster.ErrStaleToken, ledger: ledgerNone},
		{name: "stale token, unsafe: fenced at the intent, tool not invoked", sem: plugins.Unsafe, stale: true,
			wantErr: cluster.ErrStaleToken, ledger: ledgerNone},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			runDispatcherCase(t, clustertest.NewNode(t), "task", tc) // a node each: its only task is the one claimed
		})
	}
}

func runDispatcherCase(t *testing.T, node *cluster.Node, taskID string, tc dispatcherCase) {
	ctx := context.Background()
	apply := func(c cluster.Command) any {
		t.Helper()
		r, err := node.Apply(ctx, c)
		if err != nil {
			t.Fatalf("apply %T: %v", c, err)
		}
		return r
	}
	if tc.manifest == nil {
		tc.manifest = []string{"t"}
	}
	if tc.tool == "" {
		tc.tool = "t"
	}
	if tc.prior == "" {
		tc.prior = ledgerNone
	}
	p := &probe{}
	tools, err := plugins.NewRegistry(p.tool(tc.sem, tc.invoke, tc.rec))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UnixNano()
	ag := apply(&cluster.PutAgent{Agent: cluster.Agent{Name: "agent", Version: "v1", Manifest: cluster.AgentManifest{Tools: tc.manifest}},
		Module: []byte("not run"), Now: now}).(cluster.Agent)
	apply(&cluster.SubmitTask{Task: cluster.Task{ID: taskID, Agent: ag.Name, Version: ag.Version, Input: json.RawMessage(`{}`), Budget: tc.budget}, Now: now})
	claim := claimTask(t, node, taskID)

	params := json.RawMessage(`{"invoice":42}`)
	id := CallID(taskID, tc.tool, params, "", 0)
	for i := range tc.otherCalls {
		other := CallID(taskID, "t", json.RawMessage(fmt.Sprintf(`{"other":%d}`, i)), "", 0)
		apply(&cluster.RecordResult{TaskID: taskID, Token: claim.Lease.Token, CallID: other, Tool: "t",
			Status: abi.StatusOK.String(), Result: json.RawMessage(`null`), Now: now})
	}
	switch tc.prior {
	case ledgerIntent:
		apply(&cluster.RecordIntent{TaskID: taskID, Token: claim.Lease.Token, CallID: id, Tool: tc.tool, Now: now})
	case ledgerResult:
		apply(&cluster.RecordResult{TaskID: taskID, Token: claim.Lease.Token, CallID: id, Tool: tc.tool,
			Status: tc.priorStatus.String(), Result: json.RawMessage(tc.priorBody), Now: now})
	}
	d, err := newLedgerDispatcher(node, tools, claim, ag, time.Now, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if tc.stale {
		// As the leader does once the lease lapses: the task's next claim
		// gets a new token, and this attempt's proposals are refused.
		apply(&cluster.ExpireLease{TaskID: taskID, Token: claim.Lease.Token, Now: now + int64(2*time.Hour)})
		if tk, _ := node.FSM().Task(taskID); tk.State == cluster.StateRunning {
			t.Fatal("the lease did not expire")
		}
	}

	body, err := d.Call(ctx, abi.CallRequest{Tool: tc.tool, Params: params})
	switch {
	case tc.wantErr == nil && err != nil:
		t.Fatalf("Call: %v, want %s", err, tc.wantBody)
	case tc.wantErr == nil && string(body) != tc.wantBody:
		t.Fatalf("Call = %s, want %s", body, tc.wantBody)
	case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
		t.Fatalf("Call = %s, %v; want an error matching %v", body, err, tc.wantErr)
	case tc.wantMsg != "" && err.Error() != tc.wantMsg:
		t.Fatalf("Call error %q, want %q (the status named once)", err, tc.wantMsg)
	}
	if tc.stale && d.fenced == nil {
		t.Error("a stale token did not fence the attempt")
	}

	p.mu.Lock()
	invoked, reconciled := slices.Clone(p.invoked), slices.Clone(p.reconciled)
	p.mu.Unlock()
	if len(invoked) != tc.invoked || len(reconciled) != tc.reconciled {
		t.Errorf("tool invoked %d times and asked to reconcile %d times; want %d and %d", len(invoked), len(reconciled), tc.invoked, tc.reconciled)
	}
	for _, got := range append(invoked, reconciled...) {
		if got != id {
			t.Errorf("tool saw call ID %s, want %s (the call's key, the same in every attempt)", got, id)
		}
	}

	rec, found, err := node.FSM().LedgerRecord(taskID, id)
	if err != nil {
		t.Fatal(err)
	}
	state := ledgerNone
	switch {
	case found && rec.HasResult:
		state = ledgerResult
	case found:
		state = ledgerIntent
	}
	if state != tc.ledger {
		t.Fatalf("ledger after the call: %s (%+v), want %s", state, rec, tc.ledger)
	}
	if state == ledgerResult {
		if rec.Status != tc.ledgerStatus.String() {
			t.Errorf("recorded status %s, want %s", rec.Status, tc.ledgerStatus)
		}
		if tc.ledgerBody != "" && string(rec.Result) != tc.ledgerBody {
			t.Errorf("recorded result %s, want %s", rec.Result, tc.ledgerBody)
		}
	}

	// The attempt's journal: what the cluster holds, and what the
	// dispatcher has yet to flush.
	journal, err := node.FSM().Journal(taskID)
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []CallOutcome
	for _, ev := range append(journal, d.events...) {
		if ev.Type != cluster.EventCall || ev.CallID != id {
			continue
		}
		var cd CallDetail
		if err := json.Unmarshal(ev.Detail, &cd); err != nil {
			t.Fatalf("call event detail %s: %v", ev.Detail, err)
		}
		outcomes = append(outcomes, cd.Outcome)
	}
	if !slices.Equal(outcomes, tc.outcomes) {
		t.Errorf("journaled outcomes %q, want %q", outcomes, tc.outcomes)
	}
}

// claimTask claims taskID, the only task on node.
func claimTask(t *testing.T, node *cluster.Node, taskID string) *cluster.Claim {
	t.Helper()
	r, err := node.Apply(context.Background(), &cluster.ClaimTask{Node: "test", TTL: time.Hour, Now: time.Now().UnixNano()})
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	c, ok := r.(*cluster.Claim)
	if !ok || c == nil || c.Task.ID != taskID {
		t.Fatalf("claim of %s: %+v", taskID, r)
	}
	return c
}

// TestCallDetailJSON: the journal's call detail is written by hand on the
// common path; it must be what json.Marshal writes, escapes and all.
func TestCallDetailJSON(t *testing.T) {
	t.Parallel()
	for _, d := range []CallDetail{
		{Outcome: OutcomeReplayed, Status: "ok", Duration: 12},
		{Outcome: OutcomeInvoked, Duration: 0},
		{Outcome: OutcomeError, Status: "transient", Duration: -1, Reason: "dial tcp 127.0.0.1:9: connection refused"},
		{Outcome: OutcomeError, Status: "tool_error", Duration: 1 << 40, Reason: `bad "quote" \ and <html> & ünïcode` + "\n\x00\u2028"},
		{Outcome: OutcomeDenied, Reason: "\xff invalid"},
	} {
		want, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.json(); string(got) != string(want) {
			t.Errorf("%+v:\n got %s\nwant %s", d, got, want)
		}
	}
}

// TestCallIDGolden: call IDs are stored in every ledger; a change to how
// they are computed would turn recorded calls into new ones. The values
// were computed by the implementation that wrote the first ledgers.
func TestCallIDGolden(t *testing.T) {
	t.Parallel()
	big := []byte(`{"doc":"` + strings.Repeat("y", 2000) + `"}`)
	for _, c := range []struct {
		got, want string
	}{
		{CallID("task-1", "http", []byte(`{"url":"https://a.example"}`), "", 0), "a937872e64223ae28300ecbee28d06b4dea18c474409e9f8d36fa29b83c32e93"},
		{CallID("task-1", "http", []byte(`{"url":"https://a.example"}`), "", 3), "28304f6812d784fffc42642534d59a7878f024875eb029df712a67592ef996b3"},
		{CallID("t", "pay", []byte(`null`), "order-7", 0), "e35d8b9bb62bbf5bcfd25acd6561ad32094ec81f5cb9941177de3787151f7a5c"},
		{CallID("", "", nil, "", 12345), "dbe04369b2f0f8ce342d8eb438fc529d7815115634e837721d3285f3a3a04187"},
		{CallID("task-é", "ocr", big, "", 1), "32f25d29c07ff571176ec5c64fda694a0dcab197b87ae8e88e8e3ff160b30b6f"},
		{fmt.Sprintf("%x", occurrenceKey("call", "http", []byte(`{"a":1}`))), "6aa11d25b3eb7fb0472a4ddd8e5b612a2bac41bcd4c5f23da91b829dce7ba9b3"},
		{fmt.Sprintf("%x", occurrenceKey("emit", "mail", big)), "1d65d6d30ff95a586452ad454bd2b3c05969a5208bdb0c046476b2a360d73f66"},
	} {
		if c.got != c.want {
			t.Errorf("got %s, want %s", c.got, c.want)
		}
	}
}
