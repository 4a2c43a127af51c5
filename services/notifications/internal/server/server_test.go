package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/kit/apptest"
	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/web"
	"github.com/tandemhq/tandem/services/notifications/internal/consumer"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
	"github.com/tandemhq/tandem/services/notifications/internal/schema"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var quick = retry.Policy{Budget: 10 * time.Second, First: 10 * time.Millisecond, Max: 200 * time.Millisecond}

type fixture struct {
	pool *pgxpool.Pool
	rdb  *redis.Client
	app  *App
}

func setup(t *testing.T, co consumer.Options) fixture {
	t.Helper()
	pool, err := db.Connect(t.Context(), logging.Discard(), "notifications", testinfra.PostgresDSN(t, "notifications"), quick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := db.Migrate(t.Context(), logging.Discard(), pool, schema.Migrations()); err != nil {
		t.Fatal(err)
	}
	rdb, err := cache.Connect(t.Context(), logging.Discard(), testinfra.RedisURL(t), quick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	if co.Name == "" {
		co.Name = "test-consumer"
	}
	co.Block = 50 * time.Millisecond
	a := Build(Config{Base: config.Base{Region: "us-east-2", Color: "blue", Version: "v3"}}, logging.Discard(), Deps{Primary: pool, Redis: rdb}, co)
	if err := a.Consumer.EnsureGroup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return fixture{pool: pool, rdb: rdb, app: a}
}

func decided(claimID, status string) events.ClaimDecided {
	return events.ClaimDecided{
		EventID: uuid.NewString(), Type: events.TypeClaimDecided, ClaimID: claimID, MemberID: "M-1",
		Status: status, OccurredAt: time.Now().UTC().Truncate(time.Microsecond),
	}
}

// publish adds e to the stream the way the claims outbox relay does.
func publish(t *testing.T, rdb *redis.Client, e events.ClaimDecided) {
	t.Helper()
	payload, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	err = rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: events.ClaimsStream, Values: []string{
		events.FieldType, e.Type, events.FieldEventID, e.EventID, events.FieldPayload, string(payload),
	}}).Err()
	if err != nil {
		t.Fatal(err)
	}
}

func list(t *testing.T, h http.Handler, claimID string) []notify.Notification {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/notifications?claimId="+claimID, nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET notifications: %d %s", rec.Code, rec.Body)
	}
	var body struct {
		Notifications []notify.Notification `json:"notifications"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	return body.Notifications
}

func pending(t *testing.T, rdb *redis.Client) int64 {
	t.Helper()
	p, err := rdb.XPending(t.Context(), events.ClaimsStream, consumer.Group).Result()
	if err != nil {
		t.Fatal(err)
	}
	return p.Count
}

func drain(t *testing.T, c *consumer.Consumer) int {
	t.Helper()
	total := 0
	for {
		n, err := c.ReadNew(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

func TestOneNotificationPerDecision(t *testing.T) {
	t.Parallel()
	f := setup(t, consumer.Options{})
	claimA, claimB := uuid.NewString(), uuid.NewString()
	approvedA := decided(claimA, "approved")
	pendedB := decided(claimB, "pended")
	approvedB := decided(claimB, "approved")
	republishedB := decided(claimB, "approved") // the same decision under a new event id

	publish(t, f.rdb, approvedA)
	publish(t, f.rdb, approvedA) // delivered twice
	publish(t, f.rdb, pendedB)
	publish(t, f.rdb, approvedB)
	publish(t, f.rdb, republishedB)
	if n := drain(t, f.app.Consumer); n != 5 {
		t.Fatalf("acknowledged %d entries, want 5", n)
	}
	if p := pending(t, f.rdb); p != 0 {
		t.Errorf("%d entries left pending", p)
	}

	a := list(t, f.app.Handler, claimA)
	if len(a) != 1 || a[0].Status != "approved" || a[0].EventID != approvedA.EventID || a[0].MemberID != "M-1" || a[0].Message == "" {
		t.Errorf("claim A notifications = %+v, want one approval", a)
	}
	b := list(t, f.app.Handler, claimB)
	if len(b) != 2 || b[0].Status != "pended" || b[1].Status != "approved" || b[1].EventID != approvedB.EventID {
		t.Errorf("claim B notifications = %+v, want pended then approved", b)
	}
	var inbox int
	if err := f.pool.QueryRow(t.Context(), "SELECT count(*) FROM processed_events").Scan(&inbox); err != nil {
		t.Fatal(err)
	}
	if inbox != 4 {
		t.Errorf("inbox holds %d events, want 4 distinct event ids", inbox)
	}
}

func TestReclaimsEntriesLeftByADeadConsumer(t *testing.T) {
	t.Parallel()
	f := setup(t, consumer.Options{MinIdle: 50 * time.Millisecond})
	claim := uuid.NewString()
	publish(t, f.rdb, decided(claim, "denied"))

	// Another instance reads the entry and dies before acknowledging it.
	got, err := f.rdb.XReadGroup(t.Context(), &redis.XReadGroupArgs{
		Group: consumer.Group, Consumer: "us-east-2-green-dead-1", Streams: []string{events.ClaimsStream, ">"}, Count: 10, Block: -1,
	}).Result()
	if err != nil || len(got) != 1 || len(got[0].Messages) != 1 {
		t.Fatalf("dead consumer read = %v, %v", got, err)
	}
	if n := drain(t, f.app.Consumer); n != 0 {
		t.Fatalf("the entry was delivered again as new (%d)", n)
	}
	time.Sleep(100 * time.Millisecond) // past MinIdle
	n, err := f.app.Consumer.Reclaim(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("Reclaim = %d, %v; want 1, nil", n, err)
	}
	if ns := list(t, f.app.Handler, claim); len(ns) != 1 || ns[0].Status != "denied" {
		t.Errorf("notifications = %+v, want one denial", ns)
	}
	if p := pending(t, f.rdb); p != 0 {
		t.Errorf("%d entries left pending", p)
	}
}

// flakyRecorder fails its first call, as a database failover would, and
// then delegates to the real store.
type flakyRecorder struct {
	consumer.Recorder
	calls atomic.Int32
}

func (f *flakyRecorder) Record(ctx context.Context, e events.ClaimDecided, id string) (notify.Outcome, error) {
	if f.calls.Add(1) == 1 {
		return 0, errors.New("connection reset by peer")
	}
	return f.Recorder.Record(ctx, e, id)
}

func TestUnacknowledgedEntryIsRetried(t *testing.T) {
	t.Parallel()
	f := setup(t, consumer.Options{})
	rec := &flakyRecorder{Recorder: f.app.Store}
	c := consumer.New(f.rdb, rec, consumer.Options{Name: "flaky", Block: 50 * time.Millisecond}, logging.Discard())
	claim := uuid.NewString()
	publish(t, f.rdb, decided(claim, "approved"))

	if _, err := c.ReadNew(t.Context()); err == nil {
		t.Fatal("ReadNew hid the storage failure")
	}
	if p := pending(t, f.rdb); p != 1 {
		t.Fatalf("%d pending after a failed store, want 1 (not acknowledged)", p)
	}
	if n, err := c.RetryOwn(t.Context()); err != nil || n != 1 {
		t.Fatalf("RetryOwn = %d, %v; want 1, nil", n, err)
	}
	if ns := list(t, f.app.Handler, claim); len(ns) != 1 {
		t.Errorf("notifications = %+v, want one", ns)
	}
	if p := pending(t, f.rdb); p != 0 {
		t.Errorf("%d entries left pending", p)
	}
}

func TestUnreadableEntryGoesToDeadLetter(t *testing.T) {
	t.Parallel()
	f := setup(t, consumer.Options{})
	err := f.rdb.XAdd(t.Context(), &redis.XAddArgs{Stream: events.ClaimsStream, Values: []string{
		events.FieldType, events.TypeClaimDecided, events.FieldEventID, "x", events.FieldPayload, "{not json",
	}}).Err()
	if err != nil {
		t.Fatal(err)
	}
	if n := drain(t, f.app.Consumer); n != 1 {
		t.Fatalf("acknowledged %d, want 1", n)
	}
	dead, err := f.rdb.XRange(t.Context(), events.ClaimsStream+consumer.DeadLetterSuffix, "-", "+").Result()
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead-letter stream = %v, %v; want one entry", dead, err)
	}
	if dead[0].Values["error"] == nil || dead[0].Values[events.FieldPayload] != "{not json" {
		t.Errorf("dead letter = %v, want the payload and the error", dead[0].Values)
	}
	if p := pending(t, f.rdb); p != 0 {
		t.Errorf("%d entries left pending", p)
	}
}

func TestListRequiresAClaimID(t *testing.T) {
	t.Parallel()
	f := setup(t, consumer.Options{})
	for _, tt := range []struct {
		query      string
		wantStatus int
	}{
		{"", http.StatusBadRequest},
		{"?claimId=", http.StatusBadRequest},
		{"?claimId=abc", http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		f.app.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/notifications"+tt.query, nil))
		if rec.Code != tt.wantStatus || rec.Header().Get("Content-Type") != web.ProblemContentType {
			t.Errorf("GET %q = %d %s, want a %d problem", tt.query, rec.Code, rec.Body, tt.wantStatus)
		}
	}
	rec := httptest.NewRecorder()
	f.app.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/notifications?claimId="+uuid.NewString(), nil))
	if rec.Code != http.StatusOK || rec.Body.String() != "{\"notifications\":[]}\n" {
		t.Errorf("unknown claim = %d %q, want 200 with an empty list", rec.Code, rec.Body)
	}
}

// TestRunConsumesEventsPublishedBeforeItStarted starts the service from its
// environment after an event is already on the stream: the group reads from
// the start, so the event is not missed.
func TestRunConsumesEventsPublishedBeforeItStarted(t *testing.T) {
	t.Parallel()
	redisURL := testinfra.RedisURL(t)
	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	claim := uuid.NewString()
	publish(t, rdb, decided(claim, "approved"))

	addr := apptest.FreeAddr(t)
	env := config.MapLookup(map[string]string{
		"HOST": "127.0.0.1", "PORT": fmt.Sprint(addr.Port), "REDIS_URL": redisURL,
		"DATABASE_URL": testinfra.PostgresDSN(t, "notifications"),
	})
	stop := apptest.Start(t, Run, env)

	deadline := time.Now().Add(apptest.Timeout)
	for {
		resp, err := http.Get("http://" + addr.String() + "/v1/notifications?claimId=" + claim)
		if err == nil {
			var body struct {
				Notifications []notify.Notification `json:"notifications"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			if len(body.Notifications) == 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the event published before start never became a notification (last error %v)", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
}
