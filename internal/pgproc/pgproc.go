// Package pgproc runs real PostgreSQL servers from Debian's postgresql
// package: initdb, start, stop, streaming replicas by base backup, and
// promotion. The local platform builds its database clusters from it and the
// test helpers start throwaway servers with it. Servers listen on loopback
// TCP only and require a password; as root they run as an unprivileged user,
// because PostgreSQL refuses to run as root.
package pgproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemhq/tandem/internal/procutil"
)

// Superuser is the role every server is created with.
const Superuser = "tandem"

// BinDir finds PostgreSQL's server programs: $TANDEM_PG_BIN, else the
// newest /usr/lib/postgresql/<version>/bin, else the directory of initdb on
// PATH.
func BinDir() (string, error) {
	if d := os.Getenv("TANDEM_PG_BIN"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "postgres")); err != nil {
			return "", fmt.Errorf("TANDEM_PG_BIN=%s has no postgres program: %w", d, err)
		}
		return d, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/postgres")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		return filepath.Dir(p), nil
	}
	return "", errors.New("PostgreSQL server programs not found: install Debian's postgresql package (make deps does it as root: apt-get install postgresql), or set TANDEM_PG_BIN to the directory holding initdb and postgres")
}

// Options describe one server.
type Options struct {
	Name     string // for logs and application_name ("local-a")
	DataDir  string
	Port     int
	Password string
	// Log receives the server's output; nil discards it.
	Log io.Writer
	// Durable false turns fsync off (test servers only).
	Durable bool
	// Settings are extra postgresql.conf lines, written to postgresql.auto.conf.
	Settings map[string]string
}

// Server is one PostgreSQL server process.
type Server struct {
	opts    Options
	bin     string
	account procutil.Account
	proc    *procutil.Proc
}

// New describes a server whose data directory already exists (or will be
// made by Init or BaseBackup).
func New(opts Options) (*Server, error) {
	bin, err := BinDir()
	if err != nil {
		return nil, err
	}
	acct, err := procutil.Unprivileged()
	if err != nil {
		return nil, err
	}
	if !acct.Reachable(opts.DataDir) {
		return nil, fmt.Errorf("PostgreSQL runs as user %q, which cannot reach %s (a parent directory lacks search permission); choose a state directory outside a private home directory, e.g. --state-dir /var/tmp/tandem", acct.Name, opts.DataDir)
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	return &Server{opts: opts, bin: bin, account: acct}, nil
}

// Name returns the server's name.
func (s *Server) Name() string { return s.opts.Name }

// Port returns the server's TCP port.
func (s *Server) Port() int { return s.opts.Port }

// Addr returns host:port.
func (s *Server) Addr() string { return fmt.Sprintf("127.0.0.1:%d", s.opts.Port) }

// DataDir returns the data directory.
func (s *Server) DataDir() string { return s.opts.DataDir }

// DSN returns a connection string for database db on this server.
func (s *Server) DSN(db string) string { return DSN(s.Addr(), s.opts.Password, db) }

// DSN builds a connection string for the superuser at addr.
func DSN(addr, password, db string) string {
	u := url.URL{Scheme: "postgres", User: url.UserPassword(Superuser, password), Host: addr, Path: "/" + db, RawQuery: "sslmode=disable"}
	return u.String()
}

func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "LANG=C.UTF-8", "PGPASSWORD=" + s.opts.Password}
	cmd.Dir = "/"
	s.account.Prepare(cmd)
	return cmd
}

func (s *Server) run(ctx context.Context, name string, args ...string) error {
	out, err := s.command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s for %s: %w: %s", name, s.opts.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Init creates a fresh cluster in DataDir (which must not exist or be empty)
// configured as a replication-ready primary.
func (s *Server) Init(ctx context.Context) error {
	if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", s.opts.DataDir, err)
	}
	pwfile := s.opts.DataDir + ".pw"
	if err := os.WriteFile(pwfile, []byte(s.opts.Password+"\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(pwfile)
	for _, p := range []string{s.opts.DataDir, pwfile} {
		if err := s.account.Chown(p); err != nil {
			return fmt.Errorf("give %s to %s: %w", p, s.account.Name, err)
		}
	}
	if err := s.run(ctx, "initdb", "-D", s.opts.DataDir, "-U", Superuser, "--pwfile="+pwfile,
		"--auth-host=scram-sha-256", "--auth-local=reject", "-E", "UTF8", "--no-locale", "--no-instructions"); err != nil {
		return err
	}
	return s.writeSettings(nil)
}

// BaseBackup makes DataDir a streaming replica of primary (pg_basebackup
// with WAL streaming), ready to Start.
func (s *Server) BaseBackup(ctx context.Context, primary *Server) error {
	return s.BaseBackupFrom(ctx, primary.Addr(), primary.opts.Password)
}

// BaseBackupFrom makes DataDir a fresh streaming replica of the primary at
// addr, replacing whatever DataDir held.
func (s *Server) BaseBackupFrom(ctx context.Context, addr, password string) error {
	host, port, _ := strings.Cut(addr, ":")
	if err := os.RemoveAll(s.opts.DataDir); err != nil {
		return err
	}
	if err := os.MkdirAll(s.opts.DataDir, 0o700); err != nil {
		return err
	}
	if err := s.account.Chown(s.opts.DataDir); err != nil {
		return err
	}
	cmd := s.command(ctx, "pg_basebackup", "-h", host, "-p", port, "-U", Superuser,
		"-D", s.opts.DataDir, "-X", "stream", "-c", "fast", "--no-password")
	cmd.Env = append(cmd.Env[:len(cmd.Env)-1], "PGPASSWORD="+password, "PGCONNECT_TIMEOUT=5")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pg_basebackup for %s: %w: %s", s.opts.Name, err, strings.TrimSpace(string(out)))
	}
	return s.Follow(addr, password)
}

// Rewind makes a stopped former primary a replica-to-be of the primary at
// addr with pg_rewind, which copies only what diverged after the timelines
// split. The server must be stopped; Follow and Start it afterwards.
func (s *Server) Rewind(ctx context.Context, addr, password string) error {
	if !s.Stopped() {
		return fmt.Errorf("pg_rewind for %s: the server is running; stop it first", s.opts.Name)
	}
	host, port, _ := strings.Cut(addr, ":")
	src := fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=postgres connect_timeout=5", host, port, Superuser, password)
	// A server that crashed is first taken through crash recovery in
	// single-user mode, which refuses a standby.signal (a fenced server
	// has one): the signal goes for the rewind and comes back if it
	// fails, so the directory never starts as a primary.
	signal := filepath.Join(s.opts.DataDir, "standby.signal")
	_, statErr := os.Stat(signal)
	fenced := statErr == nil
	if fenced {
		if err := os.Remove(signal); err != nil {
			return fmt.Errorf("pg_rewind for %s: %w", s.opts.Name, err)
		}
	}
	if err := s.run(ctx, "pg_rewind", "--target-pgdata="+s.opts.DataDir, "--source-server="+src); err != nil {
		if fenced {
			if ferr := s.Fence(); ferr != nil {
				return errors.Join(err, ferr)
			}
		}
		return err
	}
	return s.Follow(addr, password)
}

// Fence marks a stopped server's data directory so that, started again by
// anyone, it comes up as a standby (in recovery, refusing writes) rather
// than as a primary.
func (s *Server) Fence() error {
	if err := os.WriteFile(filepath.Join(s.opts.DataDir, "standby.signal"), nil, 0o600); err != nil {
		return fmt.Errorf("fence %s: %w", s.opts.Name, err)
	}
	return s.account.Chown(filepath.Join(s.opts.DataDir, "standby.signal"))
}

// Options returns the server's options (for a new process on the same
// data directory).
func (s *Server) Options() Options { return s.opts }

// conninfo is the replication connection string to the server at addr.
func (s *Server) conninfo(addr, password string) string {
	host, port, _ := strings.Cut(addr, ":")
	return fmt.Sprintf("host=%s port=%s user=%s password=%s application_name=%s", host, port, Superuser, password, s.opts.Name)
}

// Follow (re)configures a stopped server as a standby of the primary at addr.
func (s *Server) Follow(addr, password string) error {
	conninfo := s.conninfo(addr, password)
	if err := os.WriteFile(filepath.Join(s.opts.DataDir, "standby.signal"), nil, 0o600); err != nil {
		return err
	}
	if err := s.writeSettings(map[string]string{"primary_conninfo": conninfo}); err != nil {
		return err
	}
	return s.account.Chown(s.opts.DataDir)
}

func (s *Server) writeSettings(extra map[string]string) error {
	settings := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(s.opts.Port),
		"unix_socket_directories": "",
		"wal_level":               "replica",
		"max_wal_senders":         "10",
		"max_replication_slots":   "10",
		"wal_keep_size":           "256MB",
		"hot_standby":             "on",
		"wal_log_hints":           "on",
		// A standby whose upstream restarted or moved reconnects within a
		// second (the default waits five).
		"wal_retrieve_retry_interval": "1s",
		"max_connections":             "300",
		"shared_buffers":              "64MB",
		"cluster_name":                s.opts.Name,
		"logging_collector":           "off",
	}
	if !s.opts.Durable {
		settings["fsync"] = "off"
		settings["synchronous_commit"] = "off"
		settings["full_page_writes"] = "off"
	}
	for k, v := range s.opts.Settings {
		settings[k] = v
	}
	for k, v := range extra {
		settings[k] = v
	}
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("# Written by tandem; edit the stack spec, not this file.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(settings[k], "'", "''"))
	}
	path := filepath.Join(s.opts.DataDir, "postgresql.auto.conf")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return s.account.Chown(path)
}

// Start launches the server and waits until it accepts connections.
func (s *Server) Start(ctx context.Context) error {
	if !s.Stopped() {
		return fmt.Errorf("postgres %s is already running", s.opts.Name)
	}
	// A stale pid file from a killed server would stop a new one starting.
	_ = os.Remove(filepath.Join(s.opts.DataDir, "postmaster.pid"))
	cmd := s.command(context.WithoutCancel(ctx), "postgres", "-D", s.opts.DataDir)
	cmd.Stdout, cmd.Stderr = s.opts.Log, s.opts.Log
	proc, err := procutil.StartProc(cmd)
	if err != nil {
		return fmt.Errorf("start postgres %s: %w", s.opts.Name, err)
	}
	s.proc = proc
	deadline := time.Now().Add(60 * time.Second)
	for {
		if s.Stopped() {
			return fmt.Errorf("postgres %s exited during start: %v (see its log)", s.opts.Name, s.proc.Err())
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, s.DSN("postgres"))
		cancel()
		if err == nil {
			conn.Close(ctx)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.Kill()
			return fmt.Errorf("postgres %s did not accept connections on %s: %w", s.opts.Name, s.Addr(), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Pid returns the process id, or 0.
func (s *Server) Pid() int { return s.proc.Pid() }

// Exited is closed when the process ends.
func (s *Server) Exited() <-chan struct{} { return s.proc.Exited() }

// Stopped reports whether the process has ended (or never started).
func (s *Server) Stopped() bool { return s.proc.Stopped() }

// Stop shuts the server down ("fast" mode: disconnect clients, checkpoint)
// and kills it if it has not ended within the timeout.
func (s *Server) Stop(timeout time.Duration) { s.proc.Stop(syscall.SIGINT, timeout) }

// Kill ends the server at once, like a crash.
func (s *Server) Kill() { s.proc.Kill() }

// Connect opens a connection to database db.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	return pgx.Connect(ctx, s.DSN(db))
}

// CreateDatabase creates db unless it exists.
func (s *Server) CreateDatabase(ctx context.Context, db string) error {
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.opts.Name, err)
	}
	defer conn.Close(ctx)
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", db).Scan(&exists); err != nil {
		return err
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return fmt.Errorf("create database %s on %s: %w", db, s.opts.Name, err)
	}
	return nil
}

// Repoint makes a running standby stream from the server at addr instead
// (the setting is reloaded; no restart). After a promotion upstream the
// standby follows the new timeline.
func (s *Server) Repoint(ctx context.Context, addr, password string) error {
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("repoint %s: %w", s.opts.Name, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = "+quote(s.conninfo(addr, password))); err != nil {
		return fmt.Errorf("repoint %s: %w", s.opts.Name, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return fmt.Errorf("repoint %s: %w", s.opts.Name, err)
	}
	return nil
}

// SetSynchronousStandby makes commits on this primary wait until the
// standby named name has flushed them; "" makes commits wait for no one.
func (s *Server) SetSynchronousStandby(ctx context.Context, name string) error {
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	value := ""
	if name != "" {
		value = `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	}
	if _, err := conn.Exec(ctx, "ALTER SYSTEM SET synchronous_standby_names = "+quote(value)); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

// SyncState is how the primary sees the standby named name: "sync",
// "async", "potential", "quorum", or "" when it is not connected.
func (s *Server) SyncState(ctx context.Context, name string) (string, error) {
	conn, err := s.Connect(ctx, "postgres")
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var state string
	err = conn.QueryRow(ctx, "SELECT coalesce((SELECT sync_state FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming' LIMIT 1), '')", name).Scan(&state)
	return state, err
}

func quote(v string) string { return "'" + strings.ReplaceAll(v, "'", "''") + "'" }
