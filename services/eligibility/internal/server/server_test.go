package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/eligibility/internal/schema"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/retry"
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
	handler http.Handler
}

func setup(t *testing.T) fixture {
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
	table, err := rules.Load(t.Context(), pool, fy2026)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{dsn: dsn, pool: pool, handler: Handler(identity, logging.Discard(), pool, table)}
}

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/v1/eligibility/determinations", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r)
	return rec
}

func determine(t *testing.T, h http.Handler, program, state string, size int, income int64) rules.Determination {
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

// TestPublishedFigures checks the seeded limits against the published
// tables, at the limit and one dollar above it.
func TestPublishedFigures(t *testing.T) {
	t.Parallel()
	f := setup(t)
	tests := []struct {
		program   string
		state     string
		size      int
		wantLimit int64
	}{
		// USDA FNS FY 2026 gross monthly limits (130% of poverty).
		{"snap", "OH", 1, 169600},
		{"snap", "DC", 2, 229200},
		{"snap", "OH", 4, 348300},
		{"snap", "CA", 8, 586700},
		{"snap", "TX", 10, 586700 + 2*59600},
		{"snap", "AK", 1, 211800},
		{"snap", "AK", 4, 435400},
		{"snap", "AK", 8, 733600},
		{"snap", "AK", 9, 733600 + 74600},
		{"snap", "HI", 1, 194900},
		{"snap", "HI", 3, 332100},
		{"snap", "HI", 8, 675000},
		{"snap", "HI", 20, 675000 + 12*68600},
		// Medicaid expansion adults: 2025 guideline x 1.38 / 12.
		{"medicaid", "OH", 1, 179975}, // $15,650
		{"medicaid", "OH", 4, 369725}, // $32,150
		{"medicaid", "NY", 9, 685975}, // $59,650
		{"medicaid", "AK", 1, 224825}, // $19,550
		{"medicaid", "AK", 5, 541305}, // $47,070
		{"medicaid", "HI", 3, 352475}, // $30,650
		{"medicaid", "HI", 8, 716450}, // $62,300
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s/%d", tt.program, tt.state, tt.size), func(t *testing.T) {
			t.Parallel()
			at := determine(t, f.handler, tt.program, tt.state, tt.size, tt.wantLimit)
			if at.IncomeLimitCents != tt.wantLimit {
				t.Fatalf("incomeLimitCents = %d, want %d", at.IncomeLimitCents, tt.wantLimit)
			}
			if !at.Eligible {
				t.Errorf("income exactly at the limit must be eligible")
			}
			above := determine(t, f.handler, tt.program, tt.state, tt.size, tt.wantLimit+100)
			if above.Eligible {
				t.Errorf("income one dollar above the limit must not be eligible")
			}
		})
	}
}

func TestDeterminationBody(t *testing.T) {
	t.Parallel()
	f := setup(t)
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
	f := setup(t)
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
		{name: "household too large", body: `{"program":"snap","state":"OH","householdSize":21,"monthlyIncomeCents":0}`,
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
	f := setup(t)
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close()
	env := config.MapLookup(map[string]string{
		"HOST": "127.0.0.1", "PORT": fmt.Sprint(addr.Port),
		"DATABASE_URL":  testinfra.PostgresDSN(t, "eligibility"),
		"TANDEM_REGION": "us-west-2", "TANDEM_COLOR": "blue", "TANDEM_VERSION": "v1",
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, env, io.Discard) }()

	base := "http://" + addr.String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + web.ReadinessPath)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("service never became ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
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

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run returned %v after cancellation, want nil", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}
}
