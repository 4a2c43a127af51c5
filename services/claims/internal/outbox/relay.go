// Package outbox relays committed events from the claims outbox table to the
// claims.events Redis stream.
//
// Several relays run at once (blue and green during a deploy, and after a
// region failover the new region's instances pick up what the old region
// left unpublished), so each batch is claimed with FOR UPDATE SKIP LOCKED.
// An event is marked published only after Redis accepted it; if marking
// fails the event is published again later. Delivery is therefore at least
// once and consumers deduplicate on the event id.
//
// Each row carries the trace context of the transaction that wrote it. The
// relay publishes each event under a producer span that continues that
// trace, and puts the producer span's context in the stream entry, so the
// consumer's work joins the trace of the request that caused the event.
package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/telemetry"
)

// Options tune a relay. Zero fields take their defaults.
type Options struct {
	// Stream is the Redis stream (default claims.events).
	Stream string
	// Batch is how many events one transaction relays (default 100).
	Batch int
	// Poll is how often an idle relay looks for work it was not woken for,
	// such as events another instance left behind (default 500ms).
	Poll time.Duration
	// MaxLen caps the stream, approximately (default one million entries).
	// Consumers keep up in seconds; the cap only stops a consumer outage
	// from growing Redis without bound.
	MaxLen int64
	// Retention is how long published rows stay in the outbox for
	// inspection before they are deleted (default 7 days).
	Retention time.Duration
	// Telemetry traces publication and counts published events; nil
	// means telemetry.Discard.
	Telemetry *telemetry.Telemetry
}

func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = events.ClaimsStream
	}
	if o.Batch <= 0 {
		o.Batch = 100
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.MaxLen <= 0 {
		o.MaxLen = 1_000_000
	}
	if o.Retention <= 0 {
		o.Retention = 7 * 24 * time.Hour
	}
	if o.Telemetry == nil {
		o.Telemetry = telemetry.Discard()
	}
	return o
}

// Relay moves outbox rows to the stream.
type Relay struct {
	pool   *pgxpool.Pool
	rdb    *redis.Client
	o      Options
	l      *slog.Logger
	wake   chan struct{}
	tracer trace.Tracer
	// published counts events published; lag measures how long they
	// waited in the outbox.
	published metric.Int64Counter
	lag       metric.Float64Histogram
}

// New returns a relay.
func New(pool *pgxpool.Pool, rdb *redis.Client, o Options, l *slog.Logger) *Relay {
	o = o.withDefaults()
	r := &Relay{pool: pool, rdb: rdb, o: o, l: l, wake: make(chan struct{}, 1), tracer: o.Telemetry.Tracer("claims.outbox")}
	m := o.Telemetry.Meter("claims.outbox")
	r.published, _ = m.Int64Counter("claims.outbox.published", metric.WithDescription("Events published from the outbox to the stream."))
	r.lag, _ = m.Float64Histogram("claims.outbox.lag", metric.WithUnit("s"),
		metric.WithDescription("Time from an event's commit to its publication."))
	return r
}

// Notify wakes the relay after an event was committed. It never blocks.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// RelayOnce publishes up to one batch and returns how many events it
// published.
func (r *Relay) RelayOnce(ctx context.Context) (int, error) {
	n := 0
	err := pgx.BeginFunc(ctx, r.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT seq, event_id::text, event_type, payload::text, trace_context, created_at
			FROM outbox WHERE published_at IS NULL
			ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED`, r.o.Batch)
		if err != nil {
			return fmt.Errorf("claim outbox batch: %w", err)
		}
		type row struct {
			seq              int64
			id, typ, payload string
			trace            map[string]string
			created          time.Time
		}
		var batch []row
		for rows.Next() {
			var x row
			if err := rows.Scan(&x.seq, &x.id, &x.typ, &x.payload, &x.trace, &x.created); err != nil {
				rows.Close()
				return fmt.Errorf("read outbox row: %w", err)
			}
			batch = append(batch, x)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read outbox batch: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}

		// The batch is one span of its own, linked to every event's
		// trace; each event gets a producer span in its own trace.
		links := make([]trace.Link, 0, len(batch))
		spans := make([]trace.Span, 0, len(batch))
		pipe := r.rdb.Pipeline()
		for _, x := range batch {
			ectx, span := r.tracer.Start(r.o.Telemetry.Extract(ctx, x.trace), r.o.Stream+" publish",
				trace.WithSpanKind(trace.SpanKindProducer),
				trace.WithAttributes(
					attribute.String("messaging.system", "redis"),
					attribute.String("messaging.destination.name", r.o.Stream),
					attribute.String("messaging.message.id", x.id),
				))
			spans = append(spans, span)
			links = append(links, trace.Link{SpanContext: span.SpanContext()})
			values := []string{events.FieldType, x.typ, events.FieldEventID, x.id, events.FieldPayload, x.payload}
			for k, v := range r.o.Telemetry.Inject(ectx) {
				values = append(values, k, v)
			}
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: r.o.Stream, MaxLen: r.o.MaxLen, Approx: true, Values: values})
		}
		bctx, batchSpan := r.tracer.Start(ctx, "claims.outbox.relay", trace.WithLinks(links...),
			trace.WithAttributes(attribute.Int("claims.outbox.batch", len(batch))))
		_, err = pipe.Exec(bctx)
		for _, span := range spans {
			if err != nil {
				span.SetStatus(codes.Error, err.Error())
			}
			span.End()
		}
		batchSpan.End()
		if err != nil {
			// Nothing is marked, so the whole batch goes again; entries
			// that did reach the stream become duplicates, which
			// consumers absorb.
			return fmt.Errorf("publish to %s: %w", r.o.Stream, err)
		}
		seqs := make([]int64, len(batch))
		for i, x := range batch {
			seqs[i] = x.seq
		}
		if _, err := tx.Exec(ctx, "UPDATE outbox SET published_at = now() WHERE seq = ANY($1)", seqs); err != nil {
			return fmt.Errorf("mark outbox batch published: %w", err)
		}
		n = len(batch)
		r.published.Add(ctx, int64(n))
		for _, x := range batch {
			r.lag.Record(ctx, time.Since(x.created).Seconds())
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// Prune deletes rows published longer ago than the retention period.
func (r *Relay) Prune(ctx context.Context) (int64, error) {
	tag, err := r.pool.Exec(ctx, "DELETE FROM outbox WHERE published_at < now() - make_interval(secs => $1)", r.o.Retention.Seconds())
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Run relays until ctx is cancelled, then drains what is left, so that a
// clean shutdown leaves nothing behind that it could have published. A
// batch in flight when ctx is cancelled is finished, not abandoned.
func (r *Relay) Run(ctx context.Context) {
	r.l.Info("outbox relay started", "stream", r.o.Stream)
	poll := time.NewTicker(r.o.Poll)
	defer poll.Stop()
	prune := time.NewTicker(time.Hour)
	defer prune.Stop()
	backoff := time.Duration(0)
	for {
		n, err := r.once(ctx)
		switch {
		case err != nil:
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.l.Warn("outbox relay failed, backing off", "err", err, "delay", backoff)
		case n == r.o.Batch:
			backoff = 0
			continue // more is waiting
		default:
			backoff = 0
		}
		// While backing off, only the backoff timer, a wake-up or
		// shutdown ends the wait; the poll ticker would cut it short.
		var delay <-chan time.Time
		pollC := poll.C
		if backoff > 0 {
			delay, pollC = time.After(backoff), nil
		}
		select {
		case <-ctx.Done():
			r.drain(ctx)
			return
		case <-r.wake:
		case <-pollC:
		case <-delay:
		case <-prune.C:
			if n, err := r.Prune(ctx); err != nil {
				r.l.Warn("outbox prune failed", "err", err)
			} else if n > 0 {
				r.l.Info("outbox pruned", "rows", n)
			}
		}
	}
}

// once relays one batch with a context that shutdown does not cancel.
func (r *Relay) once(ctx context.Context) (int, error) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return r.RelayOnce(bctx)
}

func (r *Relay) drain(ctx context.Context) {
	deadline := time.Now().Add(3 * time.Second)
	total := 0
	for time.Now().Before(deadline) {
		n, err := r.once(ctx)
		total += n
		if err != nil {
			r.l.Warn("outbox drain stopped; unpublished events stay in the outbox for the next relay", "err", err)
			break
		}
		if n < r.o.Batch {
			break
		}
	}
	r.l.Info("outbox relay stopped", "drained", total)
}
