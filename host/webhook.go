package host

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/orloj/orloj/cluster"
)

// DLQNotice is the JSON body the DLQ webhook receives, once per entry of a
// task into the dead-letter queue. Key is stable across retries and leader
// changes (it is also sent as the Idempotency-Key header): delivery is at
// least once, so receivers dedupe on it.
type DLQNotice struct {
	Event    string    `json:"event"` // "task.dead_letter"
	Key      string    `json:"key"`
	TaskID   string    `json:"task_id"`
	Agent    string    `json:"agent"`
	Version  string    `json:"version"`
	Class    string    `json:"class"`
	Message  string    `json:"message"`
	Attempts int       `json:"attempts"`
	At       time.Time `json:"at"`   // when the task entered the DLQ
	Node     string    `json:"node"` // the node that sent the notice
}

// ApprovalNotice is the JSON body the approval webhook receives, once per
// call that waits for a person's approval, so one is paged. Key is the
// approval's ID (the call's), also sent as the Idempotency-Key header:
// delivery is at least once.
type ApprovalNotice struct {
	Event   string          `json:"event"` // "approval.requested"
	Key     string          `json:"key"`
	TaskID  string          `json:"task_id"`
	Agent   string          `json:"agent"`
	Version string          `json:"version"`
	Tool    string          `json:"tool"`
	Params  json.RawMessage `json:"params"`
	At      time.Time       `json:"at"`   // when the call began to wait
	Node    string          `json:"node"` // the node that sent the notice
}

// WebhookConfig configures a webhook (the DLQ's, the approvals').
type WebhookConfig struct {
	URL string // absolute http or https URL that receives each notice
	// Policy spaces the tries of a notice whose delivery failed (capped
	// exponential backoff with full jitter; MaxAttempts is not used).
	Policy cluster.RetryPolicy
	// StateFile remembers which notices were delivered, so a restart does
	// not repeat them. "" remembers in memory only.
	StateFile string
	Clock     func() time.Time // nil: time.Now
	Jitter    func() uint64    // nil: uniform random
	Logger    hclog.Logger
}

// ErrBadWebhookURL is a DLQ webhook URL that is not absolute http(s).
var ErrBadWebhookURL = errors.New("not an absolute http or https URL")

// Validate checks the URL and the retry spacing; the one check of a
// webhook's settings, which the daemon's config uses too.
func (c WebhookConfig) Validate() error {
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: %w", c.URL, ErrBadWebhookURL)
	}
	if c.Policy.Base <= 0 || c.Policy.Cap < c.Policy.Base {
		return fmt.Errorf("want 0 < base (%s) <= cap (%s)", c.Policy.Base, c.Policy.Cap)
	}
	return nil
}

// Webhook POSTs a notice for each item of its source not yet delivered: a
// DLQNotice per dead letter (NewDLQWebhook), an ApprovalNotice per pending
// approval (NewApprovalWebhook). It watches the replicated state on its own
// goroutine, never in the FSM's apply path. Only the leader sends, so a
// healthy cluster sends each notice once; a leader change may repeat one
// whose delivery was in flight.
type Webhook struct {
	node   *cluster.Node
	cfg    WebhookConfig
	name   string
	source func(*cluster.FSM, string) ([]notice, error)
	log    hclog.Logger
	client *http.Client

	delivered map[string]bool
	tries     *backoffs // by notice key
	service
}

// notice is one delivery: its stable key, the task it is about (for the
// log), and its JSON body.
type notice struct {
	key, task string
	body      any
}

// A scan of the DLQ reads every task (the FSM has no cheaper read of the
// dead-letter index yet); these bound how often one runs.
const (
	dlqMinScanInterval = time.Second
	dlqIdleScan        = 5 * time.Second // also notices leadership changes
)

// NewDLQWebhook builds the DLQ's webhook and reads what was delivered
// before; Start runs it.
func NewDLQWebhook(node *cluster.Node, cfg WebhookConfig) (*Webhook, error) {
	return newWebhook(node, cfg, "dlq webhook", dlqNotices)
}

// NewApprovalWebhook builds the webhook that pages a person for each call
// waiting for approval.
func NewApprovalWebhook(node *cluster.Node, cfg WebhookConfig) (*Webhook, error) {
	return newWebhook(node, cfg, "approval webhook", approvalNotices)
}

func newWebhook(node *cluster.Node, cfg WebhookConfig, name string, source func(*cluster.FSM, string) ([]notice, error)) (*Webhook, error) {
	if err := requireDeps(name, namedDep{"node", node}); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if cfg.Policy.Factor < 1 {
		cfg.Policy.Factor = 2
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Jitter == nil {
		cfg.Jitter = rand.Uint64
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	w := &Webhook{node: node, cfg: cfg, name: name, source: source, log: cfg.Logger.Named(strings.ReplaceAll(name, " ", "_")), client: &http.Client{Timeout: 10 * time.Second},
		delivered: map[string]bool{}, tries: newBackoffs(cfg.Policy, cfg.Jitter)}
	if cfg.StateFile != "" {
		var keys []string
		b, err := os.ReadFile(cfg.StateFile)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &keys); err != nil {
				w.log.Warn("unreadable delivered-notices file; notices may repeat", "path", cfg.StateFile, "error", err)
			}
		case !errors.Is(err, os.ErrNotExist):
			w.log.Warn("read delivered-notices file; notices may repeat", "path", cfg.StateFile, "error", err)
		}
		for _, k := range keys {
			w.delivered[k] = true
		}
	}
	return w, nil
}

// Start delivers notices until Stop or until ctx ends.
func (w *Webhook) Start(ctx context.Context) error {
	return w.start(ctx, w.name, w.log, w.run)
}

// Stop ends the webhook and waits for it; a delivery in flight is
// abandoned and tried again by the next pass, here or on the next leader.
func (w *Webhook) Stop() { w.stop() }

func (w *Webhook) run(ctx context.Context) {
	for {
		changed := w.node.FSM().Changed()
		wait := w.safePass(ctx)
		scanned := time.Now()
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
			continue // a retry fell due
		case <-changed:
		}
		t.Stop()
		// The log changes on every applied batch: coalesce them, so a busy
		// cluster costs one scan per interval.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(scanned.Add(dlqMinScanInterval))):
		}
	}
}

// noticeKey names one entry of a task into the DLQ: a task retried and dead
// again gets a new notice.
func noticeKey(t cluster.Task) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d", t.ID, t.UpdatedAt)))
	return hex.EncodeToString(sum[:16])
}

// safePass is pass, with a panic logged and waited out like an idle scan.
func (w *Webhook) safePass(ctx context.Context) time.Duration {
	wait := dlqIdleScan
	_ = CatchPanic(w.log, w.name+" pass", func() error { wait = w.pass(ctx); return nil })
	return wait
}

// dlqNotices is a DLQNotice per dead letter, oldest first.
func dlqNotices(f *cluster.FSM, node string) ([]notice, error) {
	dead, err := f.DeadLetters(cluster.TaskFilter{})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	out := make([]notice, 0, len(dead))
	for _, t := range dead {
		k := noticeKey(t)
		n := DLQNotice{Event: "task.dead_letter", Key: k, TaskID: t.ID, Agent: t.Agent, Version: t.Version,
			Attempts: t.Attempts, At: time.Unix(0, t.UpdatedAt).UTC(), Node: node}
		if t.Error != nil {
			n.Class, n.Message = string(t.Error.Class), t.Error.Message
		}
		out = append(out, notice{key: k, task: t.ID, body: n})
	}
	return out, nil
}

// approvalNotices is an ApprovalNotice per pending approval, oldest first.
func approvalNotices(f *cluster.FSM, node string) ([]notice, error) {
	pending, err := f.Approvals(false)
	if err != nil {
		return nil, fmt.Errorf("list approvals: %w", err)
	}
	out := make([]notice, 0, len(pending))
	for _, a := range pending {
		out = append(out, notice{key: a.CallID, task: a.TaskID, body: ApprovalNotice{Event: "approval.requested", Key: a.CallID,
			TaskID: a.TaskID, Agent: a.Agent, Version: a.Version, Tool: a.Tool, Params: a.Params,
			At: time.Unix(0, a.RequestedAt).UTC(), Node: node}})
	}
	return out, nil
}

// pass delivers what is due and returns how long to wait before the next.
func (w *Webhook) pass(ctx context.Context) time.Duration {
	if !w.node.IsLeader() {
		return dlqIdleScan
	}
	items, err := w.source(w.node.FSM(), w.node.ID())
	if err != nil {
		w.log.Error("list notices", "error", err)
		return dlqIdleScan
	}
	current := make(map[string]bool, len(items))
	for _, it := range items {
		current[it.key] = true
	}
	dirty := false
	for k := range w.delivered {
		if !current[k] {
			delete(w.delivered, k) // gone from the source: forget, so the file stays small
			dirty = true
		}
	}
	w.tries.retain(func(k string) bool { return current[k] })
	wait := dlqIdleScan
	for _, it := range items { // oldest first
		k := it.key
		if w.delivered[k] {
			continue
		}
		now := w.cfg.Clock()
		if at, ok := w.tries.ready(k, now); !ok {
			wait = min(wait, at.Sub(now))
			continue
		}
		if ctx.Err() != nil || !w.node.IsLeader() {
			break
		}
		if err := w.deliver(ctx, k, it.body); err != nil {
			n, at := w.tries.fail(k, now)
			wait = min(wait, at.Sub(now))
			w.log.Warn("deliver notice", "task", it.task, "attempt", n, "retry_in", at.Sub(now), "error", err)
			continue
		}
		w.log.Info("notice delivered", "task", it.task, "attempts", w.tries.failures(k)+1)
		w.tries.forget(k)
		w.delivered[k] = true
		dirty = true
	}
	if dirty {
		w.save()
	}
	return max(wait, time.Millisecond)
}

func (w *Webhook) deliver(ctx context.Context, key string, n any) error {
	body, err := json.Marshal(n)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("User-Agent", "orlojd")
	resp, err := w.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

func (w *Webhook) save() {
	if w.cfg.StateFile == "" {
		return
	}
	keys := make([]string, 0, len(w.delivered))
	for k := range w.delivered {
		keys = append(keys, k)
	}
	b, _ := json.Marshal(keys)
	if err := cluster.WriteFileAtomic(w.cfg.StateFile, b, 0o600); err != nil {
		w.log.Warn("save delivered notices; they may repeat after a restart", "error", err)
	}
}
