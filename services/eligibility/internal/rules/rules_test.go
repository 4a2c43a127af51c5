package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/services/kit/usstates"
)

func TestPercentOneDecimal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		num, den int64
		want     float64
	}{
		{name: "exact", num: 1565000, den: 1565000, want: 100},
		{name: "rounds down", num: 3000000, den: 3215000, want: 93.3}, // 93.312...
		{name: "rounds half up", num: 1005, den: 1000, want: 100.5},
		{name: "half of a tenth rounds up", num: 10005, den: 10000, want: 100.1}, // 100.05
		{name: "zero income", num: 0, den: 1565000, want: 0},
		{name: "large income stays exact", num: MaxMonthlyIncomeCents * 12, den: 1565000, want: 766773162.9},
	}
	for _, tt := range tests {
		if got := percentOneDecimal(tt.num, tt.den); got != tt.want {
			t.Errorf("%s: percentOneDecimal(%d, %d) = %v, want %v", tt.name, tt.num, tt.den, got, tt.want)
		}
	}
}

func TestLimitsBeyondEight(t *testing.T) {
	t.Parallel()
	l := Limits{BySize: [8]int64{1, 2, 3, 4, 5, 6, 7, 586700}, AdditionalMemberCents: 59600}
	tests := []struct {
		size int
		want int64
	}{{1, 1}, {8, 586700}, {9, 646300}, {10, 705900}, {20, 586700 + 12*59600}}
	for _, tt := range tests {
		if got := l.MonthlyCents(tt.size); got != tt.want {
			t.Errorf("MonthlyCents(%d) = %d, want %d", tt.size, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	ok := Request{Program: ProgramSNAP, State: "OH", HouseholdSize: 4, MonthlyIncomeCents: 250000}
	tests := []struct {
		name   string
		mutate func(*Request)
		fields []string
	}{
		{name: "valid", mutate: func(*Request) {}},
		{name: "unknown program", mutate: func(r *Request) { r.Program = "wic" }, fields: []string{"program"}},
		{name: "territory", mutate: func(r *Request) { r.State = "PR" }, fields: []string{"state"}},
		{name: "unknown state", mutate: func(r *Request) { r.State = "ZZ" }, fields: []string{"state"}},
		{name: "household of zero", mutate: func(r *Request) { r.HouseholdSize = 0 }, fields: []string{"householdSize"}},
		{name: "household of 51", mutate: func(r *Request) { r.HouseholdSize = 51 }, fields: []string{"householdSize"}},
		{name: "household of 50", mutate: func(r *Request) { r.HouseholdSize = 50 }},
		{name: "negative household", mutate: func(r *Request) { r.HouseholdSize = -3 }, fields: []string{"householdSize"}},
		{name: "negative income", mutate: func(r *Request) { r.MonthlyIncomeCents = -1 }, fields: []string{"monthlyIncomeCents"}},
		{name: "absurd income", mutate: func(r *Request) { r.MonthlyIncomeCents = MaxMonthlyIncomeCents + 1 }, fields: []string{"monthlyIncomeCents"}},
		{name: "several at once", mutate: func(r *Request) { r.Program, r.State = "", "" }, fields: []string{"program", "state"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req := ok
			tt.mutate(&req)
			err := Validate(req)
			var got []string
			var inv *InvalidError
			if errors.As(err, &inv) {
				for _, f := range inv.Fields {
					got = append(got, f.Field)
				}
			} else if err != nil {
				t.Fatalf("unexpected error type: %v", err)
			}
			if diff := cmp.Diff(tt.fields, got); diff != "" {
				t.Errorf("invalid fields (-want +got):\n%s", diff)
			}
		})
	}
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func fullLimits(base int64) map[string]Limits {
	m := map[string]Limits{}
	for i, r := range regions {
		var l Limits
		for s := range l.BySize {
			l.BySize[s] = base + int64(i*1000+s)
		}
		l.AdditionalMemberCents = 100
		m[r] = l
	}
	return m
}

func allStates() map[string]string {
	m := map[string]string{}
	for _, c := range usstates.Codes() {
		m[c] = RegionContiguous
	}
	m["AK"], m["HI"] = RegionAlaska, RegionHawaii
	return m
}

func guidelines(year int) []Guideline {
	return []Guideline{
		{Year: year, Region: RegionContiguous, FirstPersonAnnualCents: 1565000, AdditionalPersonAnnualCents: 550000},
		{Year: year, Region: RegionAlaska, FirstPersonAnnualCents: 1955000, AdditionalPersonAnnualCents: 688000},
		{Year: year, Region: RegionHawaii, FirstPersonAnnualCents: 1799000, AdditionalPersonAnnualCents: 633000},
	}
}

func TestRuleSetInEffect(t *testing.T) {
	t.Parallel()
	sets := []RuleSet{
		{Name: "snap-fy2026", Program: ProgramSNAP, GuidelineYear: 2025, EffectiveFrom: day(2025, 10, 1), EffectiveThrough: day(2026, 9, 30), Limits: fullLimits(100000)},
		{Name: "snap-fy2027", Program: ProgramSNAP, GuidelineYear: 2025, EffectiveFrom: day(2026, 10, 1), EffectiveThrough: day(2027, 9, 30), Limits: fullLimits(200000)},
		{Name: "medicaid-2025", Program: ProgramMedicaid, GuidelineYear: 2025, EffectiveFrom: day(2025, 1, 15), Limits: fullLimits(300000)},
	}
	tests := []struct {
		name       string
		now        time.Time
		program    string
		want       string
		wantLapsed []string
		wantErr    error
	}{
		{name: "last day of FY2026", now: day(2026, 9, 30).Add(23 * time.Hour), program: ProgramSNAP, want: "snap-fy2026"},
		{name: "first day of FY2027", now: day(2026, 10, 1), program: ProgramSNAP, want: "snap-fy2027"},
		{name: "lapsed newest is still used", now: day(2027, 12, 1), program: ProgramSNAP, want: "snap-fy2027",
			wantLapsed: []string{"snap (snap-fy2027 ended 2027-09-30)"}},
		{name: "open-ended medicaid", now: day(2030, 1, 1), program: ProgramMedicaid, want: "medicaid-2025",
			wantLapsed: []string{"snap (snap-fy2027 ended 2027-09-30)"}},
		{name: "nothing started yet", now: day(2025, 9, 30), program: ProgramSNAP, wantErr: ErrNoRuleSet},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			table, err := NewTable(allStates(), guidelines(2025), sets, func() time.Time { return tt.now })
			if err != nil {
				t.Fatal(err)
			}
			d, err := table.Determine(Request{Program: tt.program, State: "OH", HouseholdSize: 1, MonthlyIncomeCents: 1})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if d.RuleSet != tt.want {
				t.Errorf("rule set = %q, want %q", d.RuleSet, tt.want)
			}
			if diff := cmp.Diff(tt.wantLapsed, table.Lapsed()); diff != "" {
				t.Errorf("Lapsed (-want +got):\n%s", diff)
			}
		})
	}
}

func TestNewTableRejectsIncompleteData(t *testing.T) {
	t.Parallel()
	complete := func() []RuleSet {
		return []RuleSet{
			{Name: "snap", Program: ProgramSNAP, GuidelineYear: 2025, EffectiveFrom: day(2025, 10, 1), Limits: fullLimits(1)},
			{Name: "medicaid", Program: ProgramMedicaid, GuidelineYear: 2025, EffectiveFrom: day(2025, 1, 15), Limits: fullLimits(1)},
		}
	}
	tests := []struct {
		name   string
		states func() map[string]string
		sets   func() []RuleSet
		year   int
		want   string
	}{
		{name: "missing state", states: func() map[string]string { m := allStates(); delete(m, "WY"); return m }, sets: complete, year: 2025,
			want: "state WY has no guideline region"},
		{name: "territory listed", states: func() map[string]string { m := allStates(); m["PR"] = RegionContiguous; return m }, sets: complete, year: 2025,
			want: `"PR", which is not a state or DC`},
		{name: "missing region limits", states: allStates, year: 2025, sets: func() []RuleSet {
			s := complete()
			delete(s[0].Limits, RegionHawaii)
			return s
		}, want: "rule set snap: no limits for hawaii"},
		{name: "missing size", states: allStates, year: 2025, sets: func() []RuleSet {
			s := complete()
			l := s[1].Limits[RegionAlaska]
			l.BySize[6] = 0
			s[1].Limits[RegionAlaska] = l
			return s
		}, want: "no alaska limit for a household of 7"},
		{name: "missing guideline year", states: allStates, sets: complete, year: 2024, want: "no 2025 poverty guideline"},
		{name: "missing program", states: allStates, year: 2025, sets: func() []RuleSet { return complete()[:1] }, want: "no rule set for medicaid"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := NewTable(tt.states(), guidelines(tt.year), tt.sets(), time.Now)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
