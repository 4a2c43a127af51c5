// Package server wires the eligibility service together: configuration,
// database, migrations, rule table and HTTP routes.
package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/services/eligibility/internal/api"
	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/eligibility/internal/schema"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/web"
)

// Name is the service name in logs and errors.
const Name = "eligibility"

// Config is the eligibility service's environment contract.
type Config struct {
	config.Base
}

// ReadConfig reads and validates the environment.
func ReadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{Base: config.ReadBase(r)}
	return c, r.Err()
}

// Run serves until ctx is cancelled.
func Run(ctx context.Context, lookup config.Lookup, logOut io.Writer) error {
	cfg, err := ReadConfig(lookup)
	if err != nil {
		return err
	}
	l := logging.New(logOut, Name, cfg.Base)

	pool, err := db.Connect(ctx, l, "eligibility database", cfg.DatabaseURL, retry.DefaultPolicy)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := db.Migrate(ctx, l, pool, schema.Migrations()); err != nil {
		return fmt.Errorf("migrate eligibility database: %w", err)
	}
	table, err := rules.Load(ctx, pool, time.Now)
	if err != nil {
		return err
	}
	for _, lapsed := range table.Lapsed() {
		l.Warn("rule set past its effective period; add its successor in a migration", "ruleSet", lapsed)
	}

	ln, err := net.Listen("tcp", cfg.Addr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", cfg.Addr(), err)
	}
	return web.Serve(ctx, ln, Handler(cfg.Base, l, pool, table), l, web.ShutdownTimeout)
}

// Handler is the service's complete HTTP handler: routes, health endpoints
// and the shared middleware.
func Handler(b config.Base, l *slog.Logger, pool *pgxpool.Pool, table *rules.Table) http.Handler {
	mux := http.NewServeMux()
	web.RegisterHealth(mux, web.Check{Name: "postgres", Ping: pool.Ping})
	api.Register(mux, table)
	return web.Stack(mux, b, l)
}
