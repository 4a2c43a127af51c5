package proxy

import (
	"bufio"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// startLineServer is a stand-in database server: it answers every line with its name
// and the line.
func startLineServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := io.WriteString(c, name+":"+sc.Text()+"\n"); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type lineClient struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialLine(t *testing.T, addr string) *lineClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineClient{conn: c, r: bufio.NewReader(c)}
}

// ask sends a line and returns the answer, or the error that ended the connection.
func (c *lineClient) ask(line string) (string, error) {
	c.conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c.conn, line+"\n"); err != nil {
		return "", err
	}
	answer, err := c.r.ReadString('\n')
	return strings.TrimSuffix(answer, "\n"), err
}

func TestTCPEndpoint(t *testing.T) {
	t.Parallel()
	primary, replica := startLineServer(t, "primary"), startLineServer(t, "replica")
	e, err := ListenTCPEndpoint("claims-db", "127.0.0.1:0", primary)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.Target() != primary || e.Name() != "claims-db" {
		t.Fatalf("endpoint %s targets %s, want claims-db targeting %s", e.Name(), e.Target(), primary)
	}

	before := dialLine(t, e.Addr())
	if got, err := before.ask("select 1"); err != nil || got != "primary:select 1" {
		t.Fatalf("through the endpoint: %q, %v", got, err)
	}

	e.SetTarget(replica)
	after := dialLine(t, e.Addr())
	if got, err := after.ask("select 2"); err != nil || got != "replica:select 2" {
		t.Fatalf("new connection after SetTarget: %q, %v; want the replica", got, err)
	}
	if got, err := before.ask("select 3"); err != nil || got != "primary:select 3" {
		t.Fatalf("existing connection after SetTarget: %q, %v; want it still on the primary", got, err)
	}
	waitFor(t, "both connections counted", func() bool { return e.Conns() == 2 })

	e.Disconnect()
	for name, c := range map[string]*lineClient{"before": before, "after": after} {
		if got, err := c.ask("select 4"); err == nil {
			t.Errorf("%s connection still answers after Disconnect: %q", name, got)
		}
	}
	waitFor(t, "sessions released", func() bool { return e.Conns() == 0 })

	e.SetTarget("")
	if got, err := dialLine(t, e.Addr()).ask("select 5"); err == nil {
		t.Fatalf("fenced endpoint answered %q", got)
	}

	e.SetTarget(primary)
	if got, err := dialLine(t, e.Addr()).ask("select 6"); err != nil || got != "primary:select 6" {
		t.Fatalf("after failback: %q, %v", got, err)
	}
}

func TestTCPEndpointClose(t *testing.T) {
	t.Parallel()
	e, err := ListenTCPEndpoint("cache", "127.0.0.1:0", startLineServer(t, "redis"))
	if err != nil {
		t.Fatal(err)
	}
	c := dialLine(t, e.Addr())
	if _, err := c.ask("PING"); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ask("PING"); err == nil {
		t.Error("connection survived Close")
	}
	if _, err := net.DialTimeout("tcp", e.Addr(), time.Second); err == nil {
		t.Error("endpoint still accepts after Close")
	}
	if err := e.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestTCPEndpointUnreachableTarget(t *testing.T) {
	t.Parallel()
	e, err := ListenTCPEndpoint("claims-db", "127.0.0.1:0", closedAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	got, err := dialLine(t, e.Addr()).ask("select 1")
	if err == nil {
		t.Fatalf("client of an unreachable target got an answer: %q", got)
	}
	if !errors.Is(err, io.EOF) && !strings.Contains(err.Error(), "reset") {
		t.Errorf("client of an unreachable target got %v, want its connection closed", err)
	}
}

func TestListenTCPEndpointBadAddress(t *testing.T) {
	t.Parallel()
	if _, err := ListenTCPEndpoint("claims-db", "256.0.0.1:0", "127.0.0.1:1"); err == nil {
		t.Error("listening on an invalid address succeeded")
	}
}

func TestTCPEndpointDelay(t *testing.T) {
	t.Parallel()
	e, err := ListenTCPEndpoint("claims-db", "127.0.0.1:0", startLineServer(t, "primary"))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	// A connection made before the delay is slowed too: a slow network
	// slows the pooled connections as well as new ones.
	c := dialLine(t, e.Addr())
	if _, err := c.ask("warm up"); err != nil {
		t.Fatal(err)
	}
	const d = 150 * time.Millisecond
	e.SetDelay(d)
	if e.Delay() != d {
		t.Fatalf("Delay() = %s, want %s", e.Delay(), d)
	}
	start := time.Now()
	got, err := c.ask("select 1")
	if err != nil || got != "primary:select 1" {
		t.Fatalf("answer %q, %v", got, err)
	}
	// Only the lower bound is certain: the answer waited at least d.
	if took := time.Since(start); took < d {
		t.Errorf("answer took %s with a delay of %s", took, d)
	}
	e.SetDelay(-time.Second)
	if e.Delay() != 0 {
		t.Errorf("a negative delay is stored as %s, want 0", e.Delay())
	}
	if got, err := c.ask("select 2"); err != nil || got != "primary:select 2" {
		t.Fatalf("after removing the delay: %q, %v", got, err)
	}
}

// BenchmarkTCPEndpointRoundTrip measures a request and its answer through
// an endpoint with no delay set.
func BenchmarkTCPEndpointRoundTrip(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(c, c); c.Close() }()
		}
	}()
	e, err := ListenTCPEndpoint("bench-db", "127.0.0.1:0", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	c, err := net.Dial("tcp", e.Addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 512)
	buf := make([]byte, len(msg))
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}
