// Package server wires the claims service together: configuration,
// database, Redis, the eligibility client, the outbox relay, the
// re-adjudication loop and the HTTP routes.
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

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/claims/internal/api"
	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/eligibility"
	"github.com/tandemhq/tandem/services/claims/internal/outbox"
	"github.com/tandemhq/tandem/services/claims/internal/schema"
	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/web"
)

// Name is the service name in logs and errors.
const Name = "claims"

// ReadjudicateInterval is how often pended claims are retried.
const ReadjudicateInterval = 5 * time.Second

// Config is the claims service's environment contract.
type Config struct {
	config.Base
	RedisURL string
	// EligibilityURL is the eligibility service's base URL; locally it is
	// the region's proxy, so eligibility's own blue/green applies.
	EligibilityURL string
}

// ReadConfig reads and validates the environment.
func ReadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		Base:     config.ReadBase(r),
		RedisURL: config.ReadRedisURL(r),
		EligibilityURL: r.URL("ELIGIBILITY_URL", true,
			"the eligibility service's base URL, e.g. http://127.0.0.1:8081", "http", "https"),
	}
	return c, r.Err()
}

// App is the assembled service.
type App struct {
	Handler http.Handler
	Service *claims.Service
	Relay   *outbox.Relay
}

// Build assembles the service over open connections.
func Build(cfg Config, l *slog.Logger, pool *pgxpool.Pool, rdb *redis.Client, eo eligibility.Options, oo outbox.Options) *App {
	relay := outbox.New(pool, rdb, oo, l)
	svc := claims.NewService(claims.NewStore(pool), eligibility.New(cfg.EligibilityURL, eo, l), relay.Notify, l)
	mux := http.NewServeMux()
	web.RegisterHealth(mux,
		web.Check{Name: "postgres", Ping: pool.Ping},
		web.Check{Name: "redis", Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	)
	api.Register(mux, svc)
	return &App{Handler: web.Stack(mux, cfg.Base, l), Service: svc, Relay: relay}
}

// Run serves until ctx is cancelled, then stops the HTTP server first (so
// in-flight claims commit their events) and the background workers after
// it (so the relay drains those events).
func Run(ctx context.Context, lookup config.Lookup, logOut io.Writer) error {
	cfg, err := ReadConfig(lookup)
	if err != nil {
		return err
	}
	l := logging.New(logOut, Name, cfg.Base)

	pool, err := db.Connect(ctx, l, "claims database", cfg.DatabaseURL, retry.DefaultPolicy)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := db.Migrate(ctx, l, pool, schema.Migrations()); err != nil {
		return fmt.Errorf("migrate claims database: %w", err)
	}
	rdb, err := cache.Connect(ctx, l, cfg.RedisURL, retry.DefaultPolicy)
	if err != nil {
		return err
	}
	defer rdb.Close()

	a := Build(cfg, l, pool, rdb, eligibility.Options{}, outbox.Options{})
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}

	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { a.Relay.Run(wctx) })
	wg.Go(func() { a.Service.RunReadjudicator(wctx, ReadjudicateInterval) })

	err = web.Serve(ctx, ln, a.Handler, l, web.ShutdownTimeout)
	stopWorkers()
	wg.Wait()
	return err
}
