// Package determine answers determinations from the rule tables in
// PostgreSQL, with the answers cached in Redis.
//
// Cache keys carry the rules revision (bumped by a trigger whenever a rule
// table changes) and the day the answer applies to (rule sets change at
// midnight UTC without any table changing). An instance learns of a new
// revision from a PostgreSQL notification, or from the revision a
// determination was read at, and from then on never reads an answer
// computed under an older revision; it also deletes those answers
// (explicit invalidation) rather than leave them to their TTL.
//
// The cache is optional: without Redis, or while Redis fails, every
// determination goes to the database. A circuit breaker keeps a failing
// Redis from adding its timeout to every request.
package determine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
)

// KeyPrefix starts every cached determination's key.
const KeyPrefix = "eligibility:determination:"

// cacheOpTimeout bounds one cache read or write: a cache that answers
// slower than the database is worse than none.
const cacheOpTimeout = 100 * time.Millisecond

// Options configure a Service.
type Options struct {
	// Redis caches answers; nil disables the cache.
	Redis *redis.Client
	// TTL is how long an answer stays cached; zero disables the cache.
	TTL time.Duration
	// Now is the clock that picks the day an answer applies to.
	Now func() time.Time
	// Meter records cache and determination counters; nil records none.
	Meter metric.Meter
}

// Service decides requests.
type Service struct {
	store   *rules.Store
	rdb     *redis.Client
	ttl     time.Duration
	now     func() time.Time
	l       *slog.Logger
	breaker circuitbreaker.CircuitBreaker[any]
	cacheEx failsafe.Executor[any]

	rev     atomic.Int64
	changed chan struct{}

	cacheOps  metric.Int64Counter
	decisions metric.Int64Counter
}

// New returns a service; call Init before the first determination.
func New(store *rules.Store, o Options, l *slog.Logger) *Service {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TTL <= 0 {
		o.Redis = nil
	}
	breaker := circuitbreaker.NewBuilder[any]().
		WithFailureThreshold(5).
		WithDelay(5 * time.Second).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			l.Warn("eligibility cache circuit breaker changed state", "from", e.OldState.String(), "to", e.NewState.String())
		}).
		Build()
	s := &Service{
		store: store, rdb: o.Redis, ttl: o.TTL, now: o.Now, l: l,
		breaker: breaker,
		cacheEx: failsafe.With[any](breaker),
		changed: make(chan struct{}, 1),
	}
	if o.Meter != nil {
		s.cacheOps, _ = o.Meter.Int64Counter("eligibility.cache.operations",
			metric.WithDescription("Determination cache lookups by result: hit, miss, error or skipped (breaker open)."))
		s.decisions, _ = o.Meter.Int64Counter("eligibility.determinations",
			metric.WithDescription("Determinations answered, by program and outcome."))
	}
	return s
}

// CacheEnabled reports whether answers are cached.
func (s *Service) CacheEnabled() bool { return s.rdb != nil }

// CacheCheck reports the cache's health for readiness: the breaker's state
// and a ping. A failing cache degrades the service but does not stop it.
func (s *Service) CacheCheck(ctx context.Context) error {
	if s.breaker.IsOpen() {
		return errors.New("circuit breaker open: determinations bypass the cache")
	}
	return s.rdb.Ping(ctx).Err()
}

// Init reads the current rules revision.
func (s *Service) Init(ctx context.Context) error {
	rev, err := s.store.Revision(ctx)
	if err != nil {
		return err
	}
	s.rev.Store(rev)
	return nil
}

// Revision is the newest rules revision this instance knows of.
func (s *Service) Revision() int64 { return s.rev.Load() }

// Determine decides req, from the cache when it can.
func (s *Service) Determine(ctx context.Context, req rules.Request) (rules.Determination, error) {
	if err := rules.Validate(req); err != nil {
		return rules.Determination{}, err
	}
	day := s.now().UTC().Format(time.DateOnly)
	rev := s.rev.Load()
	if d, ok := s.cached(ctx, key(rev, day, req)); ok {
		s.count(ctx, d)
		return d, nil
	}
	d, dbRev, err := s.store.Determine(ctx, req, s.now())
	if err != nil {
		return rules.Determination{}, err
	}
	switch {
	case dbRev > rev:
		// The rules changed and the notification has not arrived yet.
		s.Advance(dbRev)
		s.put(ctx, key(dbRev, day, req), d)
	case dbRev == rev:
		s.put(ctx, key(rev, day, req), d)
	default:
		// A replica behind the primary answered with older rules than
		// this instance knows of: answer, but do not cache it as current.
	}
	s.count(ctx, d)
	return d, nil
}

func key(rev int64, day string, r rules.Request) string {
	return fmt.Sprintf("%sr%d:%s:%s:%s:%d:%d", KeyPrefix, rev, day, r.Program, r.State, r.HouseholdSize, r.MonthlyIncomeCents)
}

func (s *Service) cached(ctx context.Context, k string) (rules.Determination, bool) {
	if s.rdb == nil {
		return rules.Determination{}, false
	}
	var (
		d     rules.Determination
		found bool
	)
	err := s.cacheEx.WithContext(ctx).Run(func() error {
		cctx, cancel := context.WithTimeout(ctx, cacheOpTimeout)
		defer cancel()
		raw, err := s.rdb.Get(cctx, k).Bytes()
		if errors.Is(err, redis.Nil) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		return json.Unmarshal(raw, &d)
	})
	switch {
	case errors.Is(err, circuitbreaker.ErrOpen):
		s.cacheResult(ctx, "skipped")
	case err != nil:
		s.cacheResult(ctx, "error")
		s.l.WarnContext(ctx, "determination cache read failed; asking the database", "err", err)
	case !found:
		s.cacheResult(ctx, "miss")
	default:
		s.cacheResult(ctx, "hit")
		return d, true
	}
	return rules.Determination{}, false
}

// put caches one answer; a failure only costs a later cache miss.
func (s *Service) put(ctx context.Context, k string, d rules.Determination) {
	if s.rdb == nil {
		return
	}
	raw, err := json.Marshal(d)
	if err != nil {
		return
	}
	_ = s.cacheEx.WithContext(ctx).Run(func() error {
		cctx, cancel := context.WithTimeout(ctx, cacheOpTimeout)
		defer cancel()
		return s.rdb.Set(cctx, k, raw, s.ttl).Err()
	})
}

func (s *Service) cacheResult(ctx context.Context, result string) {
	if s.cacheOps != nil {
		s.cacheOps.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
	}
}

func (s *Service) count(ctx context.Context, d rules.Determination) {
	if s.decisions != nil {
		s.decisions.Add(ctx, 1, metric.WithAttributes(
			attribute.String("program", d.Program), attribute.Bool("eligible", d.Eligible)))
	}
}

// Advance records that the rules are at revision rev or later. Answers
// cached under older revisions stop being read at once and are deleted by
// Run in the background.
func (s *Service) Advance(rev int64) {
	for {
		cur := s.rev.Load()
		if rev <= cur {
			return
		}
		if s.rev.CompareAndSwap(cur, rev) {
			s.l.Info("eligibility rules changed; cached determinations invalidated", "from", cur, "to", rev)
			select {
			case s.changed <- struct{}{}:
			default:
			}
			return
		}
	}
}

// Invalidate deletes every cached answer of a revision other than the
// current one and returns how many it deleted.
func (s *Service) Invalidate(ctx context.Context) (int, error) {
	if s.rdb == nil {
		return 0, nil
	}
	current := fmt.Sprintf("%sr%d:", KeyPrefix, s.rev.Load())
	deleted := 0
	iter := s.rdb.Scan(ctx, 0, KeyPrefix+"*", 500).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		n, err := s.rdb.Unlink(ctx, batch...).Result()
		deleted += int(n)
		batch = batch[:0]
		return err
	}
	for iter.Next(ctx) {
		if k := iter.Val(); !strings.HasPrefix(k, current) {
			batch = append(batch, k)
			if len(batch) == 500 {
				if err := flush(); err != nil {
					return deleted, fmt.Errorf("delete stale determinations: %w", err)
				}
			}
		}
	}
	if err := iter.Err(); err != nil {
		return deleted, fmt.Errorf("scan cached determinations: %w", err)
	}
	if err := flush(); err != nil {
		return deleted, fmt.Errorf("delete stale determinations: %w", err)
	}
	return deleted, nil
}

// Connect opens the dedicated connection that listens for rule changes.
type Connect func(ctx context.Context) (*pgx.Conn, error)

// Run listens for rule changes until ctx is cancelled: it subscribes to
// the rules channel, re-reads the revision after every (re)subscription
// (changes made while it was not listening announce nothing), advances
// on every notification, and deletes stale answers after each change.
func (s *Service) Run(ctx context.Context, connect Connect) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.changed:
			}
			ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			n, err := s.Invalidate(ictx)
			cancel()
			if err != nil {
				s.l.Warn("stale determinations not deleted; they expire with their TTL", "err", err)
			} else if n > 0 {
				s.l.Info("stale determinations deleted", "count", n)
			}
		}
	}()
	defer func() { <-done }()

	backoff := time.Duration(0)
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		err := s.listen(ctx, connect)
		if ctx.Err() != nil {
			return
		}
		backoff = min(max(2*backoff, 200*time.Millisecond), 5*time.Second)
		s.l.Warn("rules listener lost its connection, reconnecting", "err", err, "delay", backoff)
	}
}

func (s *Service) listen(ctx context.Context, connect Connect) error {
	conn, err := connect(ctx)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+rules.RevisionChannel); err != nil {
		return fmt.Errorf("listen for rule changes: %w", err)
	}
	var rev int64
	if err := conn.QueryRow(ctx, rules.RevisionQuery).Scan(&rev); err != nil {
		return fmt.Errorf("read rules revision: %w", err)
	}
	s.Advance(rev)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("wait for rule changes: %w", err)
		}
		rev, err := strconv.ParseInt(n.Payload, 10, 64)
		if err != nil {
			s.l.Warn("ignoring a rules notification without a revision", "payload", n.Payload)
			continue
		}
		s.Advance(rev)
	}
}
