package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/eligibility"
	"github.com/tandemhq/tandem/services/claims/internal/outbox"
	"github.com/tandemhq/tandem/services/claims/internal/schema"
	"github.com/tandemhq/tandem/services/kit/apptest"
	"github.com/tandemhq/tandem/services/kit/cache"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/events"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/web"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var quick = retry.Policy{Budget: 10 * time.Second, First: 10 * time.Millisecond, Max: 200 * time.Millisecond}

// Eligibility policies tuned for tests: quick to give up, quick to recover.
var fastElig = eligibility.Options{
	Timeout: 500 * time.Millisecond, AttemptTimeout: 200 * time.Millisecond,
	BackoffFirst: time.Millisecond, BackoffMax: 5 * time.Millisecond,
	BreakerFailures: 3, BreakerDelay: 50 * time.Millisecond,
}

// medicaidLimit1 is the 2025 Medicaid expansion limit for a household of
// one in the 48 contiguous states.
const medicaidLimit1 = 179975

// eligibilityDouble answers determinations over HTTP like the eligibility
// service does for a household of one; up switches it between answering
// and failing with 503. The real eligibility service is exercised by its
// own tests and by the end-to-end test of the three binaries.
type eligibilityDouble struct {
	srv  *httptest.Server
	up   atomic.Bool
	hits atomic.Int32
}

func newEligibility(t *testing.T) *eligibilityDouble {
	t.Helper()
	e := &eligibilityDouble{}
	e.up.Store(true)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.hits.Add(1)
		if !e.up.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var req eligibility.Request
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Program != "medicaid" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]any{
			"eligible": req.MonthlyIncomeCents <= medicaidLimit1, "program": req.Program, "state": req.State,
			"householdSize": req.HouseholdSize, "monthlyIncomeCents": req.MonthlyIncomeCents,
			"incomeLimitCents": medicaidLimit1, "fplPercent": 0, "guidelineYear": 2025,
			"ruleSet": "medicaid-expansion-138-2025",
		})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

type fixture struct {
	pool *pgxpool.Pool
	rdb  *redis.Client
	app  *App
}

func connect(t *testing.T) (*pgxpool.Pool, *redis.Client) {
	t.Helper()
	return connectTo(t, testinfra.PostgresDSN(t, "claims"))
}

func connectTo(t *testing.T, dsn string, configure ...func(*pgxpool.Config)) (*pgxpool.Pool, *redis.Client) {
	t.Helper()
	pool, err := db.Connect(t.Context(), logging.Discard(), "claims", dsn, quick, configure...)
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
	return pool, rdb
}

func setup(t *testing.T, eligibilityURL string) fixture {
	t.Helper()
	pool, rdb := connect(t)
	cfg := Config{Base: config.Base{Region: "us-east-2", Color: "blue", Version: "v1"}, EligibilityURL: eligibilityURL, Eligibility: fastElig}
	return fixture{pool: pool, rdb: rdb, app: Build(cfg, logging.Discard(), Deps{Primary: pool, Redis: rdb}, outbox.Options{})}
}

const sampleBody = `{"memberId":"M-1","state":"OH","householdSize":1,"monthlyIncomeCents":150000,` +
	`"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":12500}`

func postClaim(t *testing.T, h http.Handler, key, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/claims", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func decodeClaim(t *testing.T, rec *httptest.ResponseRecorder) claims.Claim {
	t.Helper()
	var c claims.Claim
	if err := json.Unmarshal(rec.Body.Bytes(), &c); err != nil {
		t.Fatalf("claim body: %v: %s", err, rec.Body)
	}
	return c
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestSubmitDecides(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	tests := []struct {
		name   string
		income int64
		want   string
	}{
		{name: "at the limit is approved", income: medicaidLimit1, want: claims.StatusApproved},
		{name: "a dollar above is denied", income: medicaidLimit1 + 100, want: claims.StatusDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := strings.Replace(sampleBody, "150000", fmt.Sprint(tt.income), 1)
			rec := postClaim(t, f.app.Handler, "key-"+tt.want, body)
			if rec.Code != http.StatusCreated {
				t.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
			c := decodeClaim(t, rec)
			if c.Status != tt.want || c.ID == "" || c.MemberID != "M-1" || c.ServiceDate != "2026-11-02" ||
				c.AmountCents != 12500 || c.CreatedAt.IsZero() || c.DecidedAt == nil || c.RuleSet == "" {
				t.Errorf("claim = %+v", c)
			}
			if rec.Header().Get("Idempotent-Replayed") != "" {
				t.Error("a first submission is marked as replayed")
			}
			if rec.Header().Get(web.HeaderRegion) != "us-east-2" {
				t.Error("identity headers missing")
			}

			get := httptest.NewRecorder()
			f.app.Handler.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/v1/claims/"+c.ID, nil))
			if get.Code != http.StatusOK {
				t.Fatalf("GET status %d: %s", get.Code, get.Body)
			}
			if got := decodeClaim(t, get); got.ID != c.ID || got.Status != c.Status || !got.CreatedAt.Equal(c.CreatedAt) {
				t.Errorf("GET = %+v, want the created claim %+v", got, c)
			}
		})
	}
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	first := postClaim(t, f.app.Handler, "idem-1", sampleBody)
	if first.Code != http.StatusCreated {
		t.Fatalf("first: %d %s", first.Code, first.Body)
	}
	created := decodeClaim(t, first)

	// The same request, reformatted and reordered, is the same request.
	reordered := `{ "amountCents": 12500, "procedureCode": "99213", "serviceDate": "2026-11-02",
		"monthlyIncomeCents": 150000, "householdSize": 1, "state": "OH", "memberId": "M-1" }`
	for i, body := range []string{sampleBody, reordered} {
		again := postClaim(t, f.app.Handler, "idem-1", body)
		if again.Code != http.StatusCreated {
			t.Fatalf("replay %d: %d %s", i, again.Code, again.Body)
		}
		if again.Header().Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay %d lacks Idempotent-Replayed: true", i)
		}
		if got := decodeClaim(t, again); got.ID != created.ID || !got.CreatedAt.Equal(created.CreatedAt) {
			t.Errorf("replay %d returned claim %s, want %s", i, got.ID, created.ID)
		}
	}

	conflict := postClaim(t, f.app.Handler, "idem-1", strings.Replace(sampleBody, "12500", "12600", 1))
	if conflict.Code != http.StatusConflict || conflict.Header().Get("Content-Type") != web.ProblemContentType {
		t.Errorf("different body under the same key: %d %s, want a 409 problem", conflict.Code, conflict.Body)
	}
	if n := count(t, f.pool, "SELECT count(*) FROM claims"); n != 1 {
		t.Errorf("%d claims stored, want 1", n)
	}
	if n := count(t, f.pool, "SELECT count(*) FROM outbox"); n != 1 {
		t.Errorf("%d outbox events, want 1", n)
	}
}

func TestConcurrentSameKeyYieldsOneClaim(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	const n = 10
	ids := make([]string, n)
	codes := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			rec := postClaim(t, f.app.Handler, "same-key", sampleBody)
			codes[i] = rec.Code
			if rec.Code == http.StatusCreated {
				ids[i] = decodeClaim(t, rec).ID
			}
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		if codes[i] != http.StatusCreated || ids[i] != ids[0] {
			t.Errorf("request %d: status %d id %q, want 201 with id %q", i, codes[i], ids[i], ids[0])
		}
	}
	if got := count(t, f.pool, "SELECT count(*) FROM claims WHERE idempotency_key = 'same-key'"); got != 1 {
		t.Errorf("%d claims for one key, want 1", got)
	}
	if got := count(t, f.pool, "SELECT count(*) FROM outbox"); got != 1 {
		t.Errorf("%d outbox events for one claim, want 1", got)
	}
}

func TestOutboxIsWrittenInTheClaimTransaction(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	rec := postClaim(t, f.app.Handler, "tx-1", sampleBody)
	if rec.Code != http.StatusCreated {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	c := decodeClaim(t, rec)

	var sameTx bool
	var payload string
	err := f.pool.QueryRow(t.Context(), `SELECT c.xmin = o.xmin, o.payload::text
		FROM claims c JOIN outbox o ON o.aggregate_id = c.id WHERE c.id = $1 AND o.published_at IS NULL`, c.ID).
		Scan(&sameTx, &payload)
	if err != nil {
		t.Fatalf("outbox row for claim %s: %v", c.ID, err)
	}
	if !sameTx {
		t.Error("claim and outbox rows were written by different transactions")
	}
	e, err := events.DecodeClaimDecided(payload)
	if err != nil {
		t.Fatal(err)
	}
	if e.ClaimID != c.ID || e.MemberID != "M-1" || e.Status != c.Status || !e.OccurredAt.Equal(c.CreatedAt) {
		t.Errorf("event = %+v, claim = %+v", e, c)
	}

	// When the event cannot be written, neither is the claim.
	if _, err := f.pool.Exec(t.Context(), "ALTER TABLE outbox ADD CONSTRAINT refuse_events CHECK (false) NOT VALID"); err != nil {
		t.Fatal(err)
	}
	failed := postClaim(t, f.app.Handler, "tx-2", sampleBody)
	if failed.Code != http.StatusInternalServerError {
		t.Fatalf("status %d with the outbox refusing writes, want 500", failed.Code)
	}
	if n := count(t, f.pool, "SELECT count(*) FROM claims WHERE idempotency_key = 'tx-2'"); n != 0 {
		t.Error("the claim was stored although its event was not")
	}
}

func TestPendedWhenEligibilityIsDown(t *testing.T) {
	t.Parallel()
	f := setup(t, "http://"+apptest.FreeAddr(t).String())

	for i := range 5 { // enough to open the breaker on the way
		start := time.Now()
		rec := postClaim(t, f.app.Handler, fmt.Sprintf("down-%d", i), sampleBody)
		if rec.Code != http.StatusCreated {
			t.Fatalf("claim %d: status %d %s, want 201 even with eligibility down", i, rec.Code, rec.Body)
		}
		if c := decodeClaim(t, rec); c.Status != claims.StatusPended || c.DecidedAt != nil || c.RuleSet != "" {
			t.Errorf("claim %d = %+v, want pended and undecided", i, c)
		}
		if el := time.Since(start); el > 2*time.Second {
			t.Errorf("claim %d took %s", i, el)
		}
	}
}

func TestReadjudicationDecidesPendedClaims(t *testing.T) {
	t.Parallel()
	elig := newEligibility(t)
	elig.up.Store(false)
	f := setup(t, elig.srv.URL)

	rec := postClaim(t, f.app.Handler, "later", sampleBody)
	if c := decodeClaim(t, rec); rec.Code != http.StatusCreated || c.Status != claims.StatusPended {
		t.Fatalf("%d %+v, want a pended claim", rec.Code, c)
	}
	id := decodeClaim(t, rec).ID
	if n, err := f.app.Service.Readjudicate(t.Context()); err != nil || n != 0 {
		t.Fatalf("Readjudicate while down = %d, %v; want 0, nil", n, err)
	}

	elig.up.Store(true)
	time.Sleep(2 * fastElig.BreakerDelay) // let the breaker half-open
	if n, err := f.app.Service.Readjudicate(t.Context()); err != nil || n != 1 {
		t.Fatalf("Readjudicate after recovery = %d, %v; want 1, nil", n, err)
	}
	get := httptest.NewRecorder()
	f.app.Handler.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/v1/claims/"+id, nil))
	if c := decodeClaim(t, get); c.Status != claims.StatusApproved || c.DecidedAt == nil {
		t.Errorf("after re-adjudication: %+v, want approved", c)
	}
	statuses := count(t, f.pool, "SELECT count(DISTINCT payload->>'status') FROM outbox WHERE aggregate_id = $1", id)
	if statuses != 2 {
		t.Errorf("claim has events for %d statuses, want 2 (pended, then approved)", statuses)
	}
	// A second pass finds nothing left to do.
	if n, err := f.app.Service.Readjudicate(t.Context()); err != nil || n != 0 {
		t.Errorf("second pass = %d, %v; want 0, nil", n, err)
	}
}

func TestRejectedRequests(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	tests := []struct {
		name       string
		key        string
		body       string
		wantStatus int
		wantField  string
	}{
		{name: "missing idempotency key", body: sampleBody, wantStatus: 400},
		{name: "unprintable idempotency key", key: "a b", body: sampleBody, wantStatus: 400},
		{name: "malformed", key: "k1", body: `{"memberId":`, wantStatus: 400},
		{name: "unknown field", key: "k2", body: strings.Replace(sampleBody, `"memberId"`, `"ssn":"1","memberId"`, 1), wantStatus: 400, wantField: "ssn"},
		{name: "oversized", key: "k3", body: `{"memberId":"` + strings.Repeat("m", web.DefaultMaxBody) + `"}`, wantStatus: 413},
		{name: "missing field", key: "k4", body: `{"memberId":"M-1"}`, wantStatus: 422, wantField: "state"},
		{name: "territory", key: "k5", body: strings.Replace(sampleBody, `"OH"`, `"PR"`, 1), wantStatus: 422, wantField: "state"},
		{name: "impossible date", key: "k6", body: strings.Replace(sampleBody, "2026-11-02", "2026-02-30", 1), wantStatus: 422, wantField: "serviceDate"},
		{name: "bad procedure code", key: "k7", body: strings.Replace(sampleBody, "99213", "9921", 1), wantStatus: 422, wantField: "procedureCode"},
		{name: "zero amount", key: "k8", body: strings.Replace(sampleBody, "12500", "0", 1), wantStatus: 422, wantField: "amountCents"},
		{name: "household too large", key: "k9", body: strings.Replace(sampleBody, `"householdSize":1`, `"householdSize":51`, 1), wantStatus: 422, wantField: "householdSize"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := postClaim(t, f.app.Handler, tt.key, tt.body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != web.ProblemContentType {
				t.Fatalf("Content-Type %q, want problem+json", ct)
			}
			var p web.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if tt.wantField != "" && (len(p.Errors) == 0 || p.Errors[0].Field != tt.wantField) {
				t.Errorf("errors = %+v, want field %s first", p.Errors, tt.wantField)
			}
		})
	}
	if n := count(t, f.pool, "SELECT count(*) FROM claims"); n != 0 {
		t.Errorf("%d claims stored from rejected requests", n)
	}
}

func TestGetUnknownClaim(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	for _, id := range []string{"6f1c8f3e-3f7a-4a57-9d2b-1b1f0f4b9c11", "not-a-uuid"} {
		rec := httptest.NewRecorder()
		f.app.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/claims/"+id, nil))
		if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") != web.ProblemContentType {
			t.Errorf("GET %s = %d %s, want a 404 problem", id, rec.Code, rec.Body)
		}
	}
}

func TestRelayPublishesEachEventOnce(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	const claimsN = 30
	for i := range claimsN {
		if rec := postClaim(t, f.app.Handler, fmt.Sprintf("relay-%d", i), sampleBody); rec.Code != http.StatusCreated {
			t.Fatalf("claim %d: %d", i, rec.Code)
		}
	}
	// Two relays, as blue and green run during a deploy, with small
	// batches so that they contend for rows.
	relays := []*outbox.Relay{
		outbox.New(f.pool, f.rdb, outbox.Options{Batch: 4}, logging.Discard()),
		outbox.New(f.pool, f.rdb, outbox.Options{Batch: 4}, logging.Discard()),
	}
	var wg sync.WaitGroup
	var published atomic.Int32
	for _, r := range relays {
		wg.Go(func() {
			for {
				n, err := r.RelayOnce(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				if n == 0 {
					return
				}
				published.Add(int32(n))
			}
		})
	}
	wg.Wait()
	if published.Load() != claimsN {
		t.Errorf("relays published %d events, want %d", published.Load(), claimsN)
	}
	entries, err := f.rdb.XRange(t.Context(), events.ClaimsStream, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		ev, err := events.DecodeClaimDecided(e.Values[events.FieldPayload].(string))
		if err != nil {
			t.Fatal(err)
		}
		if e.Values[events.FieldEventID] != ev.EventID || e.Values[events.FieldType] != events.TypeClaimDecided {
			t.Errorf("entry fields %v disagree with payload %+v", e.Values, ev)
		}
		if seen[ev.EventID] {
			t.Errorf("event %s published twice", ev.EventID)
		}
		seen[ev.EventID] = true
	}
	if len(seen) != claimsN {
		t.Errorf("stream holds %d distinct events, want %d", len(seen), claimsN)
	}
	if n := count(t, f.pool, "SELECT count(*) FROM outbox WHERE published_at IS NULL"); n != 0 {
		t.Errorf("%d events left unpublished", n)
	}
}

func TestRelayKeepsEventsWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	if rec := postClaim(t, f.app.Handler, "r-down", sampleBody); rec.Code != http.StatusCreated {
		t.Fatal(rec.Code)
	}
	deadRedis := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer deadRedis.Close()
	if _, err := outbox.New(f.pool, deadRedis, outbox.Options{}, logging.Discard()).RelayOnce(t.Context()); err == nil {
		t.Fatal("RelayOnce succeeded without Redis")
	}
	if n := count(t, f.pool, "SELECT count(*) FROM outbox WHERE published_at IS NULL"); n != 1 {
		t.Fatalf("%d unpublished events after a failed publish, want 1", n)
	}
	if n, err := f.app.Relay.RelayOnce(t.Context()); err != nil || n != 1 {
		t.Fatalf("RelayOnce with Redis back = %d, %v; want 1, nil", n, err)
	}
}

// TestReadinessDegradesWithoutFailing: claims keeps taking claims while
// Redis (events wait in the outbox) or eligibility (claims are pended) is
// away, so readiness reports them as degraded and stays 200; only the
// primary database is required.
func TestReadinessDegradesWithoutFailing(t *testing.T) {
	t.Parallel()
	pool, _ := connect(t)
	deadRedis := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
	defer deadRedis.Close()
	elig := newEligibility(t)
	elig.up.Store(false)
	cfg := Config{EligibilityURL: elig.srv.URL, Eligibility: fastElig}
	a := Build(cfg, logging.Discard(), Deps{Primary: pool, Redis: deadRedis}, outbox.Options{})
	// Enough failures to open the breaker.
	if rec := postClaim(t, a.Handler, "degraded-1", sampleBody); rec.Code != http.StatusCreated {
		t.Fatalf("POST with eligibility down = %d %s", rec.Code, rec.Body)
	}
	rec := httptest.NewRecorder()
	a.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.ReadinessPath, nil))
	var rd web.Readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rd.Status != web.StatusDegraded || !slices.Equal(rd.Degraded, []string{"redis", "eligibility"}) {
		t.Errorf("readyz = %d %+v, want 200 degraded by redis and eligibility", rec.Code, rd)
	}
	pool.Close()
	rec = httptest.NewRecorder()
	a.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.ReadinessPath, nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("readyz with the database closed = %d, want 503", rec.Code)
	}
}

// TestRunDrainsOnShutdown runs the service from its environment, submits a
// claim, and stops it at once: the claim's event must reach the stream
// before Run returns.
func TestRunDrainsOnShutdown(t *testing.T) {
	t.Parallel()
	addr := apptest.FreeAddr(t)
	redisURL := testinfra.RedisURL(t)
	dsn := testinfra.PostgresDSN(t, "claims")
	env := config.MapLookup(map[string]string{
		"HOST": "127.0.0.1", "PORT": fmt.Sprint(addr.Port), "DATABASE_URL": dsn, "REDIS_URL": redisURL,
		"ELIGIBILITY_URL": newEligibility(t).srv.URL, "TANDEM_REGION": "us-west-2", "TANDEM_COLOR": "green",
	})
	stop := apptest.Start(t, Run, env)
	apptest.WaitReady(t, "http://"+addr.String())
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr.String()+"/v1/claims", strings.NewReader(sampleBody))
	req.Header.Set("Idempotency-Key", "run-1")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(web.HeaderColor) != "green" {
		t.Fatalf("POST = %d %v", resp.StatusCode, resp.Header)
	}
	stop()

	opt, err := redis.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	if n, err := rdb.XLen(t.Context(), events.ClaimsStream).Result(); err != nil || n != 1 {
		t.Errorf("stream length after shutdown = %d, %v; want 1", n, err)
	}
}
