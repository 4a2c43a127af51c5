package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/services/kit/events"
)

// ErrNotFound means no claim has the id.
var ErrNotFound = errors.New("claim not found")

// Store keeps claims and their outbox in PostgreSQL.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a store over the primary pool.
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

const claimColumns = `id, idempotency_key, request_hash, member_id, state, household_size,
	monthly_income_cents, to_char(service_date, 'YYYY-MM-DD'), procedure_code, amount_cents,
	status, status_reason, rule_set, income_limit_cents, created_at, decided_at`

func scanClaim(row pgx.Row) (Claim, error) {
	var c Claim
	var ruleSet *string
	err := row.Scan(&c.ID, &c.idempotencyKey, &c.requestHash, &c.MemberID, &c.State, &c.HouseholdSize,
		&c.MonthlyIncomeCents, &c.ServiceDate, &c.ProcedureCode, &c.AmountCents,
		&c.Status, &c.StatusReason, &ruleSet, &c.IncomeLimitCents, &c.CreatedAt, &c.DecidedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Claim{}, ErrNotFound
	}
	if err != nil {
		return Claim{}, err
	}
	if ruleSet != nil {
		c.RuleSet = *ruleSet
	}
	c.CreatedAt = c.CreatedAt.UTC()
	if c.DecidedAt != nil {
		t := c.DecidedAt.UTC()
		c.DecidedAt = &t
	}
	return c, nil
}

// Get reads a claim by id from the primary, so that a client reads its own
// write right after creating it.
func (s *Store) Get(ctx context.Context, id string) (Claim, error) {
	c, err := scanClaim(s.pool.QueryRow(ctx, "SELECT "+claimColumns+" FROM claims WHERE id = $1", id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Claim{}, fmt.Errorf("read claim %s: %w", id, err)
	}
	return c, err
}

// ByIdempotencyKey reads the claim created under key.
func (s *Store) ByIdempotencyKey(ctx context.Context, key string) (Claim, error) {
	c, err := scanClaim(s.pool.QueryRow(ctx, "SELECT "+claimColumns+" FROM claims WHERE idempotency_key = $1", key))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Claim{}, fmt.Errorf("read claim by idempotency key: %w", err)
	}
	return c, err
}

// decidedEvent builds the claim.decided event for c's current status.
func decidedEvent(eventID string, c Claim, at time.Time) events.ClaimDecided {
	return events.ClaimDecided{
		EventID:    eventID,
		Type:       events.TypeClaimDecided,
		ClaimID:    c.ID,
		MemberID:   c.MemberID,
		Status:     c.Status,
		OccurredAt: at,
	}
}

func insertOutbox(ctx context.Context, tx pgx.Tx, e events.ClaimDecided) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s: %w", e.Type, err)
	}
	_, err = tx.Exec(ctx,
		"INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1, $2, $3, $4)",
		e.EventID, e.Type, e.ClaimID, string(payload))
	if err != nil {
		return fmt.Errorf("write %s to the outbox: %w", e.Type, err)
	}
	return nil
}

// Create stores c and its claim.decided event in one transaction. When a
// claim with the same idempotency key already exists (a concurrent retry
// won the race), nothing is written and created is false.
func (s *Store) Create(ctx context.Context, c Claim, eventID string) (created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO claims (id, idempotency_key, request_hash, member_id, state,
			household_size, monthly_income_cents, service_date, procedure_code, amount_cents,
			status, status_reason, rule_set, income_limit_cents, created_at, decided_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULLIF($13, ''), $14, $15, $16)
			ON CONFLICT (idempotency_key) DO NOTHING`,
			c.ID, c.idempotencyKey, c.requestHash, c.MemberID, c.State,
			c.HouseholdSize, c.MonthlyIncomeCents, c.ServiceDate, c.ProcedureCode, c.AmountCents,
			c.Status, c.StatusReason, c.RuleSet, c.IncomeLimitCents, c.CreatedAt, c.DecidedAt)
		if err != nil {
			return fmt.Errorf("insert claim: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		created = true
		return insertOutbox(ctx, tx, decidedEvent(eventID, c, c.CreatedAt))
	})
	return created, err
}

// Pended lists up to limit pended claims, oldest first.
func (s *Store) Pended(ctx context.Context, limit int) ([]Claim, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+claimColumns+
		" FROM claims WHERE status = 'pended' ORDER BY created_at LIMIT $1", limit)
	if err != nil {
		return nil, fmt.Errorf("list pended claims: %w", err)
	}
	defer rows.Close()
	var out []Claim
	for rows.Next() {
		c, err := scanClaim(rows)
		if err != nil {
			return nil, fmt.Errorf("list pended claims: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list pended claims: %w", err)
	}
	return out, nil
}

// Decide moves a pended claim to its decided status and writes the
// claim.decided event, in one transaction. The update only applies while
// the claim is still pended, so when two instances re-adjudicate the same
// claim only one decision and one event are recorded; decided reports
// whether this call was that one.
func (s *Store) Decide(ctx context.Context, c Claim, eventID string) (decided bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE claims
			SET status = $2, status_reason = $3, rule_set = NULLIF($4, ''), income_limit_cents = $5, decided_at = $6
			WHERE id = $1 AND status = 'pended'`,
			c.ID, c.Status, c.StatusReason, c.RuleSet, c.IncomeLimitCents, c.DecidedAt)
		if err != nil {
			return fmt.Errorf("decide claim %s: %w", c.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		decided = true
		return insertOutbox(ctx, tx, decidedEvent(eventID, c, *c.DecidedAt))
	})
	return decided, err
}
