// Package server wires the claims service together: configuration,
// telemetry, database (primary and read replica), Redis, the eligibility
// client, the outbox relay, the re-adjudication loop and the HTTP routes.
package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/claims/internal/api"
	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/eligibility"
	"github.com/tandemhq/tandem/services/claims/internal/outbox"
	"github.com/tandemhq/tandem/services/claims/internal/schema"
	"github.com/tandemhq/tandem/services/kit/boot"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/kit/web"
)

// Name is the service name in logs and errors.
const Name = "claims"

// DefaultReadjudicateInterval is how often pended claims are retried when
// nothing else prompts a pass.
const DefaultReadjudicateInterval = 5 * time.Second

// Config is the claims service's environment contract.
type Config struct {
	config.Base
	RedisURL string
	// EligibilityURL is the eligibility service's base URL; locally it is
	// the region's proxy, so eligibility's own blue/green applies.
	EligibilityURL string
	// Eligibility holds the policies of calls to eligibility.
	Eligibility eligibility.Options
	// ReadjudicateInterval is CLAIMS_READJUDICATE_INTERVAL.
	ReadjudicateInterval time.Duration
	Telemetry            telemetry.Config
}

// ReadConfig reads and validates the environment.
func ReadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		Base:     config.ReadBase(r),
		RedisURL: config.ReadRedisURL(r),
		EligibilityURL: r.URL("ELIGIBILITY_URL", true,
			"the eligibility service's base URL, e.g. http://127.0.0.1:8081", "http", "https"),
		Eligibility: eligibility.Options{
			Timeout:         r.Duration("ELIGIBILITY_TIMEOUT", 2*time.Second, time.Millisecond, time.Minute),
			AttemptTimeout:  r.Duration("ELIGIBILITY_ATTEMPT_TIMEOUT", 800*time.Millisecond, time.Millisecond, time.Minute),
			Retries:         r.Int("ELIGIBILITY_RETRIES", 2, 0, 10),
			BackoffFirst:    r.Duration("ELIGIBILITY_BACKOFF", 50*time.Millisecond, time.Millisecond, time.Minute),
			BackoffMax:      r.Duration("ELIGIBILITY_BACKOFF_MAX", 400*time.Millisecond, time.Millisecond, time.Minute),
			BreakerFailures: uint(r.Int("ELIGIBILITY_BREAKER_FAILURES", 5, 1, 1000)),
			BreakerDelay:    r.Duration("ELIGIBILITY_BREAKER_DELAY", 5*time.Second, 10*time.Millisecond, 10*time.Minute),
			MaxConcurrency:  uint(r.Int("ELIGIBILITY_MAX_CONCURRENCY", 32, 1, 10000)),
			MaxWait:         r.Duration("ELIGIBILITY_MAX_WAIT", 100*time.Millisecond, time.Millisecond, time.Minute),
		},
		ReadjudicateInterval: r.Duration("CLAIMS_READJUDICATE_INTERVAL", DefaultReadjudicateInterval, 10*time.Millisecond, time.Hour),
		Telemetry:            telemetry.ReadConfig(r, Name),
	}
	// Zero retries is a valid choice; the client's zero value means "the
	// default", so it is passed as a negative count that the client
	// clamps to none.
	if c.Eligibility.Retries == 0 {
		c.Eligibility.Retries = -1
	}
	if c.Eligibility.BackoffMax < c.Eligibility.BackoffFirst {
		r.Problem("ELIGIBILITY_BACKOFF_MAX (%s) is below ELIGIBILITY_BACKOFF (%s): set it at least as high", c.Eligibility.BackoffMax, c.Eligibility.BackoffFirst)
	}
	return c, r.Err()
}

// Deps are the open connections the service runs on.
type Deps struct {
	Primary *pgxpool.Pool
	// Read serves reporting lists; it may be Primary.
	Read      *pgxpool.Pool
	Redis     *redis.Client
	Telemetry *telemetry.Telemetry
}

// App is the assembled service.
type App struct {
	Handler     http.Handler
	Service     *claims.Service
	Relay       *outbox.Relay
	Eligibility *eligibility.Client
	// Recovered receives when the eligibility breaker closes again.
	Recovered chan struct{}
}

// Build assembles the service over open connections.
func Build(cfg Config, l *slog.Logger, d Deps, oo outbox.Options) *App {
	if d.Read == nil {
		d.Read = d.Primary
	}
	if d.Telemetry == nil {
		d.Telemetry = telemetry.Discard()
	}
	oo.Telemetry = d.Telemetry
	relay := outbox.New(d.Primary, d.Redis, oo, l)
	recovered := make(chan struct{}, 1)
	eo := cfg.Eligibility
	eo.WrapTransport = d.Telemetry.Transport
	eo.Meter = d.Telemetry.Meter(Name)
	eo.OnRecovered = func() {
		select {
		case recovered <- struct{}{}:
		default:
		}
	}
	client := eligibility.New(cfg.EligibilityURL, eo, l)
	store := claims.NewStore(d.Primary, d.Read, d.Telemetry.Inject)
	svc := claims.NewService(store, client, relay.Notify, l,
		claims.WithTelemetry(d.Telemetry.Tracer(Name), d.Telemetry.Meter(Name)))
	mux := http.NewServeMux()
	checks := []web.Check{{Name: "postgres", Ping: d.Primary.Ping}}
	if d.Read != d.Primary {
		checks = append(checks, web.Check{Name: "postgres-replica", Ping: d.Read.Ping, Optional: true})
	}
	checks = append(checks,
		// Claims are accepted while Redis is away: their events wait in
		// the outbox.
		web.Check{Name: "redis", Ping: func(ctx context.Context) error { return d.Redis.Ping(ctx).Err() }, Optional: true},
		// Claims are accepted while eligibility is away: they are pended.
		web.Check{Name: "eligibility", Optional: true, Ping: func(context.Context) error {
			if client.BreakerOpen() {
				return errors.New("circuit breaker open: new claims are pended until eligibility answers")
			}
			return nil
		}},
	)
	web.RegisterHealth(mux, checks...)
	api.Register(mux, svc)
	return &App{Handler: web.Stack(mux, cfg.Base, l, d.Telemetry), Service: svc, Relay: relay, Eligibility: client, Recovered: recovered}
}

// Run serves until ctx is cancelled, then stops the HTTP server first (so
// in-flight claims commit their events) and the background workers after
// it (so the relay drains those events).
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
	read, err := rt.OpenRead(ctx)
	if err != nil {
		return err
	}
	rdb, err := rt.ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}

	a := Build(cfg, rt.Log, Deps{Primary: rt.Primary, Read: read, Redis: rdb, Telemetry: rt.Telemetry}, outbox.Options{})
	return rt.Serve(ctx, a.Handler,
		a.Relay.Run,
		func(wctx context.Context) { a.Service.RunReadjudicator(wctx, cfg.ReadjudicateInterval, a.Recovered) },
	)
}
