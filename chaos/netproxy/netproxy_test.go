package netproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// echo is a loopback echo server that counts what reaches it, so tests can
// prove a blackholed connection never got through.
type echo struct {
	ln    net.Listener
	conns atomic.Int64
	bytes atomic.Int64
	wg    sync.WaitGroup
}

func startEcho(t *testing.T) *echo {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := &echo{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.conns.Add(1)
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					e.bytes.Add(int64(n))
					if n > 0 {
						if _, werr := c.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); e.wg.Wait() })
	return e
}

func startProxy(t *testing.T, target string) *Proxy {
	t.Helper()
	p, err := Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and expects it echoed back within a generous deadline.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
	c.SetDeadline(time.Time{})
}

// expectClosed asserts the peer closed c: a read fails promptly with
// something other than a timeout.
func expectClosed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after drop = %v, want EOF or reset", err)
	}
}

// expectSilent asserts nothing comes back on c within a short window.
func expectSilent(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := c.Read(make([]byte, 1))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on blackholed conn = (%d, %v), want timeout", n, err)
	}
}

// waitFor polls cond until it holds or the deadline passes; used only where
// the condition (e.g. goroutine exit) has no event to wait on.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestStartRejectsNonLoopback(t *testing.T) {
	for _, target := range []string{"10.0.0.1:80", "0.0.0.0:80", "example.com:80", "nonsense"} {
		if p, err := Start(target); err == nil {
			p.Close()
			t.Errorf("Start(%q) succeeded, want error", target)
		}
	}
}

func TestForwardWithHalfClose(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	c := dial(t, p.Addr())
	roundTrip(t, c, "hello")

	// Half-close: the FIN must reach the target while its reply still flows back.
	if _, err := c.Write([]byte("tail")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "tail" {
		t.Fatalf("after CloseWrite got (%q, %v), want (\"tail\", nil)", rest, err)
	}
	if s := p.Stats(); s.Accepted != 1 || s.Forwarded != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestCutAndHeal(t *testing.T) {
	e := startEcho(t)
	p := startProxy(t, e.ln.Addr().String())
	old := dial(t, p.Addr())
	roundTrip(t, old, "before")

	p.Cut()
	if !p.IsCut() {
		t.Fatal("IsCut = false after Cut")
	}
	expectClosed(t, old)

	connsBefore, bytesBefore := e.conns.Load(), e.bytes.Load()
	held := dial(t, p.Addr())
	if _, err := held.Write([]byte("lost")); err != nil {
		t.Fatalf("write while cut: %v", err)
	}
	expectSilent(t, held)
	if e.conns.Load() != connsBefore || e.bytes.Load() != bytesBefore {
		t.Fatalf("target saw traffic while cut: conns %d->%d bytes %d->%d",
			connsBefore, e.conns.Load(), bytesBefore, e.bytes.Load())
	}

	p.Heal()
	if p.IsCut() {
		t.Fatal("IsCut = true after Heal")
	}
	expectClosed(t, held)
	roundTrip(t, dial(t, p.Addr()), "after")

	if s := p.Stats(); s.Accepted != 3 || s.Forwarded != 2 || s.Blackholed != 1 || s.Dropped != 2 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestTargetRefusedClosesClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close() // nothing listens there now, so dials are refused

	p := startProxy(t, dead)
	expectClosed(t, dial(t, p.Addr()))
	waitFor(t, "dropped count", func() bool { return p.Stats().Dropped == 1 })
}

func TestCloseReleasesEverything(t *testing.T) {
	e := startEcho(t)
	base := runtime.NumGoroutine()

	// A holds a forwarded pair and B a blackholed conn when they are closed,
	// since one proxy cannot have both at once.
	a, err := Start(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := Start(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	live, err := net.Dial("tcp", a.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	roundTrip(t, live, "x")
	b.Cut()
	held, err := net.Dial("tcp", b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	waitFor(t, "held conn", func() bool { return b.Stats().Blackholed == 1 })

	for _, p := range []*Proxy{a, b} {
		if err := p.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := p.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		if c, err := net.Dial("tcp", p.Addr()); err == nil {
			c.Close()
			t.Fatal("dial after Close succeeded")
		}
	}
	expectClosed(t, live)
	expectClosed(t, held)
	// Close waits for the proxy's goroutines; the echo handler exits once it
	// sees the proxy's side close, which has to be awaited.
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })
}

// TestConcurrentCutHeal races Cut/Heal against live traffic; it exists for
// the race detector and to check nothing leaks when the dust settles.
func TestConcurrentCutHeal(t *testing.T) {
	e := startEcho(t)
	base := runtime.NumGoroutine()
	p, err := Start(e.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.Dial("tcp", p.Addr())
				if err != nil {
					continue
				}
				c.SetDeadline(time.Now().Add(50 * time.Millisecond))
				c.Write([]byte("ping"))
				c.Read(buf) // errors are expected while cut
				c.Close()
			}
		}()
	}
	for i := range 200 {
		if i%2 == 0 {
			p.Cut()
		} else {
			p.Heal()
		}
		p.IsCut()
		p.Stats()
	}
	close(stop)
	wg.Wait()

	p.Heal()
	roundTrip(t, dial(t, p.Addr()), "still works")
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "goroutines to exit", func() bool { return runtime.NumGoroutine() <= base })
}
