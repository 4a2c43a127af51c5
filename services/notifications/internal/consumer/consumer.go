// Package consumer reads claim.decided events from the claims.events stream
// as a member of the notifications consumer group and turns each into a
// notification.
//
// An entry is acknowledged only after its notification (or the fact that
// it was a duplicate) is committed, so a crash redelivers rather than
// loses. Entries that another consumer read but never acknowledged (it
// crashed, or its task was replaced during a deploy) are claimed after
// they have been idle for a while. Entries that can never be processed go
// to a dead-letter stream instead of blocking the group: unreadable ones at
// once, and any entry that has been delivered MaxDeliveries times without
// being processed. Retries only happen while the store answers, so an
// outage of the database does not use up the entries' deliveries.
//
// Each entry carries the trace context of the relay's publication; its
// processing is a consumer span in that trace.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
)

// Group is the consumer group of the notifications service.
const Group = "notifications"

// DeadLetterSuffix names the dead-letter stream after the source stream.
const DeadLetterSuffix = ".dead-letter"

// Recorder stores the notification for an event.
type Recorder interface {
	Record(ctx context.Context, e events.ClaimDecided, streamID string) (notify.Outcome, error)
}

// Options tune a consumer. Zero fields take their defaults.
type Options struct {
	Stream string // default claims.events
	Group  string // default notifications
	// Name identifies this consumer in the group (default ConsumerName).
	Name string
	// Count is how many entries one read returns (default 50).
	Count int64
	// Block is how long a read waits for new entries (default 1s); it
	// also bounds how long shutdown waits for the read loop.
	Block time.Duration
	// MinIdle is how long an entry must sit unacknowledged with another
	// consumer before this one claims it (default 30s).
	MinIdle time.Duration
	// ReclaimEvery is how often pending entries are retried and idle ones
	// claimed (default 5s).
	ReclaimEvery time.Duration
	// MaxDeliveries is how many times an entry is delivered before it is
	// moved to the dead-letter stream unprocessed (default 5).
	MaxDeliveries int64
	// Ready reports whether the store can take work; pending entries are
	// not retried (and so do not use up deliveries) while it fails. Nil
	// means always ready.
	Ready func(context.Context) error
	// Telemetry traces processing and counts outcomes; nil means
	// telemetry.Discard.
	Telemetry *telemetry.Telemetry
}

func (o Options) withDefaults() Options {
	if o.Stream == "" {
		o.Stream = events.ClaimsStream
	}
	if o.Group == "" {
		o.Group = Group
	}
	if o.Count <= 0 {
		o.Count = 50
	}
	if o.Block <= 0 {
		o.Block = time.Second
	}
	if o.MinIdle <= 0 {
		o.MinIdle = 30 * time.Second
	}
	if o.ReclaimEvery <= 0 {
		o.ReclaimEvery = 5 * time.Second
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 5
	}
	if o.Ready == nil {
		o.Ready = func(context.Context) error { return nil }
	}
	if o.Telemetry == nil {
		o.Telemetry = telemetry.Discard()
	}
	return o
}

// ConsumerName is unique per process: region and color say which fleet it
// belongs to, and host name plus pid tell tasks apart (every container's
// process may well be pid 1).
func ConsumerName(region, color string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown-host"
	}
	return fmt.Sprintf("%s-%s-%s-%d", region, color, host, os.Getpid())
}

// Consumer processes the stream.
type Consumer struct {
	rdb      *redis.Client
	rec      Recorder
	o        Options
	l        *slog.Logger
	tracer   trace.Tracer
	outcomes metric.Int64Counter
}

// New returns a consumer.
func New(rdb *redis.Client, rec Recorder, o Options, l *slog.Logger) *Consumer {
	o = o.withDefaults()
	c := &Consumer{rdb: rdb, rec: rec, o: o, l: l.With("stream", o.Stream, "group", o.Group, "consumer", o.Name),
		tracer: o.Telemetry.Tracer("notifications.consumer")}
	c.outcomes, _ = o.Telemetry.Meter("notifications.consumer").Int64Counter("notifications.stream.entries",
		metric.WithDescription("Stream entries handled, by outcome: stored, redelivered, duplicate, ignored, dead_lettered or failed."))
	return c
}

func (c *Consumer) count(ctx context.Context, outcome string) {
	c.outcomes.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

// EnsureGroup creates the consumer group, reading from the start of the
// stream so that events published before the group existed are not missed.
func (c *Consumer) EnsureGroup(ctx context.Context) error {
	err := c.rdb.XGroupCreateMkStream(ctx, c.o.Stream, c.o.Group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return fmt.Errorf("create consumer group %s on %s: %w", c.o.Group, c.o.Stream, err)
	}
	return nil
}

// ReadNew reads entries never delivered to the group, waiting up to Block,
// and processes them. It returns how many it acknowledged.
func (c *Consumer) ReadNew(ctx context.Context) (int, error) {
	return c.read(ctx, ">", c.o.Block)
}

// RetryOwn processes entries delivered to this consumer but not yet
// acknowledged, e.g. because the database was down when they arrived.
func (c *Consumer) RetryOwn(ctx context.Context) (int, error) {
	return c.retryPending(ctx, c.o.Name, 0)
}

func (c *Consumer) read(ctx context.Context, id string, block time.Duration) (int, error) {
	res, err := c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
		Group: c.o.Group, Consumer: c.o.Name, Streams: []string{c.o.Stream, id},
		Count: c.o.Count, Block: block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", c.o.Stream, err)
	}
	acked := 0
	for _, s := range res {
		n, err := c.handleAll(ctx, s.Messages)
		acked += n
		if err != nil {
			return acked, err
		}
	}
	return acked, nil
}

// Reclaim claims entries that other consumers have left unacknowledged for
// longer than MinIdle and processes them.
func (c *Consumer) Reclaim(ctx context.Context) (int, error) {
	return c.retryPending(ctx, "", c.o.MinIdle)
}

// retryPending claims the group's pending entries idle for at least
// minIdle (only owner's, when owner is set) and processes them. Claiming
// counts a delivery; an entry already delivered MaxDeliveries times goes to
// the dead-letter stream instead.
func (c *Consumer) retryPending(ctx context.Context, owner string, minIdle time.Duration) (int, error) {
	start, acked := "-", 0
	for {
		pend, err := c.rdb.XPendingExt(ctx, &redis.XPendingExtArgs{
			Stream: c.o.Stream, Group: c.o.Group, Idle: minIdle,
			Start: start, End: "+", Count: c.o.Count, Consumer: owner,
		}).Result()
		if err != nil {
			return acked, fmt.Errorf("list pending entries of %s: %w", c.o.Stream, err)
		}
		for _, p := range pend {
			msgs, err := c.rdb.XClaim(ctx, &redis.XClaimArgs{
				Stream: c.o.Stream, Group: c.o.Group, Consumer: c.o.Name,
				MinIdle: minIdle, Messages: []string{p.ID},
			}).Result()
			if err != nil {
				return acked, fmt.Errorf("claim %s: %w", p.ID, err)
			}
			if len(msgs) == 0 {
				if p.Consumer != c.o.Name {
					continue // another consumer claimed it first
				}
				// Deleted from the stream while pending: nothing left
				// to process.
				if err := c.ack(ctx, p.ID); err != nil {
					return acked, err
				}
				continue
			}
			if p.Consumer != c.o.Name {
				c.l.Info("claimed an idle entry", "entry", p.ID, "from", p.Consumer, "idle", p.Idle)
			}
			if p.RetryCount >= c.o.MaxDeliveries {
				err = c.deadLetter(ctx, msgs[0], fmt.Errorf("not processed after %d deliveries", p.RetryCount))
			} else {
				err = c.handle(ctx, msgs[0])
			}
			if err != nil {
				return acked, err
			}
			acked++
		}
		if int64(len(pend)) < c.o.Count {
			return acked, nil
		}
		start = "(" + pend[len(pend)-1].ID
	}
}

func (c *Consumer) handleAll(ctx context.Context, msgs []redis.XMessage) (int, error) {
	acked := 0
	for _, m := range msgs {
		if err := c.handle(ctx, m); err != nil {
			return acked, err
		}
		acked++
	}
	return acked, nil
}

// handle processes one entry and acknowledges it. A database error is
// returned without acknowledging, so the entry is retried.
func (c *Consumer) handle(ctx context.Context, m redis.XMessage) (err error) {
	if len(m.Values) == 0 {
		// Trimmed from the stream while pending: nothing left to process.
		return c.ack(ctx, m.ID)
	}
	ctx, span := c.tracer.Start(c.o.Telemetry.Extract(ctx, events.TraceCarrier(m.Values)), c.o.Stream+" process",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", c.o.Stream),
			attribute.String("messaging.consumer.group.name", c.o.Group),
			attribute.String("messaging.message.id", m.ID),
		))
	defer func() {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
			c.count(ctx, "failed")
		}
		span.End()
	}()
	typ, _ := m.Values[events.FieldType].(string)
	payload, _ := m.Values[events.FieldPayload].(string)
	if typ != events.TypeClaimDecided {
		// Other event types may share the stream later; they are not
		// this consumer's business.
		c.count(ctx, "ignored")
		return c.ack(ctx, m.ID)
	}
	e, err := events.DecodeClaimDecided(payload)
	if err != nil {
		return c.deadLetter(ctx, m, err)
	}
	out, err := c.rec.Record(ctx, e, m.ID)
	if err != nil {
		return err
	}
	c.count(ctx, out.String())
	c.l.InfoContext(ctx, "claim event processed", "entry", m.ID, "eventId", e.EventID, "claimId", e.ClaimID,
		"status", e.Status, "outcome", out.String())
	return c.ack(ctx, m.ID)
}

func (c *Consumer) ack(ctx context.Context, id string) error {
	if err := c.rdb.XAck(ctx, c.o.Stream, c.o.Group, id).Err(); err != nil {
		return fmt.Errorf("acknowledge %s: %w", id, err)
	}
	return nil
}

// deadLetter parks an entry that can never be processed, with the reason,
// and acknowledges it so that it stops being redelivered.
func (c *Consumer) deadLetter(ctx context.Context, m redis.XMessage, reason error) error {
	values := make([]any, 0, 2*len(m.Values)+6)
	for k, v := range m.Values {
		values = append(values, k, v)
	}
	values = append(values, "sourceId", m.ID, "consumer", c.o.Name, "error", reason.Error())
	if err := c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: c.o.Stream + DeadLetterSuffix, Values: values}).Err(); err != nil {
		return fmt.Errorf("dead-letter %s: %w", m.ID, err)
	}
	c.l.ErrorContext(ctx, "unprocessable entry moved to the dead-letter stream", "entry", m.ID, "err", reason)
	c.count(ctx, "dead_lettered")
	return c.ack(ctx, m.ID)
}

// Run consumes until ctx is cancelled. The entries of a read in flight are
// processed and acknowledged before it returns; anything unacknowledged is
// redelivered to this group later, so stopping loses nothing.
func (c *Consumer) Run(ctx context.Context) {
	c.l.Info("stream consumer started")
	defer c.l.Info("stream consumer stopped")
	work := context.WithoutCancel(ctx)
	backoff := time.Duration(0)
	var lastReclaim time.Time
	ready := false
	for ctx.Err() == nil {
		if backoff > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
		err := func() error {
			if !ready {
				if err := c.EnsureGroup(ctx); err != nil {
					return err
				}
				ready = true
			}
			if time.Since(lastReclaim) >= c.o.ReclaimEvery {
				// Retrying while the store is down would only use up
				// the entries' deliveries.
				if err := c.o.Ready(work); err != nil {
					return fmt.Errorf("store not ready, pending entries wait: %w", err)
				}
				if _, err := c.RetryOwn(work); err != nil {
					return err
				}
				if _, err := c.Reclaim(work); err != nil {
					return err
				}
				lastReclaim = time.Now()
			}
			_, err := c.ReadNew(work)
			return err
		}()
		if err != nil {
			if strings.Contains(err.Error(), "NOGROUP") {
				// The stream or group vanished (a Redis failover to an
				// empty replica, say): recreate it.
				ready = false
			}
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			c.l.Warn("stream consumer failed, backing off", "err", err, "delay", backoff)
			continue
		}
		backoff = 0
	}
}
