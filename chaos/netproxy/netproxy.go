// Package netproxy owns a loopback-only TCP proxy that fault-injection tests
// place between two processes to simulate network partitions. It listens and
// dials on 127.0.0.1 only, so a test can never reach past the local machine.
package netproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

const loopback = "127.0.0.1"

// dialTimeout bounds a dial to the target; on loopback a refusal is instant,
// so this only matters if the target's accept backlog is full.
const dialTimeout = 5 * time.Second

// Stats counts connections seen by a Proxy.
type Stats struct {
	Accepted   int // connections accepted on Addr
	Forwarded  int // connections joined to the target
	Blackholed int // connections accepted while cut and held open
	Dropped    int // connections closed by Cut, Heal or a refused target dial
}

// Proxy forwards every connection accepted on its loopback address to Target.
type Proxy struct {
	ln     net.Listener
	target string
	ctx    context.Context // cancelled by Close to abort in-flight dials
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	cut    bool
	closed bool
	gen    uint64                // bumped by Cut so in-flight dials know they are stale
	pairs  map[*pair]struct{}    // forwarded connections
	held   map[net.Conn]struct{} // blackholed connections
	stats  Stats
}

type pair struct{ client, server net.Conn }

func (c *pair) close() {
	c.client.Close()
	c.server.Close()
}

// Start listens on 127.0.0.1:0 and forwards to target, which must be a
// 127.0.0.1 (or localhost) address.
func Start(target string) (*Proxy, error) {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return nil, fmt.Errorf("netproxy: target %q: %w", target, err)
	}
	if host != loopback && host != "localhost" {
		return nil, fmt.Errorf("netproxy: target %q is not on %s", target, loopback)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(loopback, "0"))
	if err != nil {
		return nil, fmt.Errorf("netproxy: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		ln:     ln,
		target: net.JoinHostPort(loopback, port),
		ctx:    ctx,
		cancel: cancel,
		pairs:  make(map[*pair]struct{}),
		held:   make(map[net.Conn]struct{}),
	}
	p.wg.Add(1)
	go p.acceptLoop()
	return p, nil
}

// Addr is the "127.0.0.1:PORT" address clients should dial.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Target is the address connections are forwarded to.
func (p *Proxy) Target() string { return p.target }

// IsCut reports whether the proxy is partitioned.
func (p *Proxy) IsCut() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cut
}

// Stats returns a snapshot of the connection counters.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Cut partitions the proxy: open connections are dropped now, and new ones
// are accepted but blackholed, so peers see timeouts as in a real partition.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.gen++
	for c := range p.pairs {
		c.close()
		delete(p.pairs, c)
		p.stats.Dropped++
	}
}

// Heal resumes forwarding. Connections held while cut are closed so that
// clients redial instead of waiting on a stream that lost its bytes.
func (p *Proxy) Heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	for c := range p.held {
		c.Close()
		delete(p.held, c)
		p.stats.Dropped++
	}
}

// Close stops listening, closes all connections and waits for every
// goroutine the proxy started. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	err := p.ln.Close()
	p.cancel()
	for c := range p.pairs {
		c.close()
		delete(p.pairs, c)
	}
	for c := range p.held {
		c.Close()
		delete(p.held, c)
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) acceptLoop() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // transient (e.g. EMFILE); the listener is still usable
		}
		p.mu.Lock()
		switch {
		case p.closed:
			c.Close()
		case p.cut:
			p.stats.Accepted++
			p.stats.Blackholed++
			p.held[c] = struct{}{}
			p.wg.Add(1)
			go p.blackhole(c)
		default:
			p.stats.Accepted++
			p.wg.Add(1)
			go p.forward(c, p.gen)
		}
		p.mu.Unlock()
	}
}

// blackhole reads and discards until the conn is closed by Heal, Close or
// the client, so the client's writes never stall on a full window.
func (p *Proxy) blackhole(c net.Conn) {
	defer p.wg.Done()
	io.Copy(io.Discard, c)
	c.Close()
	p.mu.Lock()
	delete(p.held, c)
	p.mu.Unlock()
}

func (p *Proxy) forward(client net.Conn, gen uint64) {
	defer p.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(p.ctx, "tcp", p.target)
	if err != nil {
		client.Close()
		p.mu.Lock()
		p.stats.Dropped++
		p.mu.Unlock()
		return
	}
	c := &pair{client: client, server: server}
	p.mu.Lock()
	if p.closed || p.gen != gen { // cut or closed while dialing
		p.stats.Dropped++
		p.mu.Unlock()
		c.close()
		return
	}
	p.pairs[c] = struct{}{}
	p.stats.Forwarded++
	p.mu.Unlock()

	done := make(chan struct{})
	go func() {
		pipe(server, client)
		close(done)
	}()
	pipe(client, server)
	<-done
	c.close()
	p.mu.Lock()
	delete(p.pairs, c)
	p.mu.Unlock()
}

// pipe copies src to dst. On a clean EOF it half-closes dst so the peer
// sees the FIN while the other direction keeps flowing; on any error it
// closes both, as the stream is broken in both directions.
func pipe(dst, src net.Conn) {
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		src.Close()
		return
	}
	if tc, ok := dst.(*net.TCPConn); ok {
		tc.CloseWrite()
	}
}
