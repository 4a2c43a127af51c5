package db

import (
	"context"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var quick = retry.Policy{Budget: 5 * time.Second, First: 10 * time.Millisecond, Max: 100 * time.Millisecond}

func connect(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool, err := Connect(t.Context(), logging.Discard(), "test", testinfra.PostgresDSN(t, "kitdb"), quick)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

var twoMigrations = fstest.MapFS{
	"0001_things.sql": {Data: []byte(`
		CREATE TABLE things (id int PRIMARY KEY);
		CREATE TABLE runs (n int NOT NULL);
		INSERT INTO runs VALUES (1);`)},
	"0002_more.sql": {Data: []byte(`ALTER TABLE things ADD COLUMN name text; INSERT INTO runs VALUES (2);`)},
	"README.md":     {Data: []byte("not a migration")},
}

func count(t *testing.T, pool *pgxpool.Pool, sql string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestMigrateConcurrentInstancesApplyOnce(t *testing.T) {
	t.Parallel()
	pool := connect(t)
	const instances = 6
	var wg sync.WaitGroup
	errs := make([]error, instances)
	for i := range instances {
		wg.Go(func() { errs[i] = Migrate(t.Context(), logging.Discard(), pool, twoMigrations) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
	}
	if n := count(t, pool, "SELECT count(*) FROM runs"); n != 2 {
		t.Errorf("migration bodies ran %d times in total, want 2 (once each)", n)
	}
	if n := count(t, pool, "SELECT count(*) FROM schema_migrations WHERE version IN ('0001_things','0002_more')"); n != 2 {
		t.Errorf("schema_migrations has %d rows, want 2", n)
	}
	// A restart finds nothing to do.
	if err := Migrate(t.Context(), logging.Discard(), pool, twoMigrations); err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if n := count(t, pool, "SELECT count(*) FROM runs"); n != 2 {
		t.Errorf("rerun applied migrations again: runs = %d", n)
	}
}

func TestMigrateFailureLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	pool := connect(t)
	broken := fstest.MapFS{
		"0001_ok.sql":     {Data: []byte(`CREATE TABLE kept (id int);`)},
		"0002_broken.sql": {Data: []byte(`CREATE TABLE half (id int); SELECT no_such_function();`)},
	}
	err := Migrate(t.Context(), logging.Discard(), pool, broken)
	if err == nil || !strings.Contains(err.Error(), "0002_broken") {
		t.Fatalf("err = %v, want it to name 0002_broken", err)
	}
	if n := count(t, pool, "SELECT count(*) FROM pg_tables WHERE tablename IN ('kept','half','schema_migrations')"); n != 0 {
		t.Errorf("%d tables survived a failed migration run, want 0", n)
	}
}

func TestMigrateRefusesEditedMigration(t *testing.T) {
	t.Parallel()
	pool := connect(t)
	if err := Migrate(t.Context(), logging.Discard(), pool, twoMigrations); err != nil {
		t.Fatal(err)
	}
	edited := fstest.MapFS{
		"0001_things.sql": {Data: []byte(`CREATE TABLE things (id bigint PRIMARY KEY);`)},
		"0002_more.sql":   twoMigrations["0002_more.sql"],
	}
	err := Migrate(t.Context(), logging.Discard(), pool, edited)
	if err == nil || !strings.Contains(err.Error(), "0001_things was changed") {
		t.Fatalf("err = %v, want a changed-migration error", err)
	}
}

func TestMigrateToleratesNewerRelease(t *testing.T) {
	t.Parallel()
	pool := connect(t)
	if err := Migrate(t.Context(), logging.Discard(), pool, twoMigrations); err != nil {
		t.Fatal(err)
	}
	older := fstest.MapFS{"0001_things.sql": twoMigrations["0001_things.sql"]}
	if err := Migrate(t.Context(), logging.Discard(), pool, older); err != nil {
		t.Fatalf("an older release must start against a newer schema: %v", err)
	}
}

func TestLoadMigrationsRejectsBadNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		fsys fstest.MapFS
		want string
	}{
		{name: "bad name", fsys: fstest.MapFS{"init.sql": {Data: []byte("SELECT 1")}}, want: "not named NNNN_name.sql"},
		{name: "empty", fsys: fstest.MapFS{"notes.txt": {Data: []byte("x")}}, want: "no migrations found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := LoadMigrations(tt.fsys)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestConnectRejectsBadDSNWithoutLeakingIt(t *testing.T) {
	t.Parallel()
	_, err := Connect(context.Background(), logging.Discard(), "claims", "postgres://u:s3cret@127.0.0.1:5432/db?sslmode=bogus", quick)
	if err == nil {
		t.Fatal("want an error for an invalid DSN")
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("error leaks the password: %v", err)
	}
}

func TestConnectGivesUpWhenNothingListens(t *testing.T) {
	t.Parallel()
	start := time.Now()
	_, err := Connect(context.Background(), logging.Discard(), "claims", "postgres://u@127.0.0.1:1/db",
		retry.Policy{Budget: 300 * time.Millisecond, First: 20 * time.Millisecond, Max: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("want an error when the database never comes up")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Connect took %s, past its budget", time.Since(start))
	}
}
