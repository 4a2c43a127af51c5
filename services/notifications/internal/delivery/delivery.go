// Package delivery sends recorded notifications to the configured webhook
// and records how each delivery went.
//
// Delivery is decoupled from stream consumption: the consumer only records
// a notification (pending), and this worker delivers pending notifications
// in the background, so a slow or failing receiver never holds up the
// stream. Each POST carries an Idempotency-Key (the notification id): a
// notification may reach the receiver more than once (a retry after a
// response was lost, a worker that died before recording success), and the
// key lets the receiver keep exactly one.
//
// Every delivery goes through failsafe-go policies, outermost first: a
// fallback that turns a failure into "try again later", an overall
// timeout, a bulkhead bounding deliveries in flight, retries with
// exponential backoff and jitter (safe thanks to the idempotency key) for
// connection errors, timeouts and 5xx/408/429 answers, a circuit breaker,
// and a per-attempt timeout. Between rounds a notification waits with
// exponential backoff; after MaxAttempts rounds it is marked failed. Any
// other 4xx answer marks it failed at once: the receiver refused it.
package delivery

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/failsafe-go/failsafe-go"
	"github.com/failsafe-go/failsafe-go/bulkhead"
	"github.com/failsafe-go/failsafe-go/circuitbreaker"
	"github.com/failsafe-go/failsafe-go/fallback"
	"github.com/failsafe-go/failsafe-go/retrypolicy"
	"github.com/failsafe-go/failsafe-go/timeout"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/telemetry"
)

// HeaderIdempotencyKey carries the notification id on every POST.
const HeaderIdempotencyKey = "Idempotency-Key"

// Options tune the worker. Zero fields take their defaults.
type Options struct {
	// URL is the webhook; the worker is not started without one.
	URL string
	// Timeout bounds one delivery round, retries included (default 10s);
	// AttemptTimeout bounds one POST (default 3s).
	Timeout, AttemptTimeout time.Duration
	// Retries within a round (default 2; negative means none), with
	// backoff from BackoffFirst to BackoffMax (defaults 100ms, 1s).
	Retries                  int
	BackoffFirst, BackoffMax time.Duration
	// BreakerFailures consecutive failed POSTs open the breaker (default
	// 5) for BreakerDelay (default 10s).
	BreakerFailures uint
	BreakerDelay    time.Duration
	// MaxConcurrency bounds deliveries in flight (default 8); a delivery
	// waits up to MaxWait (default 1s) for a slot, else it is deferred.
	MaxConcurrency uint
	MaxWait        time.Duration
	// MaxAttempts is how many rounds a notification gets before it is
	// marked failed (default 8). Rounds are RoundBackoff apart, doubling
	// up to RoundBackoffMax (defaults 2s and 5m).
	MaxAttempts                   int
	RoundBackoff, RoundBackoffMax time.Duration
	// Batch is how many due notifications one pass takes (default 32).
	Batch int
	// Poll is how often an idle worker looks for due notifications
	// (default 1s); a new notification wakes it at once.
	Poll time.Duration
	// Telemetry traces and counts deliveries; nil means telemetry.Discard.
	Telemetry *telemetry.Telemetry
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Timeout, 10*time.Second)
	def(&o.AttemptTimeout, 3*time.Second)
	def(&o.BackoffFirst, 100*time.Millisecond)
	def(&o.BackoffMax, time.Second)
	def(&o.BreakerDelay, 10*time.Second)
	def(&o.MaxWait, time.Second)
	def(&o.RoundBackoff, 2*time.Second)
	def(&o.RoundBackoffMax, 5*time.Minute)
	def(&o.Poll, time.Second)
	switch {
	case o.Retries == 0:
		o.Retries = 2
	case o.Retries < 0:
		o.Retries = 0
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.MaxConcurrency == 0 {
		o.MaxConcurrency = 8
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.Batch <= 0 {
		o.Batch = 32
	}
	if o.Telemetry == nil {
		o.Telemetry = telemetry.Discard()
	}
	return o
}

// Payload is the JSON body the webhook receives.
type Payload struct {
	NotificationID string    `json:"notificationId"`
	EventID        string    `json:"eventId"`
	ClaimID        string    `json:"claimId"`
	MemberID       string    `json:"memberId"`
	Status         string    `json:"status"`
	Message        string    `json:"message"`
	OccurredAt     time.Time `json:"occurredAt"`
}

// Worker delivers pending notifications.
type Worker struct {
	pool     *pgxpool.Pool
	http     *http.Client
	exec     failsafe.Executor[int]
	breaker  circuitbreaker.CircuitBreaker[int]
	o        Options
	l        *slog.Logger
	tracer   trace.Tracer
	wake     chan struct{}
	outcomes metric.Int64Counter
}

// Errors that decide what happens to a notification after a round.
var (
	// errDeferred: the round never reached the receiver (breaker open,
	// bulkhead full); it does not count as an attempt.
	errDeferred = errors.New("delivery deferred")
	// errUndelivered: every attempt of the round failed.
	errUndelivered = errors.New("delivery failed")
)

// refusedError is a 4xx answer other than 408 and 429: retrying the same
// payload cannot succeed.
type refusedError struct{ status int }

func (e *refusedError) Error() string {
	return fmt.Sprintf("webhook refused the notification (%d)", e.status)
}

// transientError is a failed attempt worth retrying.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// New returns a worker delivering to o.URL.
func New(pool *pgxpool.Pool, o Options, l *slog.Logger) *Worker {
	o = o.withDefaults()
	transient := func(_ int, err error) bool {
		var te *transientError
		return errors.As(err, &te) || errors.Is(err, timeout.ErrExceeded)
	}
	retry := retrypolicy.NewBuilder[int]().
		HandleIf(transient).
		WithMaxRetries(o.Retries).
		WithBackoff(o.BackoffFirst, o.BackoffMax).
		WithJitterFactor(0.3).
		ReturnLastFailure().
		Build()
	breaker := circuitbreaker.NewBuilder[int]().
		HandleIf(transient).
		WithFailureThreshold(o.BreakerFailures).
		WithDelay(o.BreakerDelay).
		OnStateChanged(func(e circuitbreaker.StateChangedEvent) {
			l.Warn("webhook circuit breaker changed state", "from", e.OldState.String(), "to", e.NewState.String())
		}).
		Build()
	fb := fallback.NewBuilderWithFunc(func(exec failsafe.Execution[int]) (int, error) {
		err := exec.LastError()
		if errors.Is(err, circuitbreaker.ErrOpen) || errors.Is(err, bulkhead.ErrFull) {
			return 0, fmt.Errorf("%w: %w", errDeferred, err)
		}
		return 0, fmt.Errorf("%w: %w", errUndelivered, err)
	}).HandleIf(func(_ int, err error) bool {
		var refused *refusedError
		return err != nil && !errors.As(err, &refused)
	}).Build()

	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = int(o.MaxConcurrency)
	w := &Worker{
		pool: pool,
		http: &http.Client{Transport: o.Telemetry.Transport(transport)},
		exec: failsafe.With[int](
			fb,
			timeout.New[int](o.Timeout),
			bulkhead.NewBuilder[int](o.MaxConcurrency).WithMaxWaitTime(o.MaxWait).Build(),
			retry,
			breaker,
			timeout.New[int](o.AttemptTimeout),
		),
		breaker: breaker,
		o:       o,
		l:       l,
		tracer:  o.Telemetry.Tracer("notifications.delivery"),
		wake:    make(chan struct{}, 1),
	}
	w.outcomes, _ = o.Telemetry.Meter("notifications.delivery").Int64Counter("notifications.webhook.deliveries",
		metric.WithDescription("Webhook delivery rounds by outcome: delivered, refused, retry, failed or deferred."))
	return w
}

// BreakerOpen reports whether deliveries are currently short-circuited.
func (w *Worker) BreakerOpen() bool { return w.breaker.IsOpen() }

// Notify wakes the worker after a notification was recorded. It never
// blocks.
func (w *Worker) Notify() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

type due struct {
	p        Payload
	attempts int
	trace    map[string]string
}

// lease takes up to Batch due notifications and pushes their due time past
// the longest a round can take, so that no other worker takes them while
// this one delivers, and a worker that dies leaves them to be retried.
func (w *Worker) lease(ctx context.Context) ([]due, error) {
	leaseFor := w.o.Timeout + w.o.MaxWait + 5*time.Second
	rows, err := w.pool.Query(ctx, `UPDATE notifications
		SET delivery_attempts = delivery_attempts + 1, next_attempt_at = now() + make_interval(secs => $2)
		WHERE id IN (
			SELECT id FROM notifications
			WHERE delivery_state = 'pending' AND next_attempt_at <= now()
			ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
		RETURNING id::text, event_id::text, claim_id::text, member_id, status, message, occurred_at, delivery_attempts, trace_context`,
		w.o.Batch, leaseFor.Seconds())
	if err != nil {
		return nil, fmt.Errorf("lease due notifications: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (due, error) {
		var d due
		err := r.Scan(&d.p.NotificationID, &d.p.EventID, &d.p.ClaimID, &d.p.MemberID, &d.p.Status, &d.p.Message,
			&d.p.OccurredAt, &d.attempts, &d.trace)
		d.p.OccurredAt = d.p.OccurredAt.UTC()
		return d, err
	})
}

// DeliverOnce delivers one batch of due notifications, concurrently, and
// returns how many it took.
func (w *Worker) DeliverOnce(ctx context.Context) (int, error) {
	batch, err := w.lease(ctx)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, d := range batch {
		wg.Go(func() { w.deliver(ctx, d) })
	}
	wg.Wait()
	return len(batch), nil
}

func (w *Worker) deliver(ctx context.Context, d due) {
	ctx, span := w.tracer.Start(w.o.Telemetry.Extract(ctx, d.trace), "notifications.deliver",
		trace.WithAttributes(
			attribute.String("notification.id", d.p.NotificationID),
			attribute.String("claim.id", d.p.ClaimID),
			attribute.Int("notification.attempt", d.attempts),
		))
	defer span.End()
	body, err := json.Marshal(d.p)
	if err == nil {
		_, err = w.exec.WithContext(ctx).GetWithExecution(func(exec failsafe.Execution[int]) (int, error) {
			return w.post(exec.Context(), d.p.NotificationID, body)
		})
	}
	var refused *refusedError
	outcome := "delivered"
	switch {
	case err == nil:
		err = w.finish(ctx, d, `delivery_state = 'delivered', delivered_at = now(), last_error = NULL`)
	case errors.As(err, &refused):
		outcome = "refused"
		err = w.finish(ctx, d, `delivery_state = 'failed', last_error = $2`, err.Error())
	case errors.Is(err, errDeferred):
		// The receiver was not tried: give the attempt back and wait for
		// the breaker to let calls through again.
		outcome = "deferred"
		err = w.finish(ctx, d, `delivery_attempts = delivery_attempts - 1, last_error = $2,
			next_attempt_at = now() + make_interval(secs => $3)`, err.Error(), w.o.BreakerDelay.Seconds())
	case d.attempts >= w.o.MaxAttempts:
		outcome = "failed"
		err = w.finish(ctx, d, `delivery_state = 'failed', last_error = $2`,
			fmt.Sprintf("gave up after %d attempts: %v", d.attempts, err))
	default:
		outcome = "retry"
		err = w.finish(ctx, d, `last_error = $2, next_attempt_at = now() + make_interval(secs => $3)`,
			err.Error(), w.roundBackoff(d.attempts).Seconds())
	}
	w.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
	span.SetAttributes(attribute.String("notification.delivery.outcome", outcome))
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		w.l.WarnContext(ctx, "notification delivery not recorded; it will be retried after its lease", "notificationId", d.p.NotificationID, "err", err)
		return
	}
	if outcome != "delivered" {
		w.l.InfoContext(ctx, "notification not delivered", "notificationId", d.p.NotificationID, "outcome", outcome, "attempt", d.attempts)
	}
}

// finish records a round's result, but only while the notification is
// still pending (another worker may have finished it after a lease
// expired).
func (w *Worker) finish(ctx context.Context, d due, set string, args ...any) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := w.pool.Exec(ctx, "UPDATE notifications SET "+set+" WHERE id = $1 AND delivery_state = 'pending'",
		append([]any{d.p.NotificationID}, args...)...)
	return err
}

func (w *Worker) roundBackoff(attempts int) time.Duration {
	d := w.o.RoundBackoff
	for i := 1; i < attempts && d < w.o.RoundBackoffMax; i++ {
		d *= 2
	}
	return min(d, w.o.RoundBackoffMax)
}

func (w *Worker) post(ctx context.Context, id string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.o.URL, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("build webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderIdempotencyKey, id)
	resp, err := w.http.Do(req)
	if err != nil {
		return 0, &transientError{fmt.Errorf("call webhook: %w", err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode <= 299:
		return resp.StatusCode, nil
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusTooManyRequests:
		return 0, &transientError{fmt.Errorf("webhook answered %d", resp.StatusCode)}
	default:
		return 0, &refusedError{status: resp.StatusCode}
	}
}

// Run delivers until ctx is cancelled. A round in flight when ctx is
// cancelled is finished, so its results are recorded; anything not yet
// delivered stays pending for the next start.
func (w *Worker) Run(ctx context.Context) {
	w.l.Info("webhook delivery started", "url", w.o.URL)
	defer w.l.Info("webhook delivery stopped")
	poll := time.NewTicker(w.o.Poll)
	defer poll.Stop()
	backoff := time.Duration(0)
	for {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.o.Timeout+w.o.MaxWait+10*time.Second)
		n, err := w.DeliverOnce(rctx)
		cancel()
		switch {
		case err != nil:
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			w.l.Warn("webhook delivery pass failed, backing off", "err", err, "delay", backoff)
		case n == w.o.Batch:
			backoff = 0
			if ctx.Err() == nil {
				continue // more may be due
			}
		default:
			backoff = 0
		}
		var delay <-chan time.Time
		pollC := poll.C
		if backoff > 0 {
			delay, pollC = time.After(backoff), nil
		}
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		case <-pollC:
		case <-delay:
		}
	}
}
