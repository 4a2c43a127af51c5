package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/notifications/internal/consumer"
	"github.com/tandemhq/tandem/services/notifications/internal/delivery"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
	"github.com/tandemhq/tandem/services/notifications/internal/schema"
)

// receiver is a webhook endpoint that answers with a script of statuses
// (the last one repeats) and records every delivery it accepted.
type receiver struct {
	srv *httptest.Server

	mu       sync.Mutex
	script   []int
	calls    int
	accepted []delivered
}

type delivered struct {
	key         string
	traceparent string
	payload     delivery.Payload
}

func newReceiver(t *testing.T, script ...int) *receiver {
	t.Helper()
	r := &receiver{script: script}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		status := http.StatusNoContent
		if len(r.script) > 0 {
			status = r.script[min(r.calls, len(r.script)-1)]
		}
		r.calls++
		if status < 300 {
			var p delivery.Payload
			if err := json.Unmarshal(body, &p); err != nil || req.Header.Get("Content-Type") != "application/json" {
				t.Errorf("webhook body %q (%v), content type %q", body, err, req.Header.Get("Content-Type"))
			}
			r.accepted = append(r.accepted, delivered{key: req.Header.Get(delivery.HeaderIdempotencyKey), traceparent: req.Header.Get("traceparent"), payload: p})
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) snapshot() (int, []delivered) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls, append([]delivered(nil), r.accepted...)
}

// quickWebhook is a delivery configuration for tests: short timeouts, one
// retry per round, rounds 20ms apart.
func quickWebhook(url string) delivery.Options {
	return delivery.Options{
		URL: url, Timeout: 2 * time.Second, AttemptTimeout: 500 * time.Millisecond,
		Retries: 1, BackoffFirst: time.Millisecond, BackoffMax: 2 * time.Millisecond,
		BreakerFailures: 100, BreakerDelay: 50 * time.Millisecond,
		RoundBackoff: 20 * time.Millisecond, RoundBackoffMax: 20 * time.Millisecond, MaxAttempts: 3,
	}
}

func setupWebhook(t *testing.T, wo delivery.Options, tel *telemetry.Telemetry, co consumer.Options) fixture {
	t.Helper()
	var configure []func(*pgxpool.Config)
	if tel != nil {
		configure = append(configure, tel.InstrumentPool)
	}
	pool, err := db.Connect(t.Context(), logging.Discard(), "notifications", testinfra.PostgresDSN(t, "notifications"), quick, configure...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := db.Migrate(t.Context(), logging.Discard(), pool, schema.Migrations()); err != nil {
		t.Fatal(err)
	}
	var instrument []func(*redis.Client) error
	if tel != nil {
		instrument = append(instrument, tel.InstrumentRedis)
	}
	rdb, err := cache.Connect(t.Context(), logging.Discard(), testinfra.RedisURL(t), quick, instrument...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if co.Name == "" {
		co.Name = "test-consumer"
	}
	co.Block = 50 * time.Millisecond
	cfg := Config{Base: config.Base{Region: "us-east-2", Color: "blue", Version: "v3"}, Webhook: wo}
	a := Build(cfg, logging.Discard(), Deps{Primary: pool, Redis: rdb, Telemetry: tel}, co)
	if err := a.Consumer.EnsureGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return fixture{pool: pool, rdb: rdb, app: a}
}

func deliverOnce(t *testing.T, f fixture) int {
	t.Helper()
	n, err := f.app.Delivery.DeliverOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func only(t *testing.T, f fixture, claimID string) notify.Notification {
	t.Helper()
	ns := list(t, f.app.Handler, claimID)
	if len(ns) != 1 {
		t.Fatalf("claim %s has %d notifications, want 1", claimID, len(ns))
	}
	return ns[0]
}

// TestWebhookGetsEachNotificationOnce: a decision published twice, and
// the same decision republished under a new event id, still make one
// notification and one delivery, keyed by the notification id.
func TestWebhookGetsEachNotificationOnce(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t)
	f := setupWebhook(t, quickWebhook(rcv.srv.URL), nil, consumer.Options{})
	claim := uuid.NewString()
	e := decided(claim, "approved")
	publish(t, f.rdb, e)
	publish(t, f.rdb, e)
	publish(t, f.rdb, decided(claim, "approved"))
	drain(t, f.app.Consumer)
	if n := deliverOnce(t, f); n != 1 {
		t.Fatalf("delivered %d, want 1", n)
	}
	if n := deliverOnce(t, f); n != 0 {
		t.Fatalf("a second pass delivered %d, want nothing left", n)
	}
	_, got := rcv.snapshot()
	n := only(t, f, claim)
	if len(got) != 1 || got[0].key != n.ID || got[0].payload.NotificationID != n.ID ||
		got[0].payload.ClaimID != claim || got[0].payload.Status != "approved" || got[0].payload.Message != n.Message {
		t.Fatalf("receiver got %+v, want one delivery of %+v", got, n)
	}
	if n.Delivery.State != notify.DeliveryDelivered || n.Delivery.Attempts != 1 || n.Delivery.DeliveredAt == nil || n.Delivery.LastError != "" {
		t.Errorf("delivery = %+v, want delivered on the first attempt", n.Delivery)
	}
}

// TestWebhookRetriesWithinAndAcrossRounds: the receiver fails three times.
// The first round's two attempts fail and the notification waits; the
// second round's first attempt fails, its retry succeeds.
func TestWebhookRetriesWithinAndAcrossRounds(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 503, 502, 500, 200)
	f := setupWebhook(t, quickWebhook(rcv.srv.URL), nil, consumer.Options{})
	claim := uuid.NewString()
	publish(t, f.rdb, decided(claim, "denied"))
	drain(t, f.app.Consumer)

	deliverOnce(t, f)
	if n := only(t, f, claim); n.Delivery.State != notify.DeliveryPending || n.Delivery.Attempts != 1 || !strings.Contains(n.Delivery.LastError, "502") {
		t.Fatalf("after round one: %+v, want pending after one attempt, last error 502", n.Delivery)
	}
	if n := deliverOnce(t, f); n != 0 {
		t.Fatalf("round two started before its backoff (%d)", n)
	}
	time.Sleep(30 * time.Millisecond)
	deliverOnce(t, f)
	calls, got := rcv.snapshot()
	n := only(t, f, claim)
	if n.Delivery.State != notify.DeliveryDelivered || n.Delivery.Attempts != 2 || calls != 4 || len(got) != 1 {
		t.Errorf("after round two: %+v with %d calls, %d accepted; want delivered in round 2 after 4 calls", n.Delivery, calls, len(got))
	}
}

func TestWebhookRefusalFailsAtOnce(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 422)
	f := setupWebhook(t, quickWebhook(rcv.srv.URL), nil, consumer.Options{})
	claim := uuid.NewString()
	publish(t, f.rdb, decided(claim, "pended"))
	drain(t, f.app.Consumer)
	deliverOnce(t, f)
	calls, _ := rcv.snapshot()
	n := only(t, f, claim)
	if n.Delivery.State != notify.DeliveryFailed || calls != 1 || !strings.Contains(n.Delivery.LastError, "refused") {
		t.Errorf("delivery = %+v after %d calls, want failed after one refused call", n.Delivery, calls)
	}
}

func TestWebhookGivesUpAfterMaxAttempts(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 500)
	wo := quickWebhook(rcv.srv.URL)
	wo.MaxAttempts = 2
	f := setupWebhook(t, wo, nil, consumer.Options{})
	claim := uuid.NewString()
	publish(t, f.rdb, decided(claim, "approved"))
	drain(t, f.app.Consumer)
	deliverOnce(t, f)
	time.Sleep(30 * time.Millisecond)
	deliverOnce(t, f)
	calls, _ := rcv.snapshot()
	n := only(t, f, claim)
	if n.Delivery.State != notify.DeliveryFailed || n.Delivery.Attempts != 2 || calls != 4 || !strings.Contains(n.Delivery.LastError, "gave up after 2 attempts") {
		t.Errorf("delivery = %+v after %d calls, want failed after 2 rounds of 2 calls", n.Delivery, calls)
	}
}

// TestOpenBreakerDefersWithoutUsingAttempts: once the breaker opens, a
// round does not call the receiver and does not count as an attempt.
func TestOpenBreakerDefersWithoutUsingAttempts(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 503)
	wo := quickWebhook(rcv.srv.URL)
	wo.BreakerFailures, wo.BreakerDelay, wo.Retries = 1, time.Minute, -1
	f := setupWebhook(t, wo, nil, consumer.Options{})
	first, second := uuid.NewString(), uuid.NewString()
	publish(t, f.rdb, decided(first, "approved"))
	drain(t, f.app.Consumer)
	deliverOnce(t, f)
	if !f.app.Delivery.BreakerOpen() {
		t.Fatal("breaker still closed after a failed call with a threshold of one")
	}
	publish(t, f.rdb, decided(second, "approved"))
	drain(t, f.app.Consumer)
	deliverOnce(t, f)
	calls, _ := rcv.snapshot()
	n := only(t, f, second)
	if calls != 1 || n.Delivery.State != notify.DeliveryPending || n.Delivery.Attempts != 0 || !strings.Contains(n.Delivery.LastError, "circuit breaker open") {
		t.Errorf("second notification = %+v after %d receiver calls, want pending, no attempt used, receiver called once", n.Delivery, calls)
	}
}

// alwaysFailing is a store that never manages to record.
type alwaysFailing struct{ consumer.Recorder }

func (alwaysFailing) Record(_ context.Context, _ events.ClaimDecided, _ string) (notify.Outcome, error) {
	return 0, errors.New("deadlock detected")
}

// TestEntryDeadLettersAfterMaxDeliveries: an entry that fails every time is
// moved to the dead-letter stream on its fourth delivery attempt with a
// limit of three, and stops being retried.
func TestEntryDeadLettersAfterMaxDeliveries(t *testing.T) {
	t.Parallel()
	f := setup(t, consumer.Options{})
	c := consumer.New(f.rdb, alwaysFailing{}, consumer.Options{Name: "failing", Block: 50 * time.Millisecond, MaxDeliveries: 3}, logging.Discard())
	e := decided(uuid.NewString(), "approved")
	publish(t, f.rdb, e)
	if _, err := c.ReadNew(t.Context()); err == nil {
		t.Fatal("first delivery succeeded with a failing store")
	}
	for i := 2; i <= 3; i++ {
		if _, err := c.RetryOwn(t.Context()); err == nil {
			t.Fatalf("delivery %d succeeded with a failing store", i)
		}
	}
	if n, err := c.RetryOwn(t.Context()); err != nil || n != 1 {
		t.Fatalf("RetryOwn after 3 deliveries = %d, %v; want the entry dead-lettered", n, err)
	}
	dead, err := f.rdb.XRange(t.Context(), events.ClaimsStream+consumer.DeadLetterSuffix, "-", "+").Result()
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead-letter stream = %v, %v", dead, err)
	}
	if dead[0].Values[events.FieldEventID] != e.EventID || dead[0].Values["error"] != "not processed after 3 deliveries" {
		t.Errorf("dead letter = %v", dead[0].Values)
	}
	if p := pending(t, f.rdb); p != 0 {
		t.Errorf("%d entries still pending", p)
	}
}

// TestConsumerAndDeliveryJoinTheProducersTrace publishes an entry carrying
// a trace context: its processing, the SQL it runs, its acknowledgement
// and the webhook delivery are spans of that trace, and the webhook
// request carries it on.
func TestConsumerAndDeliveryJoinTheProducersTrace(t *testing.T) {
	t.Parallel()
	spans := tracetest.NewSpanRecorder()
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: Name, Sampler: "parentbased_always_on", SamplerArg: 1},
		config.Base{}, telemetry.WithSpanProcessor(spans))
	if err != nil {
		t.Fatal(err)
	}
	rcv := newReceiver(t)
	f := setupWebhook(t, quickWebhook(rcv.srv.URL), tel, consumer.Options{})

	const traceID, producer = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
	e := decided(uuid.NewString(), "approved")
	payload, _ := json.Marshal(e)
	if err := f.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: events.ClaimsStream, Values: []string{
		events.FieldType, e.Type, events.FieldEventID, e.EventID, events.FieldPayload, string(payload),
		"traceparent", "00-" + traceID + "-" + producer + "-01",
	}}).Err(); err != nil {
		t.Fatal(err)
	}
	drain(t, f.app.Consumer)
	deliverOnce(t, f)

	_, got := rcv.snapshot()
	if len(got) != 1 || !strings.HasPrefix(got[0].traceparent, "00-"+traceID+"-") {
		t.Fatalf("webhook deliveries = %+v, want one carrying trace %s", got, traceID)
	}
	seen := map[string]bool{}
	for _, s := range spans.Ended() {
		if s.SpanContext().TraceID().String() != traceID {
			continue
		}
		switch {
		case s.SpanKind() == trace.SpanKindConsumer:
			seen["process"] = true
			if s.Parent().SpanID().String() != producer {
				t.Errorf("consumer span's parent = %s, want the producer %s", s.Parent().SpanID(), producer)
			}
		case s.Name() == "notifications.deliver":
			seen["deliver"] = true
		case s.SpanKind() == trace.SpanKindClient && strings.EqualFold(s.Name(), "xack"):
			seen["redis"] = true
		case s.SpanKind() == trace.SpanKindClient && strings.HasPrefix(s.Name(), "POST "):
			seen["webhook call"] = true
		case s.SpanKind() == trace.SpanKindClient:
			seen["sql"] = seen["sql"] || strings.Contains(s.Name(), "INSERT")
		}
	}
	for _, k := range []string{"process", "sql", "redis", "deliver", "webhook call"} {
		if !seen[k] {
			t.Errorf("no %s span in trace %s", k, traceID)
		}
	}
}
