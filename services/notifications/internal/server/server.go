// Package server wires the notifications service together: configuration,
// databases, Redis, the stream consumer and the HTTP routes.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/web"
	"github.com/tandemhq/tandem/services/notifications/internal/api"
	"github.com/tandemhq/tandem/services/notifications/internal/consumer"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
	"github.com/tandemhq/tandem/services/notifications/internal/schema"
)

// Name is the service name in logs and errors.
const Name = "notifications"

// Config is the notifications service's environment contract.
type Config struct {
	config.Base
	RedisURL string
}

// ReadConfig reads and validates the environment.
func ReadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{Base: config.ReadBase(r), RedisURL: config.ReadRedisURL(r)}
	return c, r.Err()
}

// App is the assembled service.
type App struct {
	Handler  http.Handler
	Store    *notify.Store
	Consumer *consumer.Consumer
}

// Build assembles the service over open connections. replica may be the
// primary pool.
func Build(cfg Config, l *slog.Logger, primary, replica *pgxpool.Pool, rdb *redis.Client, co consumer.Options) *App {
	store := notify.NewStore(primary, replica)
	if co.Name == "" {
		co.Name = consumer.ConsumerName(cfg.Region, cfg.Color)
	}
	mux := http.NewServeMux()
	web.RegisterHealth(mux,
		web.Check{Name: "postgres", Ping: primary.Ping},
		web.Check{Name: "redis", Ping: func(ctx context.Context) error { return rdb.Ping(ctx).Err() }},
	)
	api.Register(mux, store)
	return &App{
		Handler:  web.Stack(mux, cfg.Base, l),
		Store:    store,
		Consumer: consumer.New(rdb, store, co, l),
	}
}

// Run serves until ctx is cancelled, then stops the HTTP server and the
// consumer.
func Run(ctx context.Context, lookup config.Lookup, logOut io.Writer) error {
	cfg, err := ReadConfig(lookup)
	if err != nil {
		return err
	}
	l := logging.New(logOut, Name, cfg.Base)

	primary, err := db.Connect(ctx, l, "notifications database", cfg.DatabaseURL, retry.DefaultPolicy)
	if err != nil {
		return err
	}
	defer primary.Close()
	if err := db.Migrate(ctx, l, primary, schema.Migrations()); err != nil {
		return fmt.Errorf("migrate notifications database: %w", err)
	}
	replica := primary
	if cfg.DatabaseReadURL != cfg.DatabaseURL {
		replica, err = db.Connect(ctx, l, "notifications read replica", cfg.DatabaseReadURL, retry.DefaultPolicy)
		if err != nil {
			return err
		}
		defer replica.Close()
	}
	rdb, err := cache.Connect(ctx, l, cfg.RedisURL, retry.DefaultPolicy)
	if err != nil {
		return err
	}
	defer rdb.Close()

	a := Build(cfg, l, primary, replica, rdb, consumer.Options{})
	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { a.Consumer.Run(wctx) })

	err = web.Serve(ctx, ln, a.Handler, l, web.ShutdownTimeout)
	stopWorkers()
	wg.Wait()
	return err
}
