// Package db opens PostgreSQL pools and applies a service's embedded schema
// migrations.
package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
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

// Transient reports errors that a moment later may not happen again: the
// connection broke or could not be made (the server was killed, or is
// failing over and the endpoint is moving), the server is shutting down
// or starting, or the transaction lost a serialization race. Retrying is
// safe only for work that is idempotent or never committed.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "57P01", "57P02", "57P03", // admin shutdown, crash shutdown, cannot connect now
			"40001", "40P01": // serialization failure, deadlock
			return true
		}
		// Class 08: connection exception.
		return len(pgErr.Code) == 5 && pgErr.Code[:2] == "08"
	}
	// No answer from a server at all: a broken or refused connection, or
	// one the driver closed under the call (the server went away).
	return pgconn.SafeToRetry(err) || pgconn.Timeout(err) || errors.Is(err, pgconn.ErrConnClosed) || isConnectError(err)
}

func isConnectError(err error) bool {
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED)
}

// RetryTransient runs op until it succeeds, fails with an error that is
// not Transient, or has been tried attempts times, waiting with
// exponential backoff and jitter (from 25ms, at most 400ms) in between:
// long enough to ride out an in-region database failover, which moves the
// endpoint within about a second. op must be safe to repeat.
func RetryTransient[T any](ctx context.Context, attempts int, op func(context.Context) (T, error)) (T, error) {
	policy := retrypolicy.NewBuilder[T]().
		HandleIf(func(_ T, err error) bool { return Transient(err) }).
		WithMaxAttempts(attempts).
		WithBackoff(25*time.Millisecond, 400*time.Millisecond).
		WithJitterFactor(0.3).
		ReturnLastFailure().
		Build()
	return failsafe.With[T](policy).WithContext(ctx).GetWithExecution(func(exec failsafe.Execution[T]) (T, error) {
		return op(exec.Context())
	})
}
