package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/claims/internal/api"
	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/outbox"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/logging"
	"github.com/tandemhq/tandem/services/kit/web"
)

// countingTracer counts the queries a pool runs.
type countingTracer struct{ n atomic.Int32 }

func (c *countingTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *countingTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// readOnlyPool opens a second pool on dsn whose sessions refuse writes, as
// a replica's do, and counts its queries.
func readOnlyPool(t *testing.T, dsn string) (*pgxpool.Pool, *countingTracer) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	tracer := &countingTracer{}
	cfg.ConnConfig.Tracer = tracer
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool, tracer
}

func listClaims(t *testing.T, h http.Handler, query string) (int, api.Page, *httptest.ResponseRecorder) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/claims"+query, nil))
	var p api.Page
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, p, rec
}

// TestListGoesToTheReadPoolFilteredAndPaged submits claims in three states
// with two outcomes, then pages through the approved Ohio claims two at a
// time: every one appears once, newest first, and every list query ran on
// the read pool.
func TestListGoesToTheReadPoolFilteredAndPaged(t *testing.T) {
	t.Parallel()
	dsn := testinfra.PostgresDSN(t, "claims")
	primary, rdb := connectTo(t, dsn)
	read, reads := readOnlyPool(t, dsn)
	cfg := Config{Base: config.Base{Region: "r", Color: "blue", Version: "v"}, EligibilityURL: newEligibility(t).srv.URL, Eligibility: fastElig}
	a := Build(cfg, logging.Discard(), Deps{Primary: primary, Read: read, Redis: rdb}, outbox.Options{})

	var approvedOH []string
	for i, st := range []string{"OH", "TX", "OH", "AK", "OH", "OH", "TX", "OH", "OH"} {
		income := 100000
		if i%4 == 3 {
			income = medicaidLimit1 + 100 // denied
		}
		body := fmt.Sprintf(`{"memberId":"M-%d","state":%q,"householdSize":1,"monthlyIncomeCents":%d,`+
			`"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":12500}`, i, st, income)
		rec := postClaim(t, a.Handler, fmt.Sprintf("list-%d", i), body)
		if rec.Code != http.StatusCreated {
			t.Fatalf("POST %d: %d %s", i, rec.Code, rec.Body)
		}
		if c := decodeClaim(t, rec); st == "OH" && c.Status == "approved" {
			approvedOH = append([]string{c.ID}, approvedOH...) // newest first
		}
	}
	if reads.n.Load() != 0 {
		t.Fatalf("submissions ran %d queries on the read pool", reads.n.Load())
	}

	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("the list never ends")
		}
		q := "?state=OH&status=approved&limit=2"
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		code, page, rec := listClaims(t, a.Handler, q)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", q, code, rec.Body)
		}
		for _, c := range page.Claims {
			if c.State != "OH" || c.Status != "approved" {
				t.Errorf("claim %s is %s/%s in a list of approved OH claims", c.ID, c.State, c.Status)
			}
			got = append(got, c.ID)
		}
		if page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if strings.Join(got, ",") != strings.Join(approvedOH, ",") {
		t.Errorf("listed %v, want %v (newest first)", got, approvedOH)
	}
	if reads.n.Load() == 0 {
		t.Error("the list did not read from the read pool")
	}

	_, all, _ := listClaims(t, a.Handler, "")
	if len(all.Claims) != 9 || all.NextCursor != "" {
		t.Errorf("unfiltered list has %d claims (next %q), want all 9 on one page", len(all.Claims), all.NextCursor)
	}
	_, denied, _ := listClaims(t, a.Handler, "?status=denied")
	if len(denied.Claims) != 2 {
		t.Errorf("denied list has %d claims, want 2", len(denied.Claims))
	}
}

func TestListRejectsBadQueries(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	tests := []struct {
		query string
		field string
	}{
		{"?status=lost", "status"},
		{"?state=PR", "state"},
		{"?limit=0", "limit"},
		{"?limit=501", "limit"},
		{"?limit=ten", "limit"},
		{"?cursor=not-a-cursor", "cursor"},
		{"?cursor=" + api.EncodeCursor(claims.Cursor{CreatedAt: time.Now(), ID: "8e1f0c55-4b9c-4d7e-9a53-0b7bb1f1a2c3"}), ""},
		{"?sort=asc", "sort"},
		{"?status=denied&status=approved", "status"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			t.Parallel()
			code, _, rec := listClaims(t, f.app.Handler, tt.query)
			if tt.field == "" {
				if code != http.StatusOK {
					t.Fatalf("GET %s = %d %s, want 200", tt.query, code, rec.Body)
				}
				return
			}
			if code != http.StatusBadRequest || rec.Header().Get("Content-Type") != web.ProblemContentType {
				t.Fatalf("GET %s = %d %s, want a 400 problem", tt.query, code, rec.Body)
			}
			var p web.Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if len(p.Errors) != 1 || p.Errors[0].Field != tt.field {
				t.Errorf("errors = %+v, want one naming %s", p.Errors, tt.field)
			}
		})
	}
}

// TestClaimsArePartitionedAndKeysStayGloballyUnique checks the partition
// layout and the idempotency design that goes with it: claims of different
// members land in different partitions, and a key reused for another
// member is still refused, because keys are unique across partitions.
func TestClaimsArePartitionedAndKeysStayGloballyUnique(t *testing.T) {
	t.Parallel()
	f := setup(t, newEligibility(t).srv.URL)
	for i := range 16 {
		body := strings.Replace(sampleBody, `"M-1"`, fmt.Sprintf(`"member-%d"`, i), 1)
		if rec := postClaim(t, f.app.Handler, fmt.Sprintf("part-%d", i), body); rec.Code != http.StatusCreated {
			t.Fatalf("POST %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	if n := count(t, f.pool, "SELECT count(DISTINCT tableoid) FROM claims"); n < 2 {
		t.Errorf("16 members' claims sit in %d partition(s)", n)
	}
	if n := count(t, f.pool, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'claims'::regclass"); n != 8 {
		t.Errorf("claims has %d partitions, want 8", n)
	}
	other := strings.Replace(sampleBody, `"M-1"`, `"someone-else"`, 1)
	rec := postClaim(t, f.app.Handler, "part-3", other)
	if rec.Code != http.StatusConflict {
		t.Errorf("key part-3 reused for another member: %d %s, want 409", rec.Code, rec.Body)
	}
	if n := count(t, f.pool, "SELECT count(*) FROM claims"); n != 16 {
		t.Errorf("%d claims stored, want 16", n)
	}
}
