package rules

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Querier is the part of a pgx pool or transaction that Load uses.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Load reads the rule tables and builds a Table.
func Load(ctx context.Context, q Querier, now func() time.Time) (*Table, error) {
	states := map[string]string{}
	if err := each(ctx, q, "SELECT code, guideline_region FROM states", func(r pgx.Rows) error {
		var code, region string
		if err := r.Scan(&code, &region); err != nil {
			return err
		}
		states[code] = region
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load states: %w", err)
	}

	var guidelines []Guideline
	if err := each(ctx, q, `SELECT guideline_year, region, first_person_annual_cents, additional_person_annual_cents
		FROM poverty_guidelines`, func(r pgx.Rows) error {
		var g Guideline
		if err := r.Scan(&g.Year, &g.Region, &g.FirstPersonAnnualCents, &g.AdditionalPersonAnnualCents); err != nil {
			return err
		}
		guidelines = append(guidelines, g)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load poverty guidelines: %w", err)
	}

	sets := map[string]*RuleSet{}
	var order []string
	if err := each(ctx, q, `SELECT name, program, guideline_year, fpl_percent, effective_from, effective_through
		FROM rule_sets ORDER BY name`, func(r pgx.Rows) error {
		rs := RuleSet{Limits: map[string]Limits{}}
		var through *time.Time
		if err := r.Scan(&rs.Name, &rs.Program, &rs.GuidelineYear, &rs.FPLPercent, &rs.EffectiveFrom, &through); err != nil {
			return err
		}
		if through != nil {
			rs.EffectiveThrough = *through
		}
		sets[rs.Name] = &rs
		order = append(order, rs.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load rule sets: %w", err)
	}

	if err := each(ctx, q, "SELECT rule_set, region, household_size, monthly_limit_cents FROM income_limits", func(r pgx.Rows) error {
		var name, region string
		var size int
		var cents int64
		if err := r.Scan(&name, &region, &size, &cents); err != nil {
			return err
		}
		rs := sets[name]
		lim := rs.Limits[region]
		lim.BySize[size-1] = cents
		rs.Limits[region] = lim
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load income limits: %w", err)
	}

	if err := each(ctx, q, "SELECT rule_set, region, additional_member_monthly_cents FROM income_limit_increments", func(r pgx.Rows) error {
		var name, region string
		var cents int64
		if err := r.Scan(&name, &region, &cents); err != nil {
			return err
		}
		rs := sets[name]
		lim := rs.Limits[region]
		lim.AdditionalMemberCents = cents
		rs.Limits[region] = lim
		return nil
	}); err != nil {
		return nil, fmt.Errorf("load income limit increments: %w", err)
	}

	list := make([]RuleSet, 0, len(order))
	for _, name := range order {
		list = append(list, *sets[name])
	}
	return NewTable(states, guidelines, list, now)
}

func each(ctx context.Context, q Querier, sql string, fn func(pgx.Rows) error) error {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
