package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The cluster port carries two protocols (consul's pattern): a client
// sends one plaintext byte naming which, then speaks TLS. Raft requires a
// verified node certificate; internal HTTP verifies one if given (a
// joining node has none yet) and its handlers decide. Bytes chosen to be
// neither a TLS record type nor a hashicorp/raft RPC type, so a client of
// the wrong kind is closed at once.
const (
	ConnRaft byte = 0xA1
	ConnHTTP byte = 0xA2
)

// handshakeTimeout bounds the first byte and the TLS handshake of one
// inbound connection.
const handshakeTimeout = 5 * time.Second

// maxPendingHandshakes bounds connections being handshaken at once; beyond
// it new ones are closed (a flood costs its own connections, not memory).
const maxPendingHandshakes = 256

// mux accepts on the cluster port, handshakes each connection on its own
// goroutine and hands it to the Raft or the HTTP side.
type mux struct {
	ln       net.Listener
	raftTLS  *tls.Config
	httpTLS  *tls.Config
	log      hclog.Logger
	raft     *muxListener
	http     *muxListener
	pending  chan struct{}
	closed   chan struct{}
	closeErr error
	once     sync.Once
	wg       sync.WaitGroup
}

// newMux serves ln; p nil (the plaintext benchmarks only) skips TLS.
func newMux(ln net.Listener, p *PKI, log hclog.Logger) *mux {
	m := &mux{ln: ln, log: log.Named("mux"), pending: make(chan struct{}, maxPendingHandshakes), closed: make(chan struct{})}
	if p != nil {
		m.raftTLS, m.httpTLS = p.ServerTLS(tls.RequireAndVerifyClientCert), p.ServerTLS(tls.VerifyClientCertIfGiven)
	}
	m.raft = &muxListener{m: m, conns: make(chan net.Conn), done: make(chan struct{}), ownsPort: true}
	m.http = &muxListener{m: m, conns: make(chan net.Conn), done: make(chan struct{})}
	m.wg.Add(1)
	go m.accept()
	return m
}

func (m *mux) accept() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			m.log.Error("cluster port accept", "error", err)
			m.Close()
			return
		}
		select {
		case m.pending <- struct{}{}:
		default:
			m.log.Warn("too many connections in handshake; closing one", "remote", c.RemoteAddr().String())
			c.Close()
			continue
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			defer func() { <-m.pending }()
			m.handshake(c)
		}()
	}
}

// handshake reads the protocol byte, completes TLS and delivers the
// connection, or closes it.
func (m *mux) handshake(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	var b [1]byte
	if _, err := c.Read(b[:]); err != nil {
		c.Close()
		return
	}
	var cfg *tls.Config
	var to *muxListener
	switch b[0] {
	case ConnRaft:
		cfg, to = m.raftTLS, m.raft
	case ConnHTTP:
		cfg, to = m.httpTLS, m.http
	default:
		m.log.Warn("refused a connection: unknown protocol byte", "remote", c.RemoteAddr().String(), "byte", fmt.Sprintf("0x%02x", b[0]))
		c.Close()
		return
	}
	if cfg == nil { // plaintext benchmarks
		_ = c.SetDeadline(time.Time{})
		select {
		case to.conns <- c:
		case <-to.done:
			c.Close()
		case <-m.closed:
			c.Close()
		}
		return
	}
	tc := tls.Server(c, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		m.log.Warn("refused a connection: TLS handshake", "remote", c.RemoteAddr().String(), "error", err)
		c.Close()
		return
	}
	_ = c.SetDeadline(time.Time{})
	select {
	case to.conns <- tc:
	case <-to.done:
		tc.Close()
	case <-m.closed:
		tc.Close()
	}
}

// Close stops accepting; connections already delivered stay open.
func (m *mux) Close() error {
	m.once.Do(func() {
		close(m.closed)
		m.closeErr = m.ln.Close()
	})
	return m.closeErr
}

// muxListener is one side of the mux as a net.Listener. Closing the Raft
// side (the transport, when the node closes) closes the port; closing the
// HTTP side only stops handing it connections.
type muxListener struct {
	m        *mux
	conns    chan net.Conn
	done     chan struct{}
	once     sync.Once
	ownsPort bool
}

func (l *muxListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-l.m.closed:
		return nil, net.ErrClosed
	}
}

func (l *muxListener) Close() error {
	l.once.Do(func() { close(l.done) })
	if l.ownsPort {
		return l.m.Close()
	}
	return nil
}
func (l *muxListener) Addr() net.Addr { return l.m.ln.Addr() }

// DialFunc opens a TCP connection to a cluster address.
type DialFunc func(ctx context.Context, addr string) (net.Conn, error)

// DialCluster opens a connection of kind (ConnRaft or ConnHTTP) to a
// node's cluster port and completes the TLS handshake with cfg.
func DialCluster(ctx context.Context, dial DialFunc, addr string, kind byte, cfg *tls.Config) (*tls.Conn, error) {
	c, err := dialKind(ctx, dial, addr, kind)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, &HandshakeError{Addr: addr, Err: err}
	}
	_ = c.SetDeadline(time.Time{})
	return tc, nil
}

// dialKind connects and sends the protocol byte.
func dialKind(ctx context.Context, dial DialFunc, addr string, kind byte) (net.Conn, error) {
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	c, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := c.Write([]byte{kind}); err != nil {
		c.Close()
		return nil, fmt.Errorf("cluster port %s: %w", addr, err)
	}
	return c, nil
}

// DialInternal opens a connection to the internal HTTP side of the node at
// addr, as this node: mTLS with its certificate.
func (n *Node) DialInternal(ctx context.Context, dial DialFunc, addr string) (net.Conn, error) {
	if n.cfg.plaintext {
		c, err := dialKind(ctx, dial, addr, ConnHTTP)
		if err == nil {
			_ = c.SetDeadline(time.Time{})
		}
		return c, err
	}
	return DialCluster(ctx, dial, addr, ConnHTTP, n.cfg.PKI.ClientTLS())
}

// VerifiedPeer returns the node ID of an internal request's peer, verified
// against the cluster CA, or false.
func (n *Node) VerifiedPeer(cs *tls.ConnectionState) (string, bool) {
	if n.cfg.plaintext {
		return "", true // the plaintext benchmarks: no certificates to check
	}
	return PeerNodeID(cs)
}

// HandshakeError is a TLS handshake with a cluster port that failed: the
// connection was made, so the peer is there, but it is not (or does not
// take us for) a node of this cluster.
type HandshakeError struct {
	Addr string
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.Addr, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }
