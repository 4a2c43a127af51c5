// Package boot opens what every service runs on and serves it: logging,
// telemetry, the migrated primary database, the optional read replica and
// Redis, then the HTTP server with its background workers, stopped in the
// order that lets in-flight work finish.
package boot

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/kit/web"
)

// telemetryShutdownTimeout bounds the final flush of traces and metrics.
const telemetryShutdownTimeout = 5 * time.Second

// Spec names what every service opens first: its logger, its telemetry and
// its migrated primary database.
type Spec struct {
	// Service is the service name in logs, telemetry and connection labels
	// ("claims database", "claims read replica").
	Service   string
	Base      config.Base
	Telemetry telemetry.Config
	// Migrations are applied to the primary before anything else uses it.
	Migrations fs.FS
}

// Runtime holds the dependencies shared by the services and closes them, in
// the reverse order of opening, on Close.
type Runtime struct {
	Log       *slog.Logger
	Telemetry *telemetry.Telemetry
	// Primary is the migrated primary database.
	Primary *pgxpool.Pool

	service string
	base    config.Base
	closers []func()
}

// Start sets up logging to logOut and telemetry, connects to the primary
// database (DATABASE_URL) and migrates it. On success the caller must
// Close the Runtime; on failure Start has closed what it opened.
func Start(ctx context.Context, s Spec, logOut io.Writer) (*Runtime, error) {
	rt := &Runtime{service: s.Service, base: s.Base, Log: logging.New(logOut, s.Service, s.Base)}
	if err := rt.start(ctx, s); err != nil {
		rt.Close()
		return nil, err
	}
	return rt, nil
}

func (rt *Runtime) start(ctx context.Context, s Spec) error {
	tel, err := telemetry.Setup(ctx, s.Telemetry, s.Base)
	if err != nil {
		return err
	}
	rt.Telemetry = tel
	rt.onClose(func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), telemetryShutdownTimeout)
		defer cancel()
		_ = tel.Shutdown(sctx)
	})
	pool, err := db.Connect(ctx, rt.Log, s.Service+" database", s.Base.DatabaseURL, retry.DefaultPolicy, tel.InstrumentPool)
	if err != nil {
		return err
	}
	rt.onClose(pool.Close)
	_ = tel.RecordPoolStats(pool, "primary")
	rt.Primary = pool
	if err := db.Migrate(ctx, rt.Log, pool, s.Migrations); err != nil {
		return fmt.Errorf("migrate %s database: %w", s.Service, err)
	}
	return nil
}

// OpenRead returns the pool for reads: a connection to DATABASE_READ_URL
// when it differs from DATABASE_URL, otherwise the primary.
func (rt *Runtime) OpenRead(ctx context.Context) (*pgxpool.Pool, error) {
	if rt.base.DatabaseReadURL == rt.base.DatabaseURL {
		return rt.Primary, nil
	}
	read, err := db.Connect(ctx, rt.Log, rt.service+" read replica", rt.base.DatabaseReadURL, retry.DefaultPolicy, rt.Telemetry.InstrumentPool)
	if err != nil {
		return nil, err
	}
	rt.onClose(read.Close)
	_ = rt.Telemetry.RecordPoolStats(read, "replica")
	return read, nil
}

// ConnectRedis connects to Redis at rawURL, waiting for it to answer; for
// services that cannot start without it.
func (rt *Runtime) ConnectRedis(ctx context.Context, rawURL string) (*redis.Client, error) {
	rdb, err := cache.Connect(ctx, rt.Log, rawURL, retry.DefaultPolicy, rt.Telemetry.InstrumentRedis)
	if err != nil {
		return nil, err
	}
	rt.onClose(func() { _ = rdb.Close() })
	return rdb, nil
}

// OpenRedis opens a client for Redis at rawURL without waiting for it; for
// services that run on while Redis is away.
func (rt *Runtime) OpenRedis(rawURL string) (*redis.Client, error) {
	rdb, err := cache.Open(rawURL, rt.Telemetry.InstrumentRedis)
	if err != nil {
		return nil, err
	}
	rt.onClose(func() { _ = rdb.Close() })
	return rdb, nil
}

// Serve listens on the service's address and serves h with the background
// workers running until ctx is cancelled. It stops the HTTP server first
// and the workers after it, so that what in-flight requests hand to the
// workers is still processed; the workers' context is cancelled then, and
// Serve waits for all of them to return.
func (rt *Runtime) Serve(ctx context.Context, h http.Handler, workers ...func(context.Context)) error {
	ln, err := net.Listen("tcp", rt.base.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", rt.base.Addr(), err)
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() { w(wctx) })
	}
	err = web.Serve(ctx, ln, h, rt.Log, web.ShutdownTimeout)
	stopWorkers()
	wg.Wait()
	return err
}

// Close closes what the Runtime opened, the last opened first, and flushes
// telemetry last.
func (rt *Runtime) Close() {
	for i := len(rt.closers) - 1; i >= 0; i-- {
		rt.closers[i]()
	}
	rt.closers = nil
}

func (rt *Runtime) onClose(f func()) { rt.closers = append(rt.closers, f) }
