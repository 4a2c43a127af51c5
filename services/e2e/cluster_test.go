package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/kit/events"
)

// webhookSink receives notifications and counts deliveries per
// Idempotency-Key (the notification id).
type webhookSink struct {
	srv *httptest.Server

	mu    sync.Mutex
	byKey map[string]int
}

func newWebhookSink(t *testing.T) *webhookSink {
	t.Helper()
	s := &webhookSink{byKey: map[string]int{}}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		s.byKey[r.Header.Get("Idempotency-Key")]++
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *webhookSink) deliveries() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.byKey)
}

// cluster is the three services on real PostgreSQL and Redis, with a
// webhook receiver for notifications.
type cluster struct {
	elig, claims, notif *proc
	claimsDSN, notifDSN string
	redisURL            string
	sink                *webhookSink
}

func identity(env map[string]string) map[string]string {
	env["TANDEM_REGION"], env["TANDEM_COLOR"], env["TANDEM_VERSION"] = "us-east-2", "blue", "e2e"
	return env
}

// newCluster starts the services; extra adds variables per service.
func newCluster(t *testing.T, extra map[string]map[string]string) *cluster {
	t.Helper()
	c := &cluster{
		claimsDSN: testinfra.PostgresDSN(t, "claims"),
		notifDSN:  testinfra.PostgresDSN(t, "notifications"),
		redisURL:  testinfra.RedisURL(t),
		sink:      newWebhookSink(t),
	}
	env := func(service string, base map[string]string) map[string]string {
		identity(base)
		for k, v := range extra[service] {
			base[k] = v
		}
		return base
	}
	c.elig = start(t, "eligibility", env("eligibility", map[string]string{
		"DATABASE_URL": testinfra.PostgresDSN(t, "eligibility"), "REDIS_URL": c.redisURL,
	}))
	c.claims = start(t, "claims", env("claims", map[string]string{
		"DATABASE_URL": c.claimsDSN, "REDIS_URL": c.redisURL, "ELIGIBILITY_URL": c.elig.url,
		"CLAIMS_READJUDICATE_INTERVAL": "200ms",
	}))
	c.notif = start(t, "notifications", env("notifications", map[string]string{
		"DATABASE_URL": c.notifDSN, "REDIS_URL": c.redisURL,
		"NOTIFICATIONS_WEBHOOK_URL": c.sink.srv.URL, "WEBHOOK_RETRY_BACKOFF": "100ms",
	}))
	return c
}

// ack is what a client was told about a claim.
type ack struct {
	id     string
	status string
}

// load submits claims with idempotency keys from several workers, the way
// a careful client does: a submission whose answer was lost is retried
// with the same key until it is acknowledged.
type load struct {
	url    string
	client *http.Client

	mu      sync.Mutex
	next    int
	acked   map[string]ack    // key -> claim
	unacked map[string]string // key -> body, answer lost
	status  map[int]int       // HTTP status -> count
	errors  int               // requests without an answer
	// cancelled counts requests the load itself abandoned when it
	// stopped; they are retried like lost answers.
	cancelled int
}

func newLoad(url string) *load {
	return &load{
		url:     url,
		client:  &http.Client{Timeout: 10 * time.Second},
		acked:   map[string]ack{},
		unacked: map[string]string{},
		status:  map[int]int{},
	}
}

// body makes the n-th claim: members and incomes vary so that claims are
// approved and denied and spread over the partitions.
func claimBody(n int) string {
	income := 100000 + (n%7)*20000 // some above the $1,799.75 limit for one
	states := []string{"OH", "TX", "CA", "AK", "HI", "NY", "DC"}
	return fmt.Sprintf(`{"memberId":"M-%d","state":%q,"householdSize":1,"monthlyIncomeCents":%d,`+
		`"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":%d}`, n%50, states[n%len(states)], income, 1000+n)
}

// pick returns a lost submission to retry, or a new one.
func (l *load) pick() (string, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k, b := range l.unacked {
		return k, b
	}
	l.next++
	return fmt.Sprintf("chaos-%d", l.next), claimBody(l.next)
}

// submit sends one submission and records the outcome.
func (l *load) submit(ctx context.Context, key, body string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, l.url+"/v1/claims", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := l.client.Do(req)
	var raw []byte
	if err == nil {
		raw, err = io.ReadAll(resp.Body)
		_ = resp.Body.Close()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if ctx.Err() != nil {
			l.cancelled++
		} else {
			l.errors++
		}
		l.unacked[key] = body
		return
	}
	l.status[resp.StatusCode]++
	if resp.StatusCode != http.StatusCreated {
		l.unacked[key] = body
		return
	}
	var c struct {
		ID     string `json:"id"`
		Status string `json:"status"`
	}
	if json.Unmarshal(raw, &c) != nil || c.ID == "" {
		l.unacked[key] = body
		return
	}
	if prev, ok := l.acked[key]; ok && prev.id != c.ID {
		// Recorded as a second claim for one key; verify reports it.
		l.acked[key+"#conflict"] = ack{id: c.ID, status: c.Status}
	}
	if _, ok := l.acked[key]; !ok {
		l.acked[key] = ack{id: c.ID, status: c.Status}
	}
	delete(l.unacked, key)
}

// run submits from workers until ctx ends.
func (l *load) run(ctx context.Context, workers int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				key, body := l.pick()
				l.submit(ctx, key, body)
			}
		})
	}
	return &wg
}

// settle retries every lost submission until each is acknowledged.
func (l *load) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		l.mu.Lock()
		pending := maps.Clone(l.unacked)
		l.mu.Unlock()
		if len(pending) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d submissions never acknowledged", len(pending))
		}
		for k, b := range pending {
			l.submit(context.Background(), k, b)
		}
	}
}

func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	codes := slices.Sorted(maps.Keys(l.status))
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d×%d", l.status[c], c))
	}
	return fmt.Sprintf("%d keys acknowledged; answers %s; %d requests without an answer; %d abandoned by the load when it stopped",
		len(l.acked), strings.Join(parts, " "), l.errors, l.cancelled)
}

func connectDB(t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

type decision struct{ claim, status string }

// verifyExactlyOnce checks the end state after a run: every acknowledged
// claim is stored under its key with the id the client was given, there
// is one claim per key, every decision (outbox event) became exactly one
// notification, and every notification reached the webhook exactly once.
func (c *cluster) verifyExactlyOnce(t *testing.T, l *load) {
	t.Helper()
	claimsDB, notifDB := connectDB(t, c.claimsDSN), connectDB(t, c.notifDSN)

	stored := map[string]ack{}
	rows, err := claimsDB.Query(t.Context(), "SELECT idempotency_key, id::text, status FROM claims")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k string
		var a ack
		if err := rows.Scan(&k, &a.id, &a.status); err != nil {
			t.Fatal(err)
		}
		if _, dup := stored[k]; dup {
			t.Errorf("key %s has more than one claim", k)
		}
		stored[k] = a
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	acked := maps.Clone(l.acked)
	l.mu.Unlock()
	for k, a := range acked {
		if strings.HasSuffix(k, "#conflict") {
			t.Errorf("key %s was acknowledged with two different claims", strings.TrimSuffix(k, "#conflict"))
			continue
		}
		s, ok := stored[k]
		if !ok {
			t.Errorf("acknowledged claim %s (key %s) is not stored", a.id, k)
		} else if s.id != a.id {
			t.Errorf("key %s: acknowledged claim %s, stored claim %s", k, a.id, s.id)
		}
	}
	if len(stored) != len(acked) {
		t.Errorf("%d claims stored for %d acknowledged keys", len(stored), len(acked))
	}

	// Wait for re-adjudication to decide every pended claim.
	waitUntil(t, 60*time.Second, "every pended claim to be decided", func() bool {
		var n int
		_ = claimsDB.QueryRow(t.Context(), "SELECT count(*) FROM claims WHERE status = 'pended'").Scan(&n)
		return n == 0
	})

	want := map[decision]int{}
	rows, err = claimsDB.Query(t.Context(), "SELECT aggregate_id::text, payload->>'status' FROM outbox")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var d decision
		if err := rows.Scan(&d.claim, &d.status); err != nil {
			t.Fatal(err)
		}
		want[d]++
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for d, n := range want {
		if n != 1 {
			t.Errorf("claim %s has %d %s decisions in its outbox", d.claim, n, d.status)
		}
	}

	got := map[decision]int{}
	var ids []string
	waitUntil(t, 60*time.Second, "one notification per decision", func() bool {
		got, ids = map[decision]int{}, nil
		rows, err := notifDB.Query(t.Context(), "SELECT id::text, claim_id::text, status FROM notifications")
		if err != nil {
			return false
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var d decision
			if rows.Scan(&id, &d.claim, &d.status) == nil {
				got[d]++
				ids = append(ids, id)
			}
		}
		return len(ids) >= len(want)
	})
	for d := range want {
		if got[d] != 1 {
			t.Errorf("decision %s of claim %s has %d notifications, want 1", d.status, d.claim, got[d])
		}
	}
	for d, n := range got {
		if want[d] == 0 {
			t.Errorf("%d notifications of %s for claim %s, which has no such decision", n, d.status, d.claim)
		}
	}

	waitUntil(t, 60*time.Second, "every notification to reach the webhook", func() bool {
		return len(c.sink.deliveries()) >= len(ids)
	})
	deliveries := c.sink.deliveries()
	for _, id := range ids {
		if deliveries[id] != 1 {
			t.Errorf("notification %s reached the webhook %d times, want 1", id, deliveries[id])
		}
	}

	opt, err := redis.ParseURL(c.redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	entries, _ := rdb.XLen(t.Context(), events.ClaimsStream).Result()
	t.Logf("%d claims, %d decisions, %d notifications, %d webhook deliveries; %d stream entries (%d duplicates from the relay absorbed by the consumer)",
		len(stored), len(want), len(ids), len(deliveries), entries, entries-int64(len(want)))
}

func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// jitter returns a random duration in [lo, hi).
func jitter(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rand.Int64N(int64(hi-lo)))
}
