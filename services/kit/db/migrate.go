package db

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"regexp"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Migration is one embedded SQL file. Its version is the file name without
// the .sql suffix, e.g. "0001_rules"; versions apply in lexical order.
type Migration struct {
	Version  string
	SQL      string
	Checksum string
}

var migrationName = regexp.MustCompile(`^[0-9]{4}_[a-z0-9_]+\.sql$`)

// LoadMigrations reads every *.sql file at the root of fsys.
func LoadMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []Migration
	for _, e := range entries {
		if e.IsDir() || path.Ext(e.Name()) != ".sql" {
			continue
		}
		if !migrationName.MatchString(e.Name()) {
			return nil, fmt.Errorf("migration %q is not named NNNN_name.sql", e.Name())
		}
		b, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, Migration{
			Version:  e.Name()[:len(e.Name())-len(".sql")],
			SQL:      string(b),
			Checksum: hex.EncodeToString(sum[:]),
		})
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations found")
	}
	slices.SortFunc(ms, func(a, b Migration) int {
		switch {
		case a.Version < b.Version:
			return -1
		case a.Version > b.Version:
			return 1
		}
		return 0
	})
	return ms, nil
}

// migrationLockKey identifies the advisory lock that serialises migrations.
// Advisory locks are per database and each service has its own, so one key
// serves every service.
const migrationLockKey int64 = 0x74616e64656d // "tandem"

const createSchemaMigrations = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    text PRIMARY KEY,
	checksum   text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies the migrations in fsys that the database lacks, all in one
// transaction under a transaction-scoped advisory lock, so that blue and
// green instances starting together apply each migration exactly once and a
// failed migration leaves nothing behind.
//
// A database that already has everything is left alone without writing,
// which lets a service start against a read-only (fenced) primary. Versions
// in the database that this binary does not know are tolerated: they come
// from a newer release during a rollback, and migrations are written to be
// backward compatible (expand, then contract in a later release).
func Migrate(ctx context.Context, l *slog.Logger, pool *pgxpool.Pool, fsys fs.FS) error {
	ms, err := LoadMigrations(fsys)
	if err != nil {
		return err
	}
	applied, err := appliedVersions(ctx, pool)
	if err != nil {
		return err
	}
	if pending, err := pendingMigrations(ms, applied); err != nil {
		return err
	} else if len(pending) == 0 {
		l.Info("schema up to date", "migration", ms[len(ms)-1].Version)
		return nil
	}

	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLockKey); err != nil {
			return fmt.Errorf("take migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, createSchemaMigrations); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		// Read again under the lock: another instance may have migrated
		// while this one waited.
		applied, err := readVersions(ctx, tx)
		if err != nil {
			return err
		}
		pending, err := pendingMigrations(ms, applied)
		if err != nil {
			return err
		}
		for v := range applied {
			if !slices.ContainsFunc(ms, func(m Migration) bool { return m.Version == v }) {
				l.Warn("database has a migration this release does not know", "migration", v)
			}
		}
		for _, m := range pending {
			// Exec without arguments uses the simple protocol, which
			// accepts several statements in one file.
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Version, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, checksum) VALUES ($1, $2)", m.Version, m.Checksum); err != nil {
				return fmt.Errorf("record migration %s: %w", m.Version, err)
			}
			l.Info("migration applied", "migration", m.Version)
		}
		return nil
	})
}

func appliedVersions(ctx context.Context, pool *pgxpool.Pool) (map[string]string, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, fmt.Errorf("look for schema_migrations: %w", err)
	}
	if !exists {
		return map[string]string{}, nil
	}
	return readVersions(ctx, pool)
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func readVersions(ctx context.Context, q querier) (map[string]string, error) {
	rows, err := q.Query(ctx, "SELECT version, checksum FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	applied := map[string]string{}
	for rows.Next() {
		var v, sum string
		if err := rows.Scan(&v, &sum); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
		applied[v] = sum
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	return applied, nil
}

// pendingMigrations returns the migrations not yet applied, refusing to go
// on when an applied migration was edited afterwards: the database would no
// longer match what the files say.
func pendingMigrations(ms []Migration, applied map[string]string) ([]Migration, error) {
	var pending []Migration
	for _, m := range ms {
		sum, ok := applied[m.Version]
		if !ok {
			pending = append(pending, m)
			continue
		}
		if sum != m.Checksum {
			return nil, fmt.Errorf("migration %s was changed after it was applied: add a new migration instead of editing it", m.Version)
		}
	}
	return pending, nil
}
