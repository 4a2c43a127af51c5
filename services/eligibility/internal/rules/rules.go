// Package rules decides income eligibility for SNAP and Medicaid from rule
// tables that live in PostgreSQL as data: HHS poverty guidelines, the
// jurisdictions covered, and versioned per-program income limits. The
// service loads them once at start; determinations are pure functions of
// the loaded table and the request, which is what makes it safe for callers
// to retry them.
package rules

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tandemhq/tandem/services/kit/usstates"
)

// Programs.
const (
	ProgramSNAP     = "snap"
	ProgramMedicaid = "medicaid"
)

// Guideline regions: HHS publishes one poverty guideline table for the 48
// contiguous states and DC, and separate ones for Alaska and Hawaii.
const (
	RegionContiguous = "contiguous"
	RegionAlaska     = "alaska"
	RegionHawaii     = "hawaii"
)

var regions = []string{RegionContiguous, RegionAlaska, RegionHawaii}

// Request bounds.
const (
	MinHouseholdSize = 1
	// MaxHouseholdSize is far above any household on record; it exists
	// to catch typos (40 for 4) and keeps every sum in range. The limits
	// are complete for every size up to it: the tables list 1 to 8 and
	// add a fixed amount for each further member.
	MaxHouseholdSize = 50
	// MaxMonthlyIncomeCents ($10 billion a month) keeps the percentage
	// arithmetic inside int64; no real applicant comes near it.
	MaxMonthlyIncomeCents = 1_000_000_000_000
)

// tabulatedSizes is how many household sizes the published tables list;
// larger households add a fixed amount per member.
const tabulatedSizes = 8

// Guideline is one year's poverty guideline for one region.
type Guideline struct {
	Year                        int
	Region                      string
	FirstPersonAnnualCents      int64
	AdditionalPersonAnnualCents int64
}

// AnnualCents is the guideline for a household of size people.
func (g Guideline) AnnualCents(size int) int64 {
	return g.FirstPersonAnnualCents + int64(size-1)*g.AdditionalPersonAnnualCents
}

// Limits are one region's monthly income limits under a rule set.
type Limits struct {
	// BySize holds the limits for households of 1 to 8, in that order.
	BySize [tabulatedSizes]int64
	// AdditionalMemberCents is added for each member beyond eight.
	AdditionalMemberCents int64
}

// MonthlyCents is the limit for a household of size people.
func (l Limits) MonthlyCents(size int) int64 {
	if size <= tabulatedSizes {
		return l.BySize[size-1]
	}
	return l.BySize[tabulatedSizes-1] + int64(size-tabulatedSizes)*l.AdditionalMemberCents
}

// RuleSet is one program's income test for one period.
type RuleSet struct {
	Name          string
	Program       string
	GuidelineYear int
	// FPLPercent is the limit as a percentage of the guideline (130 for
	// SNAP's gross income test, 138 for the Medicaid expansion adult group).
	FPLPercent    int
	EffectiveFrom time.Time
	// EffectiveThrough is the last day the rule set applies; zero while no
	// successor has been published.
	EffectiveThrough time.Time
	Limits           map[string]Limits
}

// in reports whether the rule set applies on day.
func (rs RuleSet) in(day time.Time) bool {
	return !day.Before(rs.EffectiveFrom) && (rs.EffectiveThrough.IsZero() || !day.After(rs.EffectiveThrough))
}

// Table is everything a determination needs.
type Table struct {
	states     map[string]string    // USPS code -> guideline region
	guidelines map[string]Guideline // "year/region" -> guideline
	// sets holds each program's rule sets, newest effective_from first.
	sets map[string][]RuleSet
	now  func() time.Time
}

func guidelineKey(year int, region string) string { return fmt.Sprintf("%d/%s", year, region) }

// NewTable checks that the data is complete and consistent and builds a
// table. now is the clock that picks the rule set in effect for each
// determination.
func NewTable(states map[string]string, guidelines []Guideline, sets []RuleSet, now func() time.Time) (*Table, error) {
	var errs []error
	for _, code := range usstates.Codes() {
		if _, ok := states[code]; !ok {
			errs = append(errs, fmt.Errorf("state %s has no guideline region", code))
		}
	}
	for code, region := range states {
		if !usstates.Valid(code) {
			errs = append(errs, fmt.Errorf("state table lists %q, which is not a state or DC", code))
		}
		if !slices.Contains(regions, region) {
			errs = append(errs, fmt.Errorf("state %s maps to unknown region %q", code, region))
		}
	}
	t := &Table{
		states:     states,
		guidelines: map[string]Guideline{},
		sets:       map[string][]RuleSet{},
		now:        now,
	}
	for _, g := range guidelines {
		t.guidelines[guidelineKey(g.Year, g.Region)] = g
	}
	for _, rs := range sets {
		if rs.Program != ProgramSNAP && rs.Program != ProgramMedicaid {
			errs = append(errs, fmt.Errorf("rule set %s: unknown program %q", rs.Name, rs.Program))
			continue
		}
		for _, region := range regions {
			if _, ok := t.guidelines[guidelineKey(rs.GuidelineYear, region)]; !ok {
				errs = append(errs, fmt.Errorf("rule set %s: no %d poverty guideline for %s", rs.Name, rs.GuidelineYear, region))
			}
			lim, ok := rs.Limits[region]
			if !ok {
				errs = append(errs, fmt.Errorf("rule set %s: no limits for %s", rs.Name, region))
				continue
			}
			for i, c := range lim.BySize {
				if c <= 0 {
					errs = append(errs, fmt.Errorf("rule set %s: no %s limit for a household of %d", rs.Name, region, i+1))
				}
			}
			if lim.AdditionalMemberCents <= 0 {
				errs = append(errs, fmt.Errorf("rule set %s: no %s amount for each additional member", rs.Name, region))
			}
		}
		t.sets[rs.Program] = append(t.sets[rs.Program], rs)
	}
	for _, p := range []string{ProgramSNAP, ProgramMedicaid} {
		if len(t.sets[p]) == 0 {
			errs = append(errs, fmt.Errorf("no rule set for %s", p))
		}
		sort.Slice(t.sets[p], func(i, j int) bool { return t.sets[p][i].EffectiveFrom.After(t.sets[p][j].EffectiveFrom) })
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("eligibility rules are incomplete: %w", err)
	}
	return t, nil
}

// current returns the program's rule set in effect on the current day (UTC),
// or, when the newest one has lapsed without a successor, that newest one:
// answering with last period's figures beats refusing every determination.
// A rule set that has not started yet is never used.
func (t *Table) current(program string) (RuleSet, bool) {
	day := t.now().UTC().Truncate(24 * time.Hour)
	for _, rs := range t.sets[program] {
		// Newest first: the first one that has started is the one in
		// effect, or the lapsed newest one.
		if !day.Before(rs.EffectiveFrom) {
			return rs, true
		}
	}
	return RuleSet{}, false
}

// Lapsed lists programs whose newest rule set is past its effective period,
// so that the service can warn that a new rule set migration is due.
func (t *Table) Lapsed() []string {
	var out []string
	day := t.now().UTC().Truncate(24 * time.Hour)
	for _, p := range []string{ProgramMedicaid, ProgramSNAP} {
		if rs, ok := t.current(p); ok && !rs.in(day) {
			out = append(out, fmt.Sprintf("%s (%s ended %s)", p, rs.Name, rs.EffectiveThrough.Format(time.DateOnly)))
		}
	}
	return out
}

// Request is what a determination is asked about.
type Request struct {
	Program            string
	State              string
	HouseholdSize      int
	MonthlyIncomeCents int64
}

// Determination is the answer.
type Determination struct {
	Eligible           bool    `json:"eligible"`
	Program            string  `json:"program"`
	State              string  `json:"state"`
	HouseholdSize      int     `json:"householdSize"`
	MonthlyIncomeCents int64   `json:"monthlyIncomeCents"`
	IncomeLimitCents   int64   `json:"incomeLimitCents"`
	FPLPercent         float64 `json:"fplPercent"`
	GuidelineYear      int     `json:"guidelineYear"`
	RuleSet            string  `json:"ruleSet"`
}

// FieldError names an invalid request field.
type FieldError struct {
	Field  string
	Detail string
}

// InvalidError lists every invalid field of a request.
type InvalidError struct {
	Fields []FieldError
}

func (e *InvalidError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + ": " + f.Detail
	}
	return "invalid request: " + strings.Join(parts, "; ")
}

// Validate checks a request against the bounds the rules cover.
func Validate(req Request) error {
	var fields []FieldError
	if req.Program != ProgramSNAP && req.Program != ProgramMedicaid {
		fields = append(fields, FieldError{"program", fmt.Sprintf("must be %q or %q", ProgramSNAP, ProgramMedicaid)})
	}
	if !usstates.Valid(req.State) {
		fields = append(fields, FieldError{"state", usstates.Unsupported})
	}
	if req.HouseholdSize < MinHouseholdSize || req.HouseholdSize > MaxHouseholdSize {
		fields = append(fields, FieldError{"householdSize", fmt.Sprintf("must be between %d and %d", MinHouseholdSize, MaxHouseholdSize)})
	}
	if req.MonthlyIncomeCents < 0 {
		fields = append(fields, FieldError{"monthlyIncomeCents", "must not be negative"})
	} else if req.MonthlyIncomeCents > MaxMonthlyIncomeCents {
		fields = append(fields, FieldError{"monthlyIncomeCents", fmt.Sprintf("must be at most %d", int64(MaxMonthlyIncomeCents))})
	}
	if len(fields) > 0 {
		return &InvalidError{Fields: fields}
	}
	return nil
}

// ErrNoRuleSet means no rule set for the program has started yet.
var ErrNoRuleSet = errors.New("no rule set is in effect")

// Basis is what one determination rests on: the rule set in effect for the
// program and the figures it gives for the household's guideline region
// and size. The in-memory Table and the database Store both produce one,
// and Decide turns it into a determination, so the two cannot disagree on
// the arithmetic.
type Basis struct {
	RuleSet       string
	GuidelineYear int
	// LimitCents is the monthly income limit for the household's size.
	LimitCents int64
	// GuidelineAnnualCents is the poverty guideline for the household's
	// size, the denominator of fplPercent.
	GuidelineAnnualCents int64
}

// Determine decides req. A household is eligible when its gross monthly
// income is at or below the limit.
func (t *Table) Determine(req Request) (Determination, error) {
	if err := Validate(req); err != nil {
		return Determination{}, err
	}
	rs, ok := t.current(req.Program)
	if !ok {
		return Determination{}, fmt.Errorf("%s: %w", req.Program, ErrNoRuleSet)
	}
	region := t.states[req.State]
	return Decide(req, Basis{
		RuleSet:              rs.Name,
		GuidelineYear:        rs.GuidelineYear,
		LimitCents:           rs.Limits[region].MonthlyCents(req.HouseholdSize),
		GuidelineAnnualCents: t.guidelines[guidelineKey(rs.GuidelineYear, region)].AnnualCents(req.HouseholdSize),
	}), nil
}

// Decide applies b to a valid request. fplPercent is annual income
// (monthly x 12) as a percentage of the annual poverty guideline for the
// household, rounded half up to one decimal.
func Decide(req Request, b Basis) Determination {
	return Determination{
		Eligible:           req.MonthlyIncomeCents <= b.LimitCents,
		Program:            req.Program,
		State:              req.State,
		HouseholdSize:      req.HouseholdSize,
		MonthlyIncomeCents: req.MonthlyIncomeCents,
		IncomeLimitCents:   b.LimitCents,
		FPLPercent:         percentOneDecimal(req.MonthlyIncomeCents*12, b.GuidelineAnnualCents),
		GuidelineYear:      b.GuidelineYear,
		RuleSet:            b.RuleSet,
	}
}

// percentOneDecimal returns num/den x 100 rounded half up to one decimal,
// computed in integers so that the same inputs always give the same digits.
func percentOneDecimal(num, den int64) float64 {
	tenths := (num*1000*2 + den) / (2 * den)
	return float64(tenths) / 10
}
