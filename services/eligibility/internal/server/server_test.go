package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/eligibility/internal/determine"
	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/eligibility/internal/schema"
	"github.com/tandemhq/tandem/services/kit/apptest"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
	"github.com/tandemhq/tandem/services/kit/telemetry"
	"github.com/tandemhq/tandem/services/kit/usstates"
	"github.com/tandemhq/tandem/services/kit/web"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

var quick = retry.Policy{Budget: 10 * time.Second, First: 10 * time.Millisecond, Max: 200 * time.Millisecond}

// During SNAP FY 2026, so that the published FY 2026 table is in effect.
func fy2026() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) }

var identity = config.Base{Region: "us-east-2", Color: "green", Version: "v42"}

type fixture struct {
	dsn     string
	pool    *pgxpool.Pool
	rdb     *redis.Client // nil without the cache
	svc     *determine.Service
	tel     *telemetry.Telemetry
	handler http.Handler
}

// setup migrates a fresh database and builds the handler; with cache set,
// determinations are cached in a Redis database of the test's own.
func setup(t *testing.T, cache bool) fixture {
	t.Helper()
	dsn := testinfra.PostgresDSN(t, "eligibility")
	pool, err := db.Connect(t.Context(), logging.Discard(), "eligibility", dsn, quick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := db.Migrate(t.Context(), logging.Discard(), pool, schema.Migrations()); err != nil {
		t.Fatal(err)
	}
	if _, err := rules.Load(t.Context(), pool, fy2026); err != nil {
		t.Fatal(err)
	}
	tel, err := telemetry.Setup(t.Context(), telemetry.Config{ServiceName: Name, Sampler: "parentbased_always_on", SamplerArg: 1}, identity)
	if err != nil {
		t.Fatal(err)
	}
	f := fixture{dsn: dsn, pool: pool, tel: tel}
	o := determine.Options{Now: fy2026, Meter: tel.Meter(Name)}
	if cache {
		opts, err := redis.ParseURL(testinfra.RedisURL(t))
		if err != nil {
			t.Fatal(err)
		}
		f.rdb = redis.NewClient(opts)
		t.Cleanup(func() { _ = f.rdb.Close() })
		o.Redis, o.TTL = f.rdb, time.Minute
	}
	f.svc = determine.New(rules.NewStore(pool, pool), o, logging.Discard())
	if err := f.svc.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.handler = Handler(identity, logging.Discard(), tel, f.svc, Checks(pool, pool, f.svc)...)
	return f
}

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/eligibility/determinations", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func decide(t *testing.T, h http.Handler, program, state string, size int, income int64) rules.Determination {
	t.Helper()
	rec := post(t, h, fmt.Sprintf(`{"program":%q,"state":%q,"householdSize":%d,"monthlyIncomeCents":%d}`, program, state, size, income))
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s %d: status %d: %s", program, state, size, rec.Code, rec.Body)
	}
	var d rules.Determination
	if err := json.Unmarshal(rec.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// region is the guideline region of a USPS code.
func region(state string) string {
	switch state {
	case "AK":
		return rules.RegionAlaska
	case "HI":
		return rules.RegionHawaii
	}
	return rules.RegionContiguous
}

// snapFY2026 is USDA FNS's FY 2026 table of SNAP gross monthly income
// limits (130 percent of poverty), in whole dollars, as published for
// October 1, 2025 through September 30, 2026: households of one to eight,
// then the amount each additional member adds. It is typed from the
// published table, not computed, so that it checks the seeded rules and
// their rounding (each size is rounded up separately, which is why the
// rows do not differ by a constant).
var snapFY2026 = map[string]struct {
	bySize     [8]int64
	additional int64
}{
	rules.RegionContiguous: {[8]int64{1696, 2292, 2888, 3483, 4079, 4675, 5271, 5867}, 596},
	rules.RegionAlaska:     {[8]int64{2118, 2864, 3609, 4354, 5100, 5845, 6590, 7336}, 746},
	rules.RegionHawaii:     {[8]int64{1949, 2635, 3321, 4007, 4692, 5378, 6064, 6750}, 686},
}

// TestSNAPGrossIncomeLimitsFY2026 checks every state and DC, households
// of one to twelve, at the published limit (eligible) and one dollar above
// it (not eligible), once from the database and once more from the cache.
func TestSNAPGrossIncomeLimitsFY2026(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	for pass, source := range []string{"database", "cache"} {
		for _, state := range usstates.Codes() {
			row := snapFY2026[region(state)]
			for size := 1; size <= 12; size++ {
				limit := row.bySize[min(size, 8)-1] + int64(max(size-8, 0))*row.additional
				at := decide(t, f.handler, "snap", state, size, limit*100)
				above := decide(t, f.handler, "snap", state, size, (limit+1)*100)
				if at.IncomeLimitCents != limit*100 || !at.Eligible || above.Eligible {
					t.Errorf("%s: snap %s household of %d: limit %d eligible at limit %v, one dollar above %v; want limit %d, true, false",
						source, state, size, at.IncomeLimitCents, at.Eligible, above.Eligible, limit*100)
				}
				if at.RuleSet != "snap-gross-130-fy2026" || at.GuidelineYear != 2025 {
					t.Errorf("%s: snap %s %d decided under %s (%d)", source, state, size, at.RuleSet, at.GuidelineYear)
				}
			}
		}
		if pass == 0 && t.Failed() {
			return
		}
	}
}

// hhs2025 is the 2025 HHS poverty guideline in dollars a year: the amount
// for one person and for each additional person, per guideline region
// (90 FR 5917).
var hhs2025 = map[string][2]int64{
	rules.RegionContiguous: {15650, 5500},
	rules.RegionAlaska:     {19550, 6880},
	rules.RegionHawaii:     {17990, 6330},
}

// TestMedicaidExpansionLimitIs138PercentOfHHS2025 computes the monthly
// limit from the guidelines (annual x 1.38 / 12, in cents, never above
// 138 percent) and checks the service against it for every state and DC
// and households of one to twelve.
func TestMedicaidExpansionLimitIs138PercentOfHHS2025(t *testing.T) {
	t.Parallel()
	f := setup(t, false)
	for _, state := range usstates.Codes() {
		g := hhs2025[region(state)]
		for size := 1; size <= 12; size++ {
			annualCents := (g[0] + int64(size-1)*g[1]) * 100
			limit := annualCents * 138 / 1200
			at := decide(t, f.handler, "medicaid", state, size, limit)
			above := decide(t, f.handler, "medicaid", state, size, limit+100)
			if at.IncomeLimitCents != limit || !at.Eligible || above.Eligible {
				t.Errorf("medicaid %s household of %d: limit %d eligible at limit %v, one dollar above %v; want limit %d, true, false",
					state, size, at.IncomeLimitCents, at.Eligible, above.Eligible, limit)
			}
			if at.FPLPercent != 138 {
				t.Errorf("medicaid %s household of %d: fplPercent at the limit = %v, want 138", state, size, at.FPLPercent)
			}
		}
	}
}

// TestDatabaseAnswersMatchTheCheckedTable compares the per-request
// database path with the table the service validates at start, for every
// program, state and household size.
func TestDatabaseAnswersMatchTheCheckedTable(t *testing.T) {
	t.Parallel()
	f := setup(t, false)
	table, err := rules.Load(t.Context(), f.pool, fy2026)
	if err != nil {
		t.Fatal(err)
	}
	store := rules.NewStore(f.pool, f.pool)
	for _, program := range []string{rules.ProgramSNAP, rules.ProgramMedicaid} {
		for _, state := range usstates.Codes() {
			for size := rules.MinHouseholdSize; size <= rules.MaxHouseholdSize; size += 7 {
				req := rules.Request{Program: program, State: state, HouseholdSize: size, MonthlyIncomeCents: 300000}
				want, err := table.Determine(req)
				if err != nil {
					t.Fatal(err)
				}
				got, _, err := store.Determine(t.Context(), req, fy2026())
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("%+v (-table +database):\n%s", req, diff)
				}
			}
		}
	}
}

func TestDeterminationBody(t *testing.T) {
	t.Parallel()
	f := setup(t, false)
	rec := post(t, f.handler, `{"program":"snap","state":"OH","householdSize":4,"monthlyIncomeCents":250000}`)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"eligible": true, "program": "snap", "state": "OH", "householdSize": 4.0,
		"monthlyIncomeCents": 250000.0, "incomeLimitCents": 348300.0,
		// $2,500 x 12 / $32,150 = 93.31%.
		"fplPercent": 93.3, "guidelineYear": 2025.0, "ruleSet": "snap-gross-130-fy2026",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("body (-want +got):\n%s", diff)
	}
	for h, v := range map[string]string{web.HeaderRegion: "us-east-2", web.HeaderColor: "green", web.HeaderVersion: "v42"} {
		if rec.Header().Get(h) != v {
			t.Errorf("%s = %q, want %q", h, rec.Header().Get(h), v)
		}
	}
}

func TestInvalidRequests(t *testing.T) {
	t.Parallel()
	f := setup(t, false)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantFields []string
		wantDetail string
	}{
		{name: "unknown state", body: `{"program":"snap","state":"ZZ","householdSize":1,"monthlyIncomeCents":0}`,
			wantStatus: 422, wantFields: []string{"state"}, wantDetail: "50 states or DC"},
		{name: "territory", body: `{"program":"snap","state":"PR","householdSize":1,"monthlyIncomeCents":0}`,
			wantStatus: 422, wantFields: []string{"state"}, wantDetail: "territories"},
		{name: "household too small", body: `{"program":"snap","state":"OH","householdSize":0,"monthlyIncomeCents":0}`,
			wantStatus: 422, wantFields: []string{"householdSize"}},
		{name: "household too large", body: `{"program":"snap","state":"OH","householdSize":51,"monthlyIncomeCents":0}`,
			wantStatus: 422, wantFields: []string{"householdSize"}},
		{name: "negative income", body: `{"program":"medicaid","state":"OH","householdSize":1,"monthlyIncomeCents":-1}`,
			wantStatus: 422, wantFields: []string{"monthlyIncomeCents"}},
		{name: "unknown program", body: `{"program":"wic","state":"OH","householdSize":1,"monthlyIncomeCents":0}`,
			wantStatus: 422, wantFields: []string{"program"}},
		{name: "missing fields", body: `{"program":"snap"}`,
			wantStatus: 422, wantFields: []string{"state", "householdSize", "monthlyIncomeCents"}},
		{name: "malformed", body: `{"program":"snap",`, wantStatus: 400},
		{name: "unknown field", body: `{"program":"snap","state":"OH","householdSize":1,"monthlyIncomeCents":0,"ssn":"x"}`,
			wantStatus: 400, wantFields: []string{"ssn"}},
		{name: "wrong type", body: `{"program":"snap","state":"OH","householdSize":"four","monthlyIncomeCents":0}`,
			wantStatus: 400, wantFields: []string{"householdSize"}},
		{name: "oversized", body: `{"program":"` + strings.Repeat("s", web.DefaultMaxBody) + `"}`, wantStatus: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := post(t, f.handler, tt.body)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status = %d, want %d: %s", rec.Code, tt.wantStatus, rec.Body)
			}
			if ct := rec.Header().Get("Content-Type"); ct != web.ProblemContentType {
				t.Fatalf("Content-Type = %q, want problem+json", ct)
			}
			var p web.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			var fields []string
			for _, e := range p.Errors {
				fields = append(fields, e.Field)
			}
			if diff := cmp.Diff(tt.wantFields, fields); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			if !strings.Contains(p.Detail, tt.wantDetail) {
				t.Errorf("detail %q lacks %q", p.Detail, tt.wantDetail)
			}
		})
	}
}

func TestReadinessFollowsTheDatabase(t *testing.T) {
	t.Parallel()
	f := setup(t, false)
	probe := func() (int, web.Readiness) {
		rec := httptest.NewRecorder()
		f.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.ReadinessPath, nil))
		var rd web.Readiness
		if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
			t.Fatal(err)
		}
		return rec.Code, rd
	}
	if code, rd := probe(); code != http.StatusOK || rd.Status != "ready" {
		t.Fatalf("readyz = %d %+v with the database up", code, rd)
	}

	// The database disappears under the running service.
	cfg, err := pgconn.ParseConfig(f.dsn)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := testinfra.Postgres(t).Connect(t.Context(), "postgres")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(t.Context(), fmt.Sprintf("DROP DATABASE %q WITH (FORCE)", cfg.Database)); err != nil {
		t.Fatal(err)
	}

	code, rd := probe()
	if code != http.StatusServiceUnavailable || rd.Status != "unavailable" {
		t.Fatalf("readyz = %d %+v with the database gone, want 503", code, rd)
	}
	if len(rd.Checks) != 1 || rd.Checks[0].Name != "postgres" || rd.Checks[0].Status != "fail" || rd.Checks[0].Error == "" {
		t.Errorf("checks = %+v, want a failed postgres check with its error", rd.Checks)
	}
	// Liveness does not depend on the database.
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.LivenessPath, nil))
	if rec.Code != http.StatusOK {
		t.Errorf("healthz = %d with the database gone, want 200", rec.Code)
	}
}

// TestRun starts the service the way the platform does, through its
// environment, and stops it the way the platform does, by cancelling.
func TestRun(t *testing.T) {
	t.Parallel()
	addr := apptest.FreeAddr(t)
	env := config.MapLookup(map[string]string{
		"HOST": "127.0.0.1", "PORT": fmt.Sprint(addr.Port),
		"DATABASE_URL": testinfra.PostgresDSN(t, "eligibility"),
		"REDIS_URL":    testinfra.RedisURL(t), "ELIGIBILITY_CACHE_TTL": "30s",
		"TANDEM_REGION": "us-west-2", "TANDEM_COLOR": "blue", "TANDEM_VERSION": "v1",
	})
	stop := apptest.Start(t, Run, env)
	base := "http://" + addr.String()
	apptest.WaitReady(t, base)
	resp, err := http.Post(base+"/v1/eligibility/determinations", "application/json",
		strings.NewReader(`{"program":"medicaid","state":"OH","householdSize":1,"monthlyIncomeCents":179975}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"eligible":true`) {
		t.Fatalf("determination = %d %s", resp.StatusCode, body)
	}
	if resp.Header.Get(web.HeaderRegion) != "us-west-2" || resp.Header.Get(web.HeaderColor) != "blue" || resp.Header.Get(web.HeaderVersion) != "v1" {
		t.Errorf("identity headers = %v", resp.Header)
	}

	stop()
}

func scrape(t *testing.T, c *http.Client, base string) string {
	t.Helper()
	resp, err := c.Get(base + web.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func metricsOf(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.MetricsPath, nil))
	return rec.Body.String()
}

func cachedKeys(t *testing.T, rdb *redis.Client) []string {
	t.Helper()
	keys, err := rdb.Keys(t.Context(), determine.KeyPrefix+"*").Result()
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// TestRuleChangeInvalidatesCachedDeterminations changes a limit in the
// rule tables under a running service: the trigger announces a new
// revision, the service stops reading the old answers at once, deletes
// them, and answers from the new figures.
func TestRuleChangeInvalidatesCachedDeterminations(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f.svc.Run(ctx, func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, f.dsn) })
	}()
	t.Cleanup(func() { cancel(); <-done })

	before := decide(t, f.handler, "snap", "OH", 1, 169600)
	if !before.Eligible || before.IncomeLimitCents != 169600 {
		t.Fatalf("before the change: %+v", before)
	}
	decide(t, f.handler, "snap", "OH", 1, 169600)
	if m := metricsOf(t, f.handler); !strings.Contains(m, `eligibility_cache_operations_total{result="hit"} 1`) {
		t.Fatalf("the repeated determination was not a cache hit:\n%s", grep(m, "eligibility_cache"))
	}
	if keys := cachedKeys(t, f.rdb); len(keys) != 1 {
		t.Fatalf("cached keys = %v, want one", keys)
	}
	rev := f.svc.Revision()

	// A correction lowers the limit for a household of one by $10.
	if _, err := f.pool.Exec(t.Context(), `UPDATE income_limits SET monthly_limit_cents = 168600
		WHERE rule_set = 'snap-gross-130-fy2026' AND region = 'contiguous' AND household_size = 1`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new revision", func() bool { return f.svc.Revision() > rev })
	after := decide(t, f.handler, "snap", "OH", 1, 169600)
	if after.Eligible || after.IncomeLimitCents != 168600 {
		t.Fatalf("after the change: %+v, want the new limit 168600 and not eligible", after)
	}
	waitFor(t, "the stale answer to be deleted", func() bool {
		for _, k := range cachedKeys(t, f.rdb) {
			if strings.Contains(k, fmt.Sprintf(":r%d:", rev)) {
				return false
			}
		}
		return true
	})
}

// TestRevisionReadWithAnAnswerAdvancesTheCache covers a missed
// notification: an answer read at a newer revision than the instance knows
// moves the instance to that revision.
func TestRevisionReadWithAnAnswerAdvancesTheCache(t *testing.T) {
	t.Parallel()
	f := setup(t, true)
	rev := f.svc.Revision()
	if _, err := f.pool.Exec(t.Context(), `UPDATE rule_sets SET source = source || ' (reviewed)' WHERE program = 'medicaid'`); err != nil {
		t.Fatal(err)
	}
	decide(t, f.handler, "medicaid", "TX", 2, 100000)
	if got := f.svc.Revision(); got != rev+1 {
		t.Fatalf("revision = %d after an answer read at %d, want %d", got, rev+1, rev+1)
	}
	keys := cachedKeys(t, f.rdb)
	if len(keys) != 1 || !strings.Contains(keys[0], fmt.Sprintf(":r%d:", rev+1)) {
		t.Fatalf("cached keys = %v, want one under revision %d", keys, rev+1)
	}
}

// TestCacheOutageDegradesButAnswers points the cache at a port where no
// Redis listens: determinations still come from the database, and
// readiness reports the cache as a degraded dependency without failing.
func TestCacheOutageDegradesButAnswers(t *testing.T) {
	t.Parallel()
	f := setup(t, false)
	rdb := redis.NewClient(&redis.Options{Addr: apptest.FreeAddr(t).String(), DialTimeout: 50 * time.Millisecond, MaxRetries: -1})
	t.Cleanup(func() { _ = rdb.Close() })
	svc := determine.New(rules.NewStore(f.pool, f.pool), determine.Options{Redis: rdb, TTL: time.Minute, Now: fy2026}, logging.Discard())
	if err := svc.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	h := Handler(identity, logging.Discard(), f.tel, svc, Checks(f.pool, f.pool, svc)...)
	for i := range 8 {
		if d := decide(t, h, "snap", "HI", 3, 332100); !d.Eligible || d.IncomeLimitCents != 332100 {
			t.Fatalf("determination %d with the cache down: %+v", i, d)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, web.ReadinessPath, nil))
	var rd web.Readiness
	if err := json.Unmarshal(rec.Body.Bytes(), &rd); err != nil {
		t.Fatal(err)
	}
	if rec.Code != http.StatusOK || rd.Status != web.StatusDegraded || !slices.Equal(rd.Degraded, []string{"redis"}) {
		t.Fatalf("readyz = %d %+v, want 200 degraded by redis", rec.Code, rd)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func grep(s, substr string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, substr) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
