// Package server wires the eligibility service together: configuration,
// telemetry, database, migrations, the rules check, the determination
// cache and its invalidation, and the HTTP routes.
package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/eligibility/internal/api"
	"github.com/tandemhq/tandem/services/eligibility/internal/determine"
	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/eligibility/internal/schema"
	"github.com/tandemhq/tandem/services/kit/boot"
	"github.com/tandemhq/tandem/services/kit/config"
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
	rt, err := boot.Start(ctx, boot.Spec{Service: Name, Base: cfg.Base, Telemetry: cfg.Telemetry, Migrations: schema.Migrations()}, logOut)
	if err != nil {
		return err
	}
	defer rt.Close()
	l, pool := rt.Log, rt.Primary
	// The whole rule set is checked once at start: a service whose rules
	// are incomplete must not start answering.
	table, err := rules.Load(ctx, pool, time.Now)
	if err != nil {
		return err
	}
	for _, lapsed := range table.Lapsed() {
		l.Warn("rule set past its effective period; add its successor in a migration", "ruleSet", lapsed)
	}
	read, err := rt.OpenRead(ctx)
	if err != nil {
		return err
	}
	var rdb *redis.Client
	if cfg.RedisURL != "" && cfg.CacheTTL > 0 {
		// Redis is only a cache here: the service starts without waiting
		// for it and serves from the database while it is away.
		rdb, err = rt.OpenRedis(cfg.RedisURL)
		if err != nil {
			return err
		}
	}
	svc := determine.New(rules.NewStore(read, pool), determine.Options{
		Redis: rdb, TTL: cfg.CacheTTL, Meter: rt.Telemetry.Meter(Name),
	}, l)
	if err := svc.Init(ctx); err != nil {
		return err
	}
	l.Info("determinations ready", "cache", svc.CacheEnabled(), "cacheTTL", cfg.CacheTTL.String(), "rulesRevision", svc.Revision())

	var workers []func(context.Context)
	if svc.CacheEnabled() {
		listenCfg := pool.Config().ConnConfig.Copy()
		listenCfg.Tracer = nil
		workers = append(workers, func(wctx context.Context) {
			svc.Run(wctx, func(ctx context.Context) (*pgx.Conn, error) { return pgx.ConnectConfig(ctx, listenCfg) })
		})
	}
	return rt.Serve(ctx, Handler(cfg.Base, l, rt.Telemetry, svc, Checks(pool, read, svc)...), workers...)
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
