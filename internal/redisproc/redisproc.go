// Package redisproc runs real redis-server processes (Debian's redis-server
// package) on loopback with a password: primaries, replicas, and the role
// changes a failover needs.
package redisproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/procutil"
)

// Binary finds redis-server: $TANDEM_REDIS_SERVER, else PATH, else /usr/bin.
func Binary() (string, error) {
	if p := os.Getenv("TANDEM_REDIS_SERVER"); p != "" {
		return p, nil
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/redis-server"); err == nil {
		return "/usr/bin/redis-server", nil
	}
	return "", errors.New("redis-server not found: install Debian's redis-server package (make deps does it as root: apt-get install redis-server), or set TANDEM_REDIS_SERVER")
}

// Options describe one server.
type Options struct {
	Name     string
	Dir      string // working directory for the append-only file
	Port     int
	Password string
	// ReplicaOf is the primary's host:port, or "" for a primary.
	ReplicaOf string
	// Durable turns the append-only file on (fsync every second).
	Durable   bool
	Databases int
	Log       io.Writer
}

// Server is one redis-server process.
type Server struct {
	opts Options
	proc *procutil.Proc
}

// New describes a server.
func New(opts Options) *Server {
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	if opts.Databases == 0 {
		opts.Databases = 16
	}
	return &Server{opts: opts}
}

// Options returns the server's options (for a new process on the same
// directory and port).
func (s *Server) Options() Options { return s.opts }

// Name returns the server's name.
func (s *Server) Name() string { return s.opts.Name }

// Addr returns host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.opts.Port) }

// URL returns a redis:// URL for database index db.
func (s *Server) URL(db int) string { return URL(s.Addr(), s.opts.Password, db) }

// URL builds a redis:// URL.
func URL(addr, password string, db int) string {
	return fmt.Sprintf("redis://:%s@%s/%d", password, addr, db)
}

// Start launches redis-server and waits until it answers PING.
func (s *Server) Start(ctx context.Context) error {
	bin, err := Binary()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.opts.Dir, 0o700); err != nil {
		return err
	}
	args := []string{
		"--port", strconv.Itoa(s.opts.Port), "--bind", "127.0.0.1", "--protected-mode", "yes",
		"--dir", s.opts.Dir, "--daemonize", "no", "--save", "", "--logfile", "",
		"--requirepass", s.opts.Password, "--masterauth", s.opts.Password,
		"--databases", strconv.Itoa(s.opts.Databases),
		"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0",
	}
	if s.opts.Durable {
		args = append(args, "--appendonly", "yes", "--appendfsync", "everysec")
	}
	if s.opts.ReplicaOf != "" {
		host, port, err := splitAddr(s.opts.ReplicaOf)
		if err != nil {
			return err
		}
		args = append(args, "--replicaof", host, port)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = s.opts.Log, s.opts.Log
	procutil.Account{}.Prepare(cmd)
	proc, err := procutil.StartProc(cmd)
	if err != nil {
		return fmt.Errorf("start redis %s: %w", s.opts.Name, err)
	}
	s.proc = proc
	c := s.Client(0)
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if s.Stopped() {
			return fmt.Errorf("redis %s exited during start (see its log)", s.opts.Name)
		}
		if err := c.Ping(ctx).Err(); err == nil {
			return nil
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			s.Kill()
			return fmt.Errorf("redis %s did not answer on %s: %w", s.opts.Name, s.Addr(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func splitAddr(addr string) (string, string, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[:i], addr[i+1:], nil
		}
	}
	return "", "", fmt.Errorf("address %q has no port", addr)
}

// Client returns a client for database index db.
func (s *Server) Client(db int) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: s.Addr(), Password: s.opts.Password, DB: db, MaxRetries: -1, DialTimeout: time.Second})
}

// Pid returns the process id, or 0.
func (s *Server) Pid() int { return s.proc.Pid() }

// Exited is closed when the process ends.
func (s *Server) Exited() <-chan struct{} { return s.proc.Exited() }

// Stopped reports whether the process has ended (or never started).
func (s *Server) Stopped() bool { return s.proc.Stopped() }

// Stop asks the server to end (SIGTERM) and kills it after the timeout.
func (s *Server) Stop(timeout time.Duration) { s.proc.Stop(syscall.SIGTERM, timeout) }

// Kill ends the server at once, like a crash.
func (s *Server) Kill() { s.proc.Kill() }
