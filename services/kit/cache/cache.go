// Package cache opens the Redis client the services use for event streams
// and caching.
package cache

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/services/kit/retry"
)

// Connect parses rawURL (redis://[:password@]host:port/db), and waits with
// backoff until the server answers a ping. Rejected credentials fail at once.
// instrument is applied to the client before its first command
// (telemetry.InstrumentRedis, say).
func Connect(ctx context.Context, l *slog.Logger, rawURL string, p retry.Policy, instrument ...func(*redis.Client) error) (*redis.Client, error) {
	client, err := Open(rawURL, instrument...)
	if err != nil {
		return nil, err
	}
	opt := client.Options()
	ping := func(ctx context.Context) error { return client.Ping(ctx).Err() }
	if err := retry.Until(ctx, l, "redis", p, ping, isPermanent); err != nil {
		_ = client.Close()
		return nil, err
	}
	l.Info("redis connected", "addr", opt.Addr, "db", opt.DB)
	return client, nil
}

// Open returns a client of rawURL without contacting the server, for a
// service that can run without Redis (using it only as a cache) and must
// not wait for it at start.
func Open(rawURL string, instrument ...func(*redis.Client) error) (*redis.Client, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		// The parse error can quote the URL, password included.
		return nil, fmt.Errorf("parse REDIS_URL: it is not a valid redis:// URL")
	}
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	client := redis.NewClient(opt)
	for _, in := range instrument {
		if err := in(client); err != nil {
			_ = client.Close()
			return nil, err
		}
	}
	return client, nil
}

func isPermanent(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "WRONGPASS") || strings.HasPrefix(msg, "NOAUTH") || strings.Contains(msg, "invalid password")
}
