package server

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/fstest"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/outbox"
	"github.com/tandemhq/tandem/services/claims/internal/schema"
	"github.com/tandemhq/tandem/services/kit/config"
	"github.com/tandemhq/tandem/services/kit/db"
	"github.com/tandemhq/tandem/services/kit/logging"
)

// TestPartitioningMigrationKeepsExistingClaims migrates a database that
// holds claims written under the first, unpartitioned schema: they move to
// the partitions with their idempotency keys, so a retry of an old
// submission still replays its claim and GET still finds it.
func TestPartitioningMigrationKeepsExistingClaims(t *testing.T) {
	t.Parallel()
	pool, err := db.Connect(t.Context(), logging.Discard(), "claims", testinfra.PostgresDSN(t, "claims"), quick)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	first, err := fs.ReadFile(schema.Migrations(), "0001_claims.sql")
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(t.Context(), logging.Discard(), pool, fstest.MapFS{"0001_claims.sql": {Data: first}}); err != nil {
		t.Fatal(err)
	}
	// A claim as the first release stored it.
	const id = "0c2f4b1e-6d4a-4f7e-9a53-0b7bb1f1a2c3"
	if _, err := pool.Exec(t.Context(), `INSERT INTO claims (id, idempotency_key, request_hash, member_id, state,
		household_size, monthly_income_cents, service_date, procedure_code, amount_cents, status, status_reason,
		rule_set, income_limit_cents, created_at, decided_at)
		VALUES ($1, 'old-key', $2, 'M-1', 'OH', 1, 150000, '2026-11-02', '99213', 12500, 'approved', 'ok',
		'medicaid-expansion-138-2025', 179975, now(), now())`, id, sampleSubmissionHash(t)); err != nil {
		t.Fatal(err)
	}
	if err := db.Migrate(t.Context(), logging.Discard(), pool, schema.Migrations()); err != nil {
		t.Fatal(err)
	}

	cfg := Config{Base: config.Base{Region: "r", Color: "blue", Version: "v2"}, EligibilityURL: newEligibility(t).srv.URL, Eligibility: fastElig}
	_, rdb := connect(t)
	a := Build(cfg, logging.Discard(), Deps{Primary: pool, Redis: rdb}, outbox.Options{})
	replay := postClaim(t, a.Handler, "old-key", sampleBody)
	if replay.Code != http.StatusCreated || replay.Header().Get("Idempotent-Replayed") != "true" || decodeClaim(t, replay).ID != id {
		t.Fatalf("retry of the old submission = %d %s, want the old claim replayed", replay.Code, replay.Body)
	}
	get := httptest.NewRecorder()
	a.Handler.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/v1/claims/"+id, nil))
	if get.Code != http.StatusOK {
		t.Fatalf("GET old claim = %d %s", get.Code, get.Body)
	}
	if n := count(t, pool, "SELECT count(*) FROM idempotency_keys WHERE claim_id = $1", id); n != 1 {
		t.Errorf("old claim has %d idempotency keys, want 1", n)
	}
}

// sampleSubmissionHash is the request hash the first release stored for
// sampleBody.
func sampleSubmissionHash(t *testing.T) []byte {
	t.Helper()
	var sub claims.Submission
	if err := json.Unmarshal([]byte(sampleBody), &sub); err != nil {
		t.Fatal(err)
	}
	return sub.Hash()
}
