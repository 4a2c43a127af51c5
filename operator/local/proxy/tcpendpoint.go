package proxy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TCPEndpoint plays the DNS name of a database or cache cluster: clients keep one
// stable loopback address while the server behind it moves on failover. Like a DNS
// change, moving the target affects only new connections; Disconnect is what moves the
// clients already connected (their drivers reconnect to the new target).
type TCPEndpoint struct {
	name string
	ln   net.Listener
	wg   sync.WaitGroup

	mu     sync.Mutex
	target string
	conns  map[*tcpSession]struct{}
	closed bool

	// delay (nanoseconds) holds back every chunk the server sends before it reaches the
	// client: network latency, for rehearsing a slow database.
	delay atomic.Int64
}

// tcpSession is one proxied connection; its fields are guarded by TCPEndpoint.mu.
type tcpSession struct {
	client   net.Conn
	upstream net.Conn // nil until the dial completes
	closed   bool
}

const tcpDialTimeout = 5 * time.Second

// ListenTCPEndpoint listens on listenAddr ("127.0.0.1:0" picks a port) and forwards each
// accepted connection to target ("host:port"). An empty target refuses connections: they
// are accepted and closed at once, as a client of a fenced cluster would see.
func ListenTCPEndpoint(name, listenAddr, target string) (*TCPEndpoint, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: listen on %s: %w", name, listenAddr, err)
	}
	e := &TCPEndpoint{name: name, ln: ln, target: target, conns: map[*tcpSession]struct{}{}}
	e.wg.Go(e.acceptLoop)
	return e, nil
}

// Name is the cluster name the endpoint stands for.
func (e *TCPEndpoint) Name() string { return e.name }

// Addr is the stable address clients connect to.
func (e *TCPEndpoint) Addr() string { return e.ln.Addr().String() }

// Target is where new connections go; empty while refusing.
func (e *TCPEndpoint) Target() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.target
}

// SetTarget sends new connections to target; existing connections stay where they are.
func (e *TCPEndpoint) SetTarget(target string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.target = target
}

// SetDelay adds d of latency to every answer from the server, on current connections
// as well as new ones; zero removes it.
func (e *TCPEndpoint) SetDelay(d time.Duration) { e.delay.Store(int64(max(d, 0))) }

// Delay is the latency added to every answer.
func (e *TCPEndpoint) Delay() time.Duration { return time.Duration(e.delay.Load()) }

// Conns counts the connections being proxied.
func (e *TCPEndpoint) Conns() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

// Disconnect closes every current connection, both the client's and the server's side.
func (e *TCPEndpoint) Disconnect() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for s := range e.conns {
		s.closeLocked()
	}
}

// Close stops listening, closes every connection and waits for the endpoint's
// goroutines to end.
func (e *TCPEndpoint) Close() error {
	e.mu.Lock()
	already := e.closed
	e.closed = true
	e.mu.Unlock()
	var err error
	if !already {
		if cerr := e.ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("endpoint %s: close listener: %w", e.name, cerr)
		}
	}
	e.Disconnect()
	e.wg.Wait()
	return err
}

func (e *TCPEndpoint) acceptLoop() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off instead of spinning.
			time.Sleep(10 * time.Millisecond)
			continue
		}
		e.wg.Go(func() { e.serve(c) })
	}
}

func (e *TCPEndpoint) serve(client net.Conn) {
	e.mu.Lock()
	target := e.target
	if e.closed || target == "" {
		e.mu.Unlock()
		client.Close()
		return
	}
	// The session is registered before dialing, so a Disconnect during the dial also
	// ends this connection: nothing established before a fence survives it.
	s := &tcpSession{client: client}
	e.conns[s] = struct{}{}
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		s.closeLocked()
		delete(e.conns, s)
		e.mu.Unlock()
	}()

	upstream, err := net.DialTimeout("tcp", target, tcpDialTimeout)
	if err != nil {
		return
	}
	e.mu.Lock()
	if s.closed {
		e.mu.Unlock()
		upstream.Close()
		return
	}
	s.upstream = upstream
	e.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { pipe(upstream, client) })
	pipe(client, delayedConn{upstream, &e.delay})
	wg.Wait()
}

// pipe copies src to dst. A clean end of src is passed on as a half-close so the other
// direction can finish (a client saying goodbye still reads the server's last words); an
// error ends both directions.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if err == nil {
		if hc, ok := dst.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
			return
		}
	}
	dst.Close()
	src.Close()
}

// delayedConn holds back what it reads by the endpoint's current delay.
type delayedConn struct {
	net.Conn
	delay *atomic.Int64
}

func (c delayedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if d := time.Duration(c.delay.Load()); n > 0 && d > 0 {
		time.Sleep(d)
	}
	return n, err
}

func (s *tcpSession) closeLocked() {
	if s.closed {
		return
	}
	s.closed = true
	s.client.Close()
	if s.upstream != nil {
		s.upstream.Close()
	}
}
