// Package db opens PostgreSQL pools and applies a service's embedded schema
// migrations.
package db

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/services/kit/retry"
)

// Connect opens a pool on dsn and waits, with backoff, until the database
// answers a ping: at start the database may still be booting or failing
// over. A malformed DSN or rejected credentials fail at once, since waiting
// cannot fix them. configure adjusts the pool's configuration before it
// opens (telemetry.InstrumentPool, say).
func Connect(ctx context.Context, l *slog.Logger, what, dsn string, p retry.Policy, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parse error can quote the DSN, password included.
		return nil, fmt.Errorf("parse %s DSN: it is not a valid PostgreSQL connection string", what)
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	// Connections are recycled so that, after a failover moves the
	// endpoint, no connection lingers on the old primary for long.
	cfg.MaxConnLifetime = 30 * time.Minute
	cfg.MaxConnLifetimeJitter = time.Minute
	cfg.HealthCheckPeriod = 15 * time.Second
	for _, c := range configure {
		c(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s pool: %w", what, err)
	}
	if err := retry.Until(ctx, l, what, p, pool.Ping, isPermanent); err != nil {
		pool.Close()
		return nil, err
	}
	l.Info("database connected", "database", what, "host", cfg.ConnConfig.Host, "name", cfg.ConnConfig.Database)
	return pool, nil
}

// isPermanent reports errors that no amount of waiting fixes: the server
// answered and refused the credentials.
func isPermanent(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 28: invalid authorization specification.
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "28"
	}
	return false
}
