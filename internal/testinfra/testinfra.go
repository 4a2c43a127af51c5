// Package testinfra starts real PostgreSQL and Redis servers for tests: one
// of each per test binary, started on first use, stopped by Main. Each test
// gets a fresh database (PostgreSQL) or database index (Redis) of its own.
// There are no in-memory fakes: a test that needs a database talks to the
// real server.
package testinfra

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/procutil"
	"github.com/tandemhq/tandem/internal/redisproc"
)

var (
	mu        sync.Mutex
	pg        *pgproc.Server
	pgErr     error
	rd        *redisproc.Server
	rdErr     error
	rdNext    int
	cleanDirs []string
)

const redisDatabases = 256

// Main runs the tests, then stops the servers they started.
func Main(m *testing.M) {
	code := m.Run()
	Shutdown()
	os.Exit(code)
}

// Shutdown stops the servers and removes their directories.
func Shutdown() {
	mu.Lock()
	defer mu.Unlock()
	if pg != nil {
		pg.Stop(10 * time.Second)
	}
	if rd != nil {
		rd.Stop(5 * time.Second)
	}
	for _, d := range cleanDirs {
		_ = os.RemoveAll(d)
	}
}

// Token returns n random bytes as hex.
func Token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tempDir(prefix string) (string, error) {
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	// The database server may run as another user and must reach its
	// data directory below this one.
	if err := os.Chmod(d, 0o755); err != nil {
		return "", err
	}
	cleanDirs = append(cleanDirs, d)
	return d, nil
}

// Postgres returns the package's PostgreSQL server, starting it on first use.
func Postgres(t testing.TB) *pgproc.Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if pg == nil && pgErr == nil {
		pg, pgErr = startPostgres()
	}
	if pgErr != nil {
		t.Fatalf("start PostgreSQL for tests: %v", pgErr)
	}
	return pg
}

func startPostgres() (*pgproc.Server, error) {
	dir, err := tempDir("tandem-test-pg-")
	if err != nil {
		return nil, err
	}
	port, err := procutil.FreePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(dir + "/postgres.log")
	if err != nil {
		return nil, err
	}
	s, err := pgproc.New(pgproc.Options{Name: "test", DataDir: dir + "/data", Port: port, Password: Token(12), Log: logf})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := s.Init(ctx); err != nil {
		return nil, err
	}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// PostgresDSN creates a fresh database named after prefix on the package's
// server and returns its connection string; the database is dropped when
// the test ends.
func PostgresDSN(t testing.TB, prefix string) string {
	t.Helper()
	s := Postgres(t)
	name := fmt.Sprintf("%s_%s", prefix, Token(4))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := s.Connect(ctx, "postgres")
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, fmt.Sprintf("DROP DATABASE IF EXISTS %q WITH (FORCE)", name))
	})
	return s.DSN(name)
}

// Redis returns the package's redis server, starting it on first use.
func Redis(t testing.TB) *redisproc.Server {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if rd == nil && rdErr == nil {
		rd, rdErr = startRedis()
	}
	if rdErr != nil {
		t.Fatalf("start redis-server for tests: %v", rdErr)
	}
	return rd
}

func startRedis() (*redisproc.Server, error) {
	dir, err := tempDir("tandem-test-redis-")
	if err != nil {
		return nil, err
	}
	port, err := procutil.FreePort()
	if err != nil {
		return nil, err
	}
	s := redisproc.New(redisproc.Options{Name: "test", Dir: dir, Port: port, Password: Token(12), Databases: redisDatabases})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// RedisURL returns the URL of a database index of its own on the package's
// redis server; the index is flushed when the test ends.
func RedisURL(t testing.TB) string {
	t.Helper()
	s := Redis(t)
	mu.Lock()
	db := rdNext % redisDatabases
	rdNext++
	mu.Unlock()
	c := s.Client(db)
	ctx := context.Background()
	_ = c.FlushDB(ctx).Err()
	t.Cleanup(func() {
		_ = c.FlushDB(context.Background()).Err()
		_ = c.Close()
	})
	return s.URL(db)
}
