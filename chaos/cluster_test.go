package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/orloj/orloj/chaos/netproxy"
	"github.com/orloj/orloj/host/api"
)

// proc is one orlojd process and the proxies that carry its outbound
// traffic to each peer.
type proc struct {
	id, dir, api, raft string
	history            string
	logPath            string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped bool // SIGSTOPped
}

// harness runs the processes of one cluster.
type harness struct {
	t     *testing.T
	bin   string
	token string
	ttl   time.Duration
	// heartbeat, if set, is passed as both Raft timeouts.
	heartbeat time.Duration
	procs     []*proc
	client    *http.Client
	// raftProxy[i][j] carries i's traffic to j's cluster port: Raft and,
	// on the same port, forwarding, joins and member queries.
	raftProxy [][]*netproxy.Proxy
}

func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func newHarness(t *testing.T, bin string, n int, ttl time.Duration) *harness {
	h := &harness{t: t, bin: bin, token: fmt.Sprintf("chaos-%d", time.Now().UnixNano()), ttl: ttl,
		client: &http.Client{Timeout: 10 * time.Second}}
	base := t.TempDir()
	for i := range n {
		id := fmt.Sprintf("n%d", i+1)
		dir := filepath.Join(base, id)
		h.procs = append(h.procs, &proc{id: id, dir: dir, api: freePort(t), raft: freePort(t),
			history: filepath.Join(base, id+".history.jsonl"), logPath: filepath.Join(base, id+".log")})
	}
	h.raftProxy = make([][]*netproxy.Proxy, n)
	for i := range n {
		h.raftProxy[i] = make([]*netproxy.Proxy, n)
		for j := range n {
			if i == j {
				continue
			}
			var err error
			if h.raftProxy[i][j], err = netproxy.Start(h.procs[j].raft); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Cleanup(h.close)
	return h
}

func (h *harness) close() {
	for _, p := range h.procs {
		p.mu.Lock()
		if p.cmd != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
		}
		p.mu.Unlock()
		if p.exited != nil {
			<-p.exited
		}
	}
	for i := range h.raftProxy {
		for j := range h.raftProxy[i] {
			if h.raftProxy[i][j] != nil {
				h.raftProxy[i][j].Close()
			}
		}
	}
	if h.t.Failed() {
		for _, p := range h.procs {
			b, _ := os.ReadFile(p.logPath)
			lines := strings.Split(string(b), "\n")
			h.t.Logf("--- %s log (last 40 lines) ---\n%s", p.id, strings.Join(lines[max(0, len(lines)-40):], "\n"))
		}
	}
}

// start runs node i; join names a member's cluster address to join through
// ("" for the bootstrap node). A first join presents the join token node 0
// wrote; secrets go in the environment, not on the command line.
func (h *harness) start(i int, join string) {
	h.t.Helper()
	p := h.procs[i]
	var dialMap []string
	for j, q := range h.procs {
		if j != i {
			dialMap = append(dialMap, q.raft+"="+h.raftProxy[i][j].Addr())
		}
	}
	args := []string{"serve", "--node-id", p.id, "--data-dir", p.dir, "--api-addr", p.api, "--raft-addr", p.raft,
		"--lease-ttl", h.ttl.String(), "--workers", "8", "--http-allow", "127.0.0.1",
		"--dial-map", strings.Join(dialMap, ","), "--history-file", p.history, "--log-level", "info", "--drain-grace", "0s"}
	if join != "" {
		args = append(args, "--join", join)
	}
	if h.heartbeat > 0 {
		args = append(args, "--raft-heartbeat", h.heartbeat.String(), "--raft-election", h.heartbeat.String())
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		h.t.Fatal(err)
	}
	cmd := exec.Command(h.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "ORLOJ_TOKEN="+h.token)
	if join != "" {
		cmd.Env = append(cmd.Env, "ORLOJ_JOIN_TOKEN_FILE="+filepath.Join(h.procs[0].dir, "join-token"))
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		h.t.Fatalf("start %s: %v", p.id, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(exited) }()
	p.mu.Lock()
	p.cmd, p.exited, p.stopped = cmd, exited, false
	p.mu.Unlock()
}

// form starts node 0, runs setup once it leads, then joins the others and
// waits until all are voters.
func (h *harness) form(ctx context.Context, setup func()) {
	h.t.Helper()
	h.start(0, "")
	await(h.t, 30*time.Second, "n1 to lead", func() bool { return h.leader(ctx) == 0 })
	setup()
	for i := 1; i < len(h.procs); i++ {
		h.start(i, h.procs[0].raft)
	}
	await(h.t, 60*time.Second, "every node to join as a voter", func() bool {
		var ms []api.MemberView
		if _, err := h.call(ctx, 0, "GET", "/v1/cluster/members", nil, &ms); err != nil {
			return false
		}
		voters := 0
		for _, m := range ms {
			if m.Suffrage == "voter" && m.AppliedIndex != nil && m.LastContact != nil {
				voters++
			}
		}
		return voters == len(h.procs)
	})
}

// restart starts node i again on its data, joining through a neighbour.
func (h *harness) restart(i int) {
	if i == 0 {
		h.start(0, "")
		return
	}
	h.start(i, h.procs[(i+1)%len(h.procs)].raft)
}

func (h *harness) alive(i int) bool {
	p := h.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited == nil {
		return false
	}
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

func (h *harness) kill(i int) {
	p := h.procs[i]
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	_ = cmd.Process.Kill()
	<-exited
}

func (h *harness) signal(i int, sig syscall.Signal) {
	p := h.procs[i]
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.cmd.Process.Signal(sig)
	p.stopped = sig == syscall.SIGSTOP
}

// partition cuts (or heals) every link into and out of node i.
func (h *harness) partition(i int, cut bool) {
	for j := range h.procs {
		if j == i {
			continue
		}
		for _, p := range []*netproxy.Proxy{h.raftProxy[i][j], h.raftProxy[j][i]} {
			if cut {
				p.Cut()
			} else {
				p.Heal()
			}
		}
	}
}

// call sends a request to node i's API and decodes a 2xx answer into out.
func (h *harness) call(ctx context.Context, i int, method, path string, body, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+h.procs[i].api+path, rd)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+h.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, err
	}
	if resp.StatusCode/100 != 2 {
		return resp.StatusCode, fmt.Errorf("%s %s on %s: %d %s", method, path, h.procs[i].id, resp.StatusCode, bytes.TrimSpace(raw))
	}
	if out != nil {
		return resp.StatusCode, json.Unmarshal(raw, out)
	}
	return resp.StatusCode, nil
}

// leader returns the index of the node that leads, or -1: of the nodes
// that say they lead (a deposed leader may not know yet), the one with the
// highest term.
func (h *harness) leader(ctx context.Context) int {
	best, bestTerm := -1, uint64(0)
	for i, self := range h.selves(ctx) {
		if self.Role == "leader" && self.Term >= bestTerm {
			best, bestTerm = i, self.Term
		}
	}
	return best
}

// maxTerm is the highest Raft term a live node reports.
func (h *harness) maxTerm(ctx context.Context) uint64 {
	var top uint64
	for _, self := range h.selves(ctx) {
		top = max(top, self.Term)
	}
	return top
}

// selves asks every live, running node about itself.
func (h *harness) selves(ctx context.Context) map[int]api.MemberView {
	out := map[int]api.MemberView{}
	for i := range h.procs {
		if !h.alive(i) || h.procs[i].stopped {
			continue
		}
		var m api.MemberView
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := h.call(cctx, i, "GET", "/v1/cluster/self", nil, &m)
		cancel()
		if err == nil {
			out[i] = m
		}
	}
	return out
}

// await polls cond until it holds or the deadline passes: the processes
// report over HTTP, so there is no event to wait on.
func await(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
