package rules

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemhq/tandem/services/kit/db"
)

// RevisionQuery reads the rules revision, which a trigger on every rule
// table bumps (and announces on RevisionChannel) whenever the rules change.
const RevisionQuery = "SELECT revision FROM rules_revision"

// RevisionChannel is the PostgreSQL notification channel on which rule
// changes are announced, with the new revision as payload.
const RevisionChannel = "eligibility_rules_changed"

// basisQuery finds, in one round trip, the rule set in effect on a day for
// a program and the figures it gives for a state's guideline region and a
// household size: the tabulated limit for sizes up to eight (the eighth for
// larger households, plus the per-member increment), and the poverty
// guideline. It also returns the rules revision the answer was read at, so
// that a cache can tell an answer from a lagging replica.
const basisQuery = `
SELECT rs.name, rs.guideline_year, il.monthly_limit_cents, inc.additional_member_monthly_cents,
       g.first_person_annual_cents, g.additional_person_annual_cents,
       (SELECT revision FROM rules_revision)
FROM states s
CROSS JOIN LATERAL (
    SELECT name, guideline_year FROM rule_sets
    WHERE program = $1 AND effective_from <= $3
    ORDER BY effective_from DESC LIMIT 1
) rs
JOIN income_limits il
  ON il.rule_set = rs.name AND il.region = s.guideline_region AND il.household_size = LEAST($4::int, 8)
JOIN income_limit_increments inc
  ON inc.rule_set = rs.name AND inc.region = s.guideline_region
JOIN poverty_guidelines g
  ON g.guideline_year = rs.guideline_year AND g.region = s.guideline_region
WHERE s.code = $2`

// Store decides requests from the rule tables in PostgreSQL, so that a
// rule change takes effect on the next determination of every instance,
// without a restart.
type Store struct {
	read, primary RowQuerier
}

// RowQuerier is the part of a pgx pool that the store uses.
type RowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// NewStore reads from read (a replica, or the primary itself) and falls
// back to primary when the replica fails.
func NewStore(read, primary RowQuerier) *Store {
	return &Store{read: read, primary: primary}
}

// Determine decides req as of day (UTC) and returns the rules revision the
// answer rests on.
func (s *Store) Determine(ctx context.Context, req Request, day time.Time) (Determination, int64, error) {
	if err := Validate(req); err != nil {
		return Determination{}, 0, err
	}
	// The replica is asked once; when it fails the primary is asked, and a
	// read there that failed for a transient reason (a broken connection,
	// a server failing over) is retried: a read is always safe to repeat.
	var (
		b   Basis
		rev int64
		err error
	)
	if s.read != s.primary {
		b, rev, err = s.basis(ctx, s.read, req, day)
	}
	if s.read == s.primary || (err != nil && !errors.Is(err, ErrNoRuleSet)) {
		var r based
		r, err = db.RetryTransient(ctx, dbAttempts, func(ctx context.Context) (based, error) {
			b, rev, err := s.basis(ctx, s.primary, req, day)
			return based{b, rev}, err
		})
		b, rev = r.b, r.rev
	}
	if err != nil {
		return Determination{}, 0, err
	}
	return Decide(req, b), rev, nil
}

// dbAttempts bounds the tries of a rules read that failed for a transient
// reason (about 1.5s of backoff in all: an in-region failover).
const dbAttempts = 7

// based is a basis and the rules revision it was read at.
type based struct {
	b   Basis
	rev int64
}

func (s *Store) basis(ctx context.Context, q RowQuerier, req Request, day time.Time) (Basis, int64, error) {
	var (
		b                      Basis
		tabulated, increment   int64
		firstPerson, perPerson int64
		rev                    int64
	)
	err := q.QueryRow(ctx, basisQuery, req.Program, req.State, day.UTC().Format(time.DateOnly), req.HouseholdSize).
		Scan(&b.RuleSet, &b.GuidelineYear, &tabulated, &increment, &firstPerson, &perPerson, &rev)
	if errors.Is(err, pgx.ErrNoRows) {
		// The state is valid (Validate passed) and every state has a
		// region, so only a missing rule set leaves no row.
		return Basis{}, 0, fmt.Errorf("%s: %w", req.Program, ErrNoRuleSet)
	}
	if err != nil {
		return Basis{}, 0, fmt.Errorf("read %s rules for %s: %w", req.Program, req.State, err)
	}
	lim := Limits{AdditionalMemberCents: increment}
	lim.BySize[min(req.HouseholdSize, tabulatedSizes)-1] = tabulated
	b.LimitCents = lim.MonthlyCents(req.HouseholdSize)
	b.GuidelineAnnualCents = Guideline{FirstPersonAnnualCents: firstPerson, AdditionalPersonAnnualCents: perPerson}.AnnualCents(req.HouseholdSize)
	return b, rev, nil
}

// Revision reads the current rules revision from the primary.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.primary.QueryRow(ctx, RevisionQuery).Scan(&rev); err != nil {
		return 0, fmt.Errorf("read rules revision: %w", err)
	}
	return rev, nil
}
