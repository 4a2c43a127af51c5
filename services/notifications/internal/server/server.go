// Package server wires the notifications service together: configuration,
// telemetry, databases, Redis, the stream consumer, the webhook delivery
// worker and the HTTP routes.
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

	"github.com/tandemhq/tandem/services/kit/boot"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/kit/web"
	"github.com/tandemhq/tandem/services/notifications/internal/api"
	"github.com/tandemhq/tandem/services/notifications/internal/consumer"
	"github.com/tandemhq/tandem/services/notifications/internal/delivery"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
	"github.com/tandemhq/tandem/services/notifications/internal/schema"
)

// Name is the service name in logs and errors.
const Name = "notifications"

// Config is the notifications service's environment contract.
type Config struct {
	config.Base
	RedisURL string
	// Webhook holds the delivery settings; Webhook.URL is
	// NOTIFICATIONS_WEBHOOK_URL, and without it notifications are recorded
	// but not delivered.
	Webhook delivery.Options
	// MaxDeliveries and MinIdle tune the stream consumer
	// (STREAM_MAX_DELIVERIES, STREAM_MIN_IDLE).
	MaxDeliveries int64
	MinIdle       time.Duration
	Telemetry     telemetry.Config
}

// ReadConfig reads and validates the environment.
func ReadConfig(lookup config.Lookup) (Config, error) {
	r := config.NewReader(lookup)
	c := Config{
		Base:     config.ReadBase(r),
		RedisURL: config.ReadRedisURL(r),
		Webhook: delivery.Options{
			URL: r.URL("NOTIFICATIONS_WEBHOOK_URL", false,
				"the URL that receives each notification as a JSON POST, e.g. https://members.example.org/hooks/claims", "http", "https"),
			Timeout:         r.Duration("WEBHOOK_TIMEOUT", 10*time.Second, time.Millisecond, 10*time.Minute),
			AttemptTimeout:  r.Duration("WEBHOOK_ATTEMPT_TIMEOUT", 3*time.Second, time.Millisecond, 10*time.Minute),
			Retries:         r.Int("WEBHOOK_RETRIES", 2, 0, 10),
			BreakerFailures: uint(r.Int("WEBHOOK_BREAKER_FAILURES", 5, 1, 1000)),
			BreakerDelay:    r.Duration("WEBHOOK_BREAKER_DELAY", 10*time.Second, 10*time.Millisecond, time.Hour),
			MaxConcurrency:  uint(r.Int("WEBHOOK_MAX_CONCURRENCY", 8, 1, 1000)),
			MaxAttempts:     r.Int("WEBHOOK_MAX_ATTEMPTS", 8, 1, 1000),
			RoundBackoff:    r.Duration("WEBHOOK_RETRY_BACKOFF", 2*time.Second, 10*time.Millisecond, time.Hour),
		},
		MaxDeliveries: int64(r.Int("STREAM_MAX_DELIVERIES", 5, 1, 1000)),
		MinIdle:       r.Duration("STREAM_MIN_IDLE", 30*time.Second, 100*time.Millisecond, time.Hour),
		Telemetry:     telemetry.ReadConfig(r, Name),
	}
	if c.Webhook.Retries == 0 {
		c.Webhook.Retries = -1 // none; the worker's zero value means its default
	}
	return c, r.Err()
}

// Deps are the open connections the service runs on.
type Deps struct {
	Primary *pgxpool.Pool
	// Replica serves lists; it may be Primary.
	Replica   *pgxpool.Pool
	Redis     *redis.Client
	Telemetry *telemetry.Telemetry
}

// App is the assembled service.
type App struct {
	Handler  http.Handler
	Store    *notify.Store
	Consumer *consumer.Consumer
	// Delivery is nil when no webhook is configured.
	Delivery *delivery.Worker
}

// wakingRecorder wakes the delivery worker after a new notification.
type wakingRecorder struct {
	*notify.Store
	wake func()
}

func (w wakingRecorder) Record(ctx context.Context, e events.ClaimDecided, streamID string) (notify.Outcome, error) {
	out, err := w.Store.Record(ctx, e, streamID)
	if err == nil && out == notify.Stored {
		w.wake()
	}
	return out, err
}

// Build assembles the service over open connections.
func Build(cfg Config, l *slog.Logger, d Deps, co consumer.Options) *App {
	if d.Replica == nil {
		d.Replica = d.Primary
	}
	if d.Telemetry == nil {
		d.Telemetry = telemetry.Discard()
	}
	webhook := cfg.Webhook.URL != ""
	store := notify.NewStore(d.Primary, d.Replica, webhook, d.Telemetry.Inject)
	a := &App{Store: store}
	var rec consumer.Recorder = store
	if webhook {
		wo := cfg.Webhook
		wo.Telemetry = d.Telemetry
		a.Delivery = delivery.New(d.Primary, wo, l)
		rec = wakingRecorder{Store: store, wake: a.Delivery.Notify}
	}
	if co.Name == "" {
		co.Name = consumer.ConsumerName(cfg.Region, cfg.Color)
	}
	if co.MaxDeliveries == 0 {
		co.MaxDeliveries = cfg.MaxDeliveries
	}
	if co.MinIdle == 0 {
		co.MinIdle = cfg.MinIdle
	}
	co.Ready = store.Ping
	co.Telemetry = d.Telemetry
	a.Consumer = consumer.New(d.Redis, rec, co, l)

	checks := []web.Check{{Name: "postgres", Ping: d.Primary.Ping}}
	if d.Replica != d.Primary {
		checks = append(checks, web.Check{Name: "postgres-replica", Ping: d.Replica.Ping, Optional: true})
	}
	// Without Redis no new events arrive, but every recorded notification
	// can still be read and delivered.
	checks = append(checks, web.Check{Name: "redis", Optional: true, Ping: func(ctx context.Context) error { return d.Redis.Ping(ctx).Err() }})
	if a.Delivery != nil {
		checks = append(checks, web.Check{Name: "webhook", Optional: true, Ping: func(context.Context) error {
			if a.Delivery.BreakerOpen() {
				return errors.New("circuit breaker open: deliveries wait until the webhook answers")
			}
			return nil
		}})
	}
	mux := http.NewServeMux()
	web.RegisterHealth(mux, checks...)
	api.Register(mux, store)
	a.Handler = web.Stack(mux, cfg.Base, l, d.Telemetry)
	return a
}

// Run serves until ctx is cancelled, then stops the HTTP server, the
// consumer (finishing the entries it holds) and the delivery worker
// (finishing the round in flight).
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
	replica, err := rt.OpenRead(ctx)
	if err != nil {
		return err
	}
	rdb, err := rt.ConnectRedis(ctx, cfg.RedisURL)
	if err != nil {
		return err
	}

	a := Build(cfg, rt.Log, Deps{Primary: rt.Primary, Replica: replica, Redis: rdb, Telemetry: rt.Telemetry}, consumer.Options{})
	workers := []func(context.Context){a.Consumer.Run}
	if a.Delivery != nil {
		workers = append(workers, a.Delivery.Run)
	} else {
		rt.Log.Warn("NOTIFICATIONS_WEBHOOK_URL is not set: notifications are recorded but not delivered")
	}
	return rt.Serve(ctx, a.Handler, workers...)
}
