package cluster

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's stream layer over the cluster port: every
// connection is mTLS against the cluster CA (see mux.go), dialed through a
// replaceable dialer so fault tests can route each node's outbound
// connections through proxies they cut.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(addr string, timeout time.Duration) (net.Conn, error)
	tls       *PKI // nil only in the package's own plaintext benchmarks
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	if s.tls == nil { // plaintext benchmarks
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		c, err := dialKind(ctx, func(_ context.Context, a string) (net.Conn, error) { return s.dial(a, timeout) }, string(addr), ConnRaft)
		if err == nil {
			_ = c.SetDeadline(time.Time{})
		}
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return DialCluster(ctx, func(ctx context.Context, a string) (net.Conn, error) {
		return s.dial(a, time.Until(deadlineOf(ctx, timeout)))
	}, string(addr), ConnRaft, s.tls.ClientTLS())
}

func deadlineOf(ctx context.Context, d time.Duration) time.Time {
	if dl, ok := ctx.Deadline(); ok {
		return dl
	}
	return time.Now().Add(d)
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

// newTransport binds the cluster port, multiplexed: Raft over mTLS, and
// an internal HTTP side the returned mux serves. Only the plaintext
// benchmarks leave TLS out.
func newTransport(cfg Config) (*raft.NetworkTransport, *mux, error) {
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("resolve raft address: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
	}
	if addr.Port == 0 {
		addr = ln.Addr().(*net.TCPAddr)
	}
	dial := cfg.Dial
	if dial == nil {
		dial = func(a string, timeout time.Duration) (net.Conn, error) {
			return net.DialTimeout("tcp", a, timeout)
		}
	}
	stream := &streamLayer{advertise: addr, dial: dial, tls: cfg.PKI}
	if cfg.plaintext {
		stream.tls = nil
	}
	m := newMux(ln, stream.tls, cfg.Logger)
	stream.Listener = m.raft
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  cfg.Logger.Named("transport"),
	}), m, nil
}

// transport is what a node needs from its Raft transport: a TCP
// NetworkTransport (newTransport), or raft's InmemTransport for in-memory
// nodes (OpenInMemory). Close releases it; raft.Shutdown does not.
type transport interface {
	raft.Transport
	Close() error
}
