package claims

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tandemhq/tandem/services/kit/events"
)

// ErrNotFound means no claim has the id.
var ErrNotFound = errors.New("claim not found")

// Store keeps claims and their outbox in PostgreSQL. Writes and
// read-your-writes reads go to the primary; reporting lists go to the read
// pool (a replica), falling back to the primary when it fails.
type Store struct {
	pool *pgxpool.Pool
	read *pgxpool.Pool
	// traceContext captures the caller's trace context for the outbox.
	traceContext func(context.Context) map[string]string
}

// NewStore returns a store. read may be the primary itself; traceContext
// may be nil, in which case events carry no trace context.
func NewStore(pool, read *pgxpool.Pool, traceContext func(context.Context) map[string]string) *Store {
	if read == nil {
		read = pool
	}
	if traceContext == nil {
		traceContext = func(context.Context) map[string]string { return nil }
	}
	return &Store{pool: pool, read: read, traceContext: traceContext}
}

// claimColumns reads a claim from the partitioned table, aliased c.
const claimColumns = `c.id, c.idempotency_key, c.request_hash, c.member_id, c.state, c.household_size,
	c.monthly_income_cents, to_char(c.service_date, 'YYYY-MM-DD'), c.procedure_code, c.amount_cents,
	c.status, c.status_reason, c.rule_set, c.income_limit_cents, c.created_at, c.decided_at`

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
	c, err := scanClaim(s.pool.QueryRow(ctx, "SELECT "+claimColumns+" FROM claims c WHERE c.id = $1", id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Claim{}, fmt.Errorf("read claim %s: %w", id, err)
	}
	return c, err
}

// ByIdempotencyKey reads the claim created under key. The key's row names
// the claim's member, so only the claim's own partition is read.
func (s *Store) ByIdempotencyKey(ctx context.Context, key string) (Claim, error) {
	c, err := scanClaim(s.pool.QueryRow(ctx, "SELECT "+claimColumns+` FROM idempotency_keys k
		JOIN claims c ON c.member_id = k.member_id AND c.id = k.claim_id
		WHERE k.idempotency_key = $1`, key))
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

func (s *Store) insertOutbox(ctx context.Context, tx pgx.Tx, e events.ClaimDecided) error {
	payload, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s: %w", e.Type, err)
	}
	tc := s.traceContext(ctx)
	if tc == nil {
		tc = map[string]string{}
	}
	_, err = tx.Exec(ctx,
		"INSERT INTO outbox (event_id, event_type, aggregate_id, payload, trace_context) VALUES ($1, $2, $3, $4, $5)",
		e.EventID, e.Type, e.ClaimID, string(payload), tc)
	if err != nil {
		return fmt.Errorf("write %s to the outbox: %w", e.Type, err)
	}
	return nil
}

// Create stores c's idempotency key, c and its claim.decided event in one
// transaction. When the key is already taken (a concurrent retry won the
// race), nothing is written and created is false.
func (s *Store) Create(ctx context.Context, c Claim, eventID string) (created bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO idempotency_keys (idempotency_key, request_hash, claim_id, member_id, created_at)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (idempotency_key) DO NOTHING`,
			c.idempotencyKey, c.requestHash, c.ID, c.MemberID, c.CreatedAt)
		if err != nil {
			return fmt.Errorf("record idempotency key: %w", err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO claims (id, idempotency_key, request_hash, member_id, state,
			household_size, monthly_income_cents, service_date, procedure_code, amount_cents,
			status, status_reason, rule_set, income_limit_cents, created_at, decided_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, NULLIF($13, ''), $14, $15, $16)`,
			c.ID, c.idempotencyKey, c.requestHash, c.MemberID, c.State,
			c.HouseholdSize, c.MonthlyIncomeCents, c.ServiceDate, c.ProcedureCode, c.AmountCents,
			c.Status, c.StatusReason, c.RuleSet, c.IncomeLimitCents, c.CreatedAt, c.DecidedAt)
		if err != nil {
			return fmt.Errorf("insert claim: %w", err)
		}
		created = true
		return s.insertOutbox(ctx, tx, decidedEvent(eventID, c, c.CreatedAt))
	})
	return created, err
}

// Pended lists up to limit pended claims, oldest first.
func (s *Store) Pended(ctx context.Context, limit int) ([]Claim, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+claimColumns+
		" FROM claims c WHERE c.status = 'pended' ORDER BY c.created_at, c.id LIMIT $1", limit)
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
			WHERE member_id = $7 AND id = $1 AND status = 'pended'`,
			c.ID, c.Status, c.StatusReason, c.RuleSet, c.IncomeLimitCents, c.DecidedAt, c.MemberID)
		if err != nil {
			return fmt.Errorf("decide claim %s: %w", c.ID, err)
		}
		if tag.RowsAffected() == 0 {
			return nil
		}
		decided = true
		return s.insertOutbox(ctx, tx, decidedEvent(eventID, c, *c.DecidedAt))
	})
	return decided, err
}

// Filter selects claims for a reporting list. Empty fields match anything.
type Filter struct {
	State  string
	Status string
	// After continues a list: only claims older than this position.
	After *Cursor
	// Limit is the page size.
	Limit int
}

// Cursor is a position in a list ordered newest first: created_at, then id
// to break ties between claims created in the same microsecond.
type Cursor struct {
	CreatedAt time.Time
	ID        string
}

// List returns up to f.Limit claims matching f, newest first, and whether
// more follow. It reads the replica, which may lag the primary by a moment:
// a claim created just now can be missing from a list, never from GET
// /v1/claims/{id}.
func (s *Store) List(ctx context.Context, f Filter) ([]Claim, bool, error) {
	cs, more, err := s.list(ctx, s.read, f)
	if err != nil && s.read != s.pool {
		cs, more, err = s.list(ctx, s.pool, f)
	}
	return cs, more, err
}

func (s *Store) list(ctx context.Context, pool *pgxpool.Pool, f Filter) ([]Claim, bool, error) {
	var (
		where []string
		args  []any
	)
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.State != "" {
		where = append(where, "c.state = "+arg(f.State))
	}
	if f.Status != "" {
		where = append(where, "c.status = "+arg(f.Status))
	}
	if f.After != nil {
		where = append(where, fmt.Sprintf("(c.created_at, c.id) < (%s, %s)", arg(f.After.CreatedAt), arg(f.After.ID)))
	}
	sql := "SELECT " + claimColumns + " FROM claims c"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY c.created_at DESC, c.id DESC LIMIT " + arg(f.Limit+1)
	rows, err := pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("list claims: %w", err)
	}
	defer rows.Close()
	out := []Claim{}
	for rows.Next() {
		c, err := scanClaim(rows)
		if err != nil {
			return nil, false, fmt.Errorf("list claims: %w", err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, false, fmt.Errorf("list claims: %w", err)
	}
	if len(out) > f.Limit {
		return out[:f.Limit], true, nil
	}
	return out, false, nil
}
