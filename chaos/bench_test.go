package chaos_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/orloj/orloj/cluster"
	"github.com/orloj/orloj/daemon"
)

// BenchmarkCluster6Calls: the six-call workload (sixcalls against a local
// service that answers at once) on one node and on three, every node in
// this process and on the same cores. "seq" runs one task at a time (p50 is
// the latency figure); "par64" keeps 64 in flight (tasks/s is throughput).
// Followers' workers claim and record through the leader, over mTLS on the
// cluster port. Built with -tags orloj_bench_plaintext, each case runs a
// second time with TLS off ("seq-plaintext", "par64-plaintext"), so one run
// shows what mTLS costs.
func BenchmarkCluster6Calls(b *testing.B) {
	agent := buildAgent(b)
	srv := instantService(b)
	transports := []string{""}
	if plaintext != nil {
		transports = append(transports, "-plaintext")
	}
	for _, nodes := range []int{1, 3} {
		for _, mode := range []string{"seq", "par64"} {
			for _, tr := range transports {
				b.Run(fmt.Sprintf("nodes=%d/%s%s", nodes, mode, tr), func(b *testing.B) {
					c := startCluster(b, nodes, agent, tr != "")
					// Tasks at once, so every node loads the module before the
					// clock starts.
					var warm sync.WaitGroup
					for n := range 8 * nodes {
						warm.Go(func() { c.run(b, srv, int64(-1-n)) })
					}
					warm.Wait()
					clients := 1
					if mode == "par64" {
						clients = 64
					}
					var next atomic.Int64
					lat := make([][]time.Duration, clients)
					var wg sync.WaitGroup
					first := c.leader.Raft().LastIndex()
					b.ResetTimer()
					start := time.Now()
					for k := range clients {
						wg.Add(1)
						go func() {
							defer wg.Done()
							for n := next.Add(1); n <= int64(b.N) && !b.Failed(); n = next.Add(1) {
								lat[k] = append(lat[k], c.run(b, srv, n))
							}
						}()
					}
					wg.Wait()
					elapsed := time.Since(start)
					b.StopTimer()
					all := slices.Concat(lat...)
					slices.Sort(all)
					if len(all) > 0 {
						b.ReportMetric(float64(len(all))/elapsed.Seconds(), "tasks/s")
						b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50-ms")
						b.ReportMetric(float64(c.leader.Raft().LastIndex()-first)/float64(len(all)), "raft-entries/task")
					}
				})
			}
		}
	}
}

// issueCert installs a certificate for nodeID from ca's CA in dir.
func issueCert(b *testing.B, ca *cluster.PKI, dir, nodeID string) {
	csr, key, err := cluster.NewCSR(nodeID)
	if err != nil {
		b.Fatal(err)
	}
	cert, err := ca.Sign(csr, nodeID, []string{"127.0.0.1"})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := cluster.InstallPKI(dir, cert, key, ca.CAPEM(), ca.CAKeyPEM(), ca.JoinToken().String()); err != nil {
		b.Fatal(err)
	}
}

// plaintext turns a daemon's mTLS off; set only by plaintext_bench_test.go
// (build tag orloj_bench_plaintext).
var plaintext func(*daemon.Config)

type benchCluster struct {
	daemons []*daemon.Daemon
	leader  *cluster.Node
}

func buildAgent(b *testing.B) []byte {
	out := filepath.Join(b.TempDir(), "sixcalls.wasm")
	cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/sixcalls")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build agent: %v\n%s", err, o)
	}
	m, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	return m
}

func instantService(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func startCluster(b *testing.B, n int, module []byte, plain bool) *benchCluster {
	b.Helper()
	c := &benchCluster{}
	// Off: shutdown chatter (peers gone) would interleave with the result lines.
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Off, Output: os.Stderr})
	// One compile cache for every cluster the benchmark starts (and for
	// later runs): a cold compile takes most of a second and would be timed.
	cache := filepath.Join(os.TempDir(), "orloj-bench-compile-cache")
	for i := range n {
		cfg := daemon.DefaultConfig()
		cfg.NodeID, cfg.DataDir, cfg.CacheDir = fmt.Sprintf("n%d", i+1), b.TempDir(), cache
		cfg.APIAddr, cfg.RaftAddr = "127.0.0.1:0", freePort(b)
		cfg.Token, cfg.HTTPAllow, cfg.Logger = "bench", []string{"127.0.0.1"}, log
		if plain {
			plaintext(&cfg)
			if i > 0 {
				// Enrollment is TLS by design; a plaintext node gets its
				// certificate here instead.
				issueCert(b, c.daemons[0].Node().PKI(), cfg.DataDir, cfg.NodeID)
			}
		}
		if i > 0 {
			first := c.daemons[0].Node()
			cfg.Join, cfg.JoinToken = first.RaftAddr(), first.PKI().JoinToken().String()
		}
		d, err := daemon.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if err := d.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { d.Stop(0) })
		c.daemons = append(c.daemons, d)
		if i == 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := d.Node().WaitLeader(ctx)
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			c.leader = d.Node()
			ag := cluster.Agent{Name: "sixcalls", Version: "v1", Manifest: cluster.AgentManifest{Tools: []string{"http"}}}
			if _, err := cluster.ProposeAgent(context.Background(), c.leader, ag, module, time.Now().UnixNano()); err != nil {
				b.Fatal(err)
			}
		}
	}
	// Every node a voter and caught up before the clock starts.
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := c.leader.Raft().GetConfiguration()
		voters := 0
		if f.Error() == nil {
			for _, s := range f.Configuration().Servers {
				if s.Suffrage == raft.Voter {
					voters++
				}
			}
		}
		if voters == n {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d voters after 30s", voters, n)
		}
		time.Sleep(20 * time.Millisecond) // membership changes come with no event to wait on
	}
	return c
}

// run submits one task on the leader and waits, on the leader's replica,
// until it succeeded.
func (c *benchCluster) run(b *testing.B, url string, n int64) time.Duration {
	id := fmt.Sprintf("b-%09d", n)
	in, _ := json.Marshal(map[string]string{"url": url, "job": id})
	t0 := time.Now()
	if _, err := c.leader.Apply(context.Background(), &cluster.SubmitTask{Task: cluster.Task{ID: id, Agent: "sixcalls", Version: "v1", Input: in}, Now: t0.UnixNano()}); err != nil {
		b.Error(err)
		return 0
	}
	fsm := c.leader.FSM()
	timeout := time.After(30 * time.Second)
	for {
		ch := fsm.Changed()
		t, err := fsm.Task(id)
		if err == nil && t.State.Final() {
			if t.State != cluster.StateSucceeded {
				b.Errorf("task %s: %s", id, t.State)
			}
			return time.Since(t0)
		}
		select {
		case <-ch:
		case <-timeout:
			b.Errorf("task %s not final after 30s", id)
			return 0
		}
	}
}
