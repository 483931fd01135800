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

// DLQWebhookConfig configures the DLQ webhook.
type DLQWebhookConfig struct {
	URL string // absolute http or https URL that receives each DLQNotice
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

// Validate checks the URL and the retry spacing; the one check of a DLQ
// webhook's settings, which the daemon's config uses too.
func (c DLQWebhookConfig) Validate() error {
	if u, err := url.Parse(c.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q: %w", c.URL, ErrBadWebhookURL)
	}
	if c.Policy.Base <= 0 || c.Policy.Cap < c.Policy.Base {
		return fmt.Errorf("want 0 < base (%s) <= cap (%s)", c.Policy.Base, c.Policy.Cap)
	}
	return nil
}

// DLQWebhook POSTs a DLQNotice for each dead letter not yet delivered. It
// watches the replicated state on its own goroutine, never in the FSM's
// apply path. Only the leader sends, so a healthy cluster sends each notice
// once; a leader change may repeat one whose delivery was in flight.
type DLQWebhook struct {
	node   *cluster.Node
	cfg    DLQWebhookConfig
	log    hclog.Logger
	client *http.Client

	delivered map[string]bool
	tries     *backoffs // by notice key
	service
}

// A scan of the DLQ reads every task (the FSM has no cheaper read of the
// dead-letter index yet); these bound how often one runs.
const (
	dlqMinScanInterval = time.Second
	dlqIdleScan        = 5 * time.Second // also notices leadership changes
)

// NewDLQWebhook builds the webhook and reads what was delivered before;
// Start runs it.
func NewDLQWebhook(node *cluster.Node, cfg DLQWebhookConfig) (*DLQWebhook, error) {
	if err := requireDeps("dlq webhook", namedDep{"node", node}); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dlq webhook: %w", err)
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
	w := &DLQWebhook{node: node, cfg: cfg, log: cfg.Logger.Named("dlq_webhook"), client: &http.Client{Timeout: 10 * time.Second},
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
func (w *DLQWebhook) Start(ctx context.Context) error {
	return w.start(ctx, "dlq webhook", w.log, w.run)
}

// Stop ends the webhook and waits for it; a delivery in flight is
// abandoned and tried again by the next pass, here or on the next leader.
func (w *DLQWebhook) Stop() { w.stop() }

func (w *DLQWebhook) run(ctx context.Context) {
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
func (w *DLQWebhook) safePass(ctx context.Context) time.Duration {
	wait := dlqIdleScan
	_ = CatchPanic(w.log, "dlq webhook pass", func() error { wait = w.pass(ctx); return nil })
	return wait
}

// pass delivers what is due and returns how long to wait before the next.
func (w *DLQWebhook) pass(ctx context.Context) time.Duration {
	if !w.node.IsLeader() {
		return dlqIdleScan
	}
	dead, err := w.node.FSM().DeadLetters(cluster.TaskFilter{})
	if err != nil {
		w.log.Error("list dead letters", "error", err)
		return dlqIdleScan
	}
	current := make(map[string]bool, len(dead))
	for _, t := range dead {
		current[noticeKey(t)] = true
	}
	dirty := false
	for k := range w.delivered {
		if !current[k] {
			delete(w.delivered, k) // left the DLQ: forget, so the file stays small
			dirty = true
		}
	}
	w.tries.retain(func(k string) bool { return current[k] })
	wait := dlqIdleScan
	for _, t := range dead { // oldest first
		k := noticeKey(t)
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
		if err := w.deliver(ctx, k, t); err != nil {
			n, at := w.tries.fail(k, now)
			wait = min(wait, at.Sub(now))
			w.log.Warn("deliver dlq notice", "task", t.ID, "attempt", n, "retry_in", at.Sub(now), "error", err)
			continue
		}
		w.log.Info("dlq notice delivered", "task", t.ID, "attempts", w.tries.failures(k)+1)
		w.tries.forget(k)
		w.delivered[k] = true
		dirty = true
	}
	if dirty {
		w.save()
	}
	return max(wait, time.Millisecond)
}

func (w *DLQWebhook) deliver(ctx context.Context, key string, t cluster.Task) error {
	notice := DLQNotice{Event: "task.dead_letter", Key: key, TaskID: t.ID, Agent: t.Agent, Version: t.Version,
		Attempts: t.Attempts, At: time.Unix(0, t.UpdatedAt).UTC(), Node: w.node.ID()}
	if t.Error != nil {
		notice.Class, notice.Message = string(t.Error.Class), t.Error.Message
	}
	body, err := json.Marshal(notice)
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

func (w *DLQWebhook) save() {
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
