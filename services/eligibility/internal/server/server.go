// Package server wires the eligibility service together: configuration,
// telemetry, database, migrations, the rules check, the determination
// cache and its invalidation, and the HTTP routes.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/eligibility/internal/api"
	"github.com/tandemhq/tandem/services/eligibility/internal/determine"
	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/eligibility/internal/schema"
	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/kit/web"
)

// Name is the service name in logs and errors.
const Name = "eligibility"

// DefaultCacheTTL is how long a determination stays cached by default.
// Rule changes invalidate explicitly; the TTL only bounds memory and the
// life of an answer whose invalidation was missed.
const DefaultCacheTTL = 10 * time.Minute

// Config is the eligibility service's environment contract.
type Config struct {
	config.Base
	// RedisURL is optional: without it determinations are not cached.
	RedisURL string
	// CacheTTL is ELIGIBILITY_CACHE_TTL; zero disables the cache.
	CacheTTL  time.Duration
	Telemetry telemetry.Config
}

// ReadConfig reads and validates the environment.
func ReadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		Base:      config.ReadBase(r),
		RedisURL:  config.ReadOptionalRedisURL(r),
		CacheTTL:  r.Duration("ELIGIBILITY_CACHE_TTL", DefaultCacheTTL, 0, 24*time.Hour),
		Telemetry: telemetry.ReadConfig(r, Name),
	}
	return c, r.Err()
}

// Run serves until ctx is cancelled.
func Run(ctx context.Context, lookup config.Lookup, logOut io.Writer) error {
	cfg, err := ReadConfig(lookup)
	if err != nil {
		return err
	}
	l := logging.New(logOut, Name, cfg.Base)
	tel, err := telemetry.Setup(ctx, cfg.Telemetry, cfg.Base)
	if err != nil {
		return err
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()

	pool, err := db.Connect(ctx, l, "eligibility database", cfg.DatabaseURL, retry.DefaultPolicy, tel.InstrumentPool)
	if err != nil {
		return err
	}
	defer pool.Close()
	_ = tel.RecordPoolStats(pool, "primary")
	if err := db.Migrate(ctx, l, pool, schema.Migrations()); err != nil {
		return fmt.Errorf("migrate eligibility database: %w", err)
	}
	// The whole rule set is checked once at start: a service whose rules
	// are incomplete must not start answering.
	table, err := rules.Load(ctx, pool, time.Now)
	if err != nil {
		return err
	}
	for _, lapsed := range table.Lapsed() {
		l.Warn("rule set past its effective period; add its successor in a migration", "ruleSet", lapsed)
	}
	read := pool
	if cfg.DatabaseReadURL != cfg.DatabaseURL {
		read, err = db.Connect(ctx, l, "eligibility read replica", cfg.DatabaseReadURL, retry.DefaultPolicy, tel.InstrumentPool)
		if err != nil {
			return err
		}
		defer read.Close()
		_ = tel.RecordPoolStats(read, "replica")
	}
	var rdb *redis.Client
	if cfg.RedisURL != "" && cfg.CacheTTL > 0 {
		// Redis is only a cache here: the service starts without waiting
		// for it and serves from the database while it is away.
		rdb, err = cache.Open(cfg.RedisURL, tel.InstrumentRedis)
		if err != nil {
			return err
		}
		defer rdb.Close()
	}
	svc := determine.New(rules.NewStore(read, pool), determine.Options{
		Redis: rdb, TTL: cfg.CacheTTL, Meter: tel.Meter(Name),
	}, l)
	if err := svc.Init(ctx); err != nil {
		return err
	}
	l.Info("determinations ready", "cache", svc.CacheEnabled(), "cacheTTL", cfg.CacheTTL.String(), "rulesRevision", svc.Revision())

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	if svc.CacheEnabled() {
		listenCfg := pool.Config().ConnConfig.Copy()
		listenCfg.Tracer = nil
		wg.Go(func() {
			svc.Run(wctx, func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, listenCfg) })
		})
	}
	err = web.Serve(ctx, ln, Handler(cfg.Base, l, tel, svc, Checks(pool, read, svc)...), l, web.ShutdownTimeout)
	stopWorkers()
	wg.Wait()
	return err
}

// Checks are the readiness checks: the primary is required (migrations,
// rule-change notifications, fallback reads); the replica and the cache
// are optional.
func Checks(primary, read *pgxpool.Pool, svc *determine.Service) []web.Check {
	checks := []web.Check{{Name: "postgres", Ping: primary.Ping}}
	if read != primary {
		checks = append(checks, web.Check{Name: "postgres-replica", Ping: read.Ping, Optional: true})
	}
	if svc.CacheEnabled() {
		checks = append(checks, web.Check{Name: "redis", Ping: svc.CacheCheck, Optional: true})
	}
	return checks
}

// Handler is the service's complete HTTP handler: routes, health endpoints,
// metrics and the shared middleware.
func Handler(b config.Base, l *slog.Logger, tel *telemetry.Telemetry, d api.Determiner, checks ...web.Check) http.Handler {
	mux := http.NewServeMux()
	web.RegisterHealth(mux, checks...)
	api.Register(mux, d)
	return web.Stack(mux, b, l, tel)
}
