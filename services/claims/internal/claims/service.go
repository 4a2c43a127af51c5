package claims

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/tandemhq/tandem/services/claims/internal/eligibility"
	"github.com/tandemhq/tandem/services/kit/db"
)

// Eligibility is what adjudication needs from the eligibility service.
type Eligibility interface {
	Determine(ctx context.Context, req eligibility.Request) (eligibility.Determination, error)
}

// ErrKeyReused means an Idempotency-Key came back with a different request.
var ErrKeyReused = errors.New("idempotency key was already used for a different request")

// Service adjudicates claims.
type Service struct {
	store *Store
	elig  Eligibility
	// published is called after a new event is committed, to wake the
	// outbox relay instead of waiting for its next poll.
	published func()
	now       func() time.Time
	l         *slog.Logger
	tracer    trace.Tracer
	decisions metric.Int64Counter
}

// Option adjusts a Service.
type Option func(*Service)

// WithTelemetry traces re-adjudication passes with tracer and counts
// decisions with meter.
func WithTelemetry(tracer trace.Tracer, meter metric.Meter) Option {
	return func(s *Service) {
		s.tracer = tracer
		s.decisions, _ = meter.Int64Counter("claims.decisions",
			metric.WithDescription("Claim decisions recorded, by status and by how they were reached (submission or re-adjudication)."))
	}
}

// NewService returns a Service. published may be nil.
func NewService(store *Store, elig Eligibility, published func(), l *slog.Logger, opts ...Option) *Service {
	if published == nil {
		published = func() {}
	}
	s := &Service{store: store, elig: elig, published: published, now: time.Now, l: l, tracer: noop.NewTracerProvider().Tracer("")}
	for _, o := range opts {
		o(s)
	}
	return s
}

func (s *Service) count(ctx context.Context, status, via string) {
	if s.decisions != nil {
		s.decisions.Add(ctx, 1, metric.WithAttributes(attribute.String("status", status), attribute.String("via", via)))
	}
}

// Submit adjudicates and stores a claim, once per idempotency key. A retry
// of the same request returns the stored claim with replayed set; a
// different request under the same key fails with ErrKeyReused. The
// submission must already be valid.
//
// Eligibility being down never fails a submission: the claim is pended.
// Only a 4xx from eligibility (it refused the request) is returned, as an
// *eligibility.RejectedError.
// dbAttempts bounds the tries of one database call that failed for a
// transient reason (about 1.5s of backoff in all: an in-region failover).
const dbAttempts = 7

func (s *Service) Submit(ctx context.Context, key string, sub Submission) (c Claim, replayed bool, err error) {
	hash := sub.Hash()
	byKey := func(ctx context.Context) (Claim, error) { return s.store.ByIdempotencyKey(ctx, key) }
	if existing, err := db.RetryTransient(ctx, dbAttempts, byKey); err == nil {
		return replay(existing, hash)
	} else if !errors.Is(err, ErrNotFound) {
		return Claim{}, false, err
	}

	c = Claim{
		ID:             uuid.NewString(),
		Submission:     sub,
		CreatedAt:      s.now().UTC().Truncate(time.Microsecond),
		idempotencyKey: key,
		requestHash:    hash,
	}
	if err := s.adjudicate(ctx, &c); err != nil {
		return Claim{}, false, err
	}
	if c.Status != StatusPended {
		at := c.CreatedAt
		c.DecidedAt = &at
	}
	// A broken connection may hide a commit: the retry then finds the
	// claim under its key and replays it.
	eventID := uuid.NewString()
	created, err := db.RetryTransient(ctx, dbAttempts, func(ctx context.Context) (bool, error) { return s.store.Create(ctx, c, eventID) })
	if err != nil {
		return Claim{}, false, err
	}
	if !created {
		// A concurrent request with the same key committed first.
		existing, err := db.RetryTransient(ctx, dbAttempts, byKey)
		if err != nil {
			return Claim{}, false, err
		}
		return replay(existing, hash)
	}
	s.published()
	s.count(ctx, c.Status, "submission")
	s.l.InfoContext(ctx, "claim stored", "claimId", c.ID, "status", c.Status)
	return c, false, nil
}

func replay(existing Claim, hash []byte) (Claim, bool, error) {
	if !bytes.Equal(existing.requestHash, hash) {
		return Claim{}, false, ErrKeyReused
	}
	return existing, true, nil
}

// adjudicate sets c's status from an eligibility determination, pending it
// when none can be had.
func (s *Service) adjudicate(ctx context.Context, c *Claim) error {
	d, err := s.elig.Determine(ctx, eligibility.Request{
		Program:            "medicaid",
		State:              c.State,
		HouseholdSize:      c.HouseholdSize,
		MonthlyIncomeCents: c.MonthlyIncomeCents,
	})
	var rejected *eligibility.RejectedError
	switch {
	case errors.As(err, &rejected):
		return rejected
	case err != nil:
		s.l.WarnContext(ctx, "eligibility unavailable, pending claim", "claimId", c.ID, "err", err)
		c.Status = StatusPended
		c.StatusReason = "eligibility could not be determined; the claim will be decided once the eligibility service answers"
		return nil
	}
	limit := d.IncomeLimitCents
	c.RuleSet, c.IncomeLimitCents = d.RuleSet, &limit
	if d.Eligible {
		c.Status = StatusApproved
		c.StatusReason = fmt.Sprintf("monthly income is within the Medicaid limit of %s (%s)", dollars(limit), d.RuleSet)
	} else {
		c.Status = StatusDenied
		c.StatusReason = fmt.Sprintf("monthly income is above the Medicaid limit of %s (%s)", dollars(limit), d.RuleSet)
	}
	return nil
}

func dollars(cents int64) string {
	return fmt.Sprintf("$%d.%02d", cents/100, cents%100)
}

// List returns a page of claims matching f, newest first, and whether more
// follow.
func (s *Service) List(ctx context.Context, f Filter) ([]Claim, bool, error) {
	return s.store.List(ctx, f)
}

// Get returns the claim with id.
func (s *Service) Get(ctx context.Context, id string) (Claim, error) {
	if _, err := uuid.Parse(id); err != nil {
		return Claim{}, ErrNotFound
	}
	return db.RetryTransient(ctx, dbAttempts, func(ctx context.Context) (Claim, error) { return s.store.Get(ctx, id) })
}

// ReadjudicateBatch is how many pended claims one pass looks at.
const ReadjudicateBatch = 20

// Readjudicate tries to decide pended claims, oldest first, and returns how
// many it decided. It stops at the first claim eligibility cannot answer
// for: the service is still down, so the rest would only feed the breaker.
func (s *Service) Readjudicate(ctx context.Context) (int, error) {
	pended, err := s.store.Pended(ctx, ReadjudicateBatch)
	if err != nil || len(pended) == 0 {
		return 0, err
	}
	ctx, span := s.tracer.Start(ctx, "claims.readjudicate", trace.WithAttributes(attribute.Int("claims.pended", len(pended))))
	defer span.End()
	decided := 0
	for _, c := range pended {
		next := c
		err := s.adjudicate(ctx, &next)
		var rejected *eligibility.RejectedError
		switch {
		case errors.As(err, &rejected):
			next.Status = StatusDenied
			next.StatusReason = "eligibility refused the claim's data: " + rejected.Detail
		case err != nil:
			return decided, err
		case next.Status == StatusPended:
			return decided, nil
		}
		at := s.now().UTC().Truncate(time.Microsecond)
		next.DecidedAt = &at
		ok, err := s.store.Decide(ctx, next, uuid.NewString())
		if err != nil {
			return decided, err
		}
		if ok {
			decided++
			s.published()
			s.count(ctx, next.Status, "readjudication")
			s.l.InfoContext(ctx, "pended claim decided", "claimId", next.ID, "status", next.Status)
		}
	}
	return decided, nil
}

// RunReadjudicator runs Readjudicate every interval, and at once when kick
// receives (the eligibility breaker closed, say), until ctx is cancelled.
// A pass that decided a full batch is followed by another at once.
func (s *Service) RunReadjudicator(ctx context.Context, interval time.Duration, kick <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	again := make(chan struct{}, 1)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		case <-again:
		}
		// A pass in flight finishes even during shutdown: each decision
		// is its own transaction, so stopping midway loses nothing, but
		// finishing avoids a wasted eligibility call.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		n, err := s.Readjudicate(pctx)
		if err != nil {
			s.l.Warn("re-adjudication pass failed", "err", err)
		} else if n == ReadjudicateBatch {
			select {
			case again <- struct{}{}:
			default:
			}
		}
		cancel()
	}
}
