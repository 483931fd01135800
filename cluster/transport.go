package cluster

import (
	"fmt"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// streamLayer is raft's TCP stream layer with a replaceable dialer, so fault
// tests can route each node's outbound Raft connections through proxies they
// cut. Without Config.Dial it dials like raft.NewTCPTransport does.
type streamLayer struct {
	net.Listener
	advertise net.Addr
	dial      func(addr string, timeout time.Duration) (net.Conn, error)
}

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.dial(string(addr), timeout)
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func newTransport(cfg Config) (*raft.NetworkTransport, error) {
	addr, err := net.ResolveTCPAddr("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("resolve raft address: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.RaftAddr)
	if err != nil {
		return nil, fmt.Errorf("raft transport on %s: %w", cfg.RaftAddr, err)
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
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  &streamLayer{Listener: ln, advertise: addr, dial: dial},
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  cfg.Logger.Named("transport"),
	}), nil
}
