package claims

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var valid = Submission{
	MemberID: "M-1", State: "OH", HouseholdSize: 4, MonthlyIncomeCents: 250000,
	ServiceDate: "2026-11-02", ProcedureCode: "99213", AmountCents: 12500,
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Submission)
		fields []string
	}{
		{name: "valid", mutate: func(*Submission) {}},
		{name: "HCPCS code", mutate: func(s *Submission) { s.ProcedureCode = "G0008" }},
		{name: "zero income", mutate: func(s *Submission) { s.MonthlyIncomeCents = 0 }},
		{name: "empty member", mutate: func(s *Submission) { s.MemberID = "" }, fields: []string{"memberId"}},
		{name: "member with spaces", mutate: func(s *Submission) { s.MemberID = "M 1" }, fields: []string{"memberId"}},
		{name: "member too long", mutate: func(s *Submission) { s.MemberID = strings.Repeat("m", MaxMemberIDLen+1) }, fields: []string{"memberId"}},
		{name: "lower-case state", mutate: func(s *Submission) { s.State = "oh" }, fields: []string{"state"}},
		{name: "territory", mutate: func(s *Submission) { s.State = "GU" }, fields: []string{"state"}},
		{name: "household of zero", mutate: func(s *Submission) { s.HouseholdSize = 0 }, fields: []string{"householdSize"}},
		{name: "household of 50", mutate: func(s *Submission) { s.HouseholdSize = 50 }},
		{name: "household of 51", mutate: func(s *Submission) { s.HouseholdSize = 51 }, fields: []string{"householdSize"}},
		{name: "negative income", mutate: func(s *Submission) { s.MonthlyIncomeCents = -5 }, fields: []string{"monthlyIncomeCents"}},
		{name: "not a date", mutate: func(s *Submission) { s.ServiceDate = "11/02/2026" }, fields: []string{"serviceDate"}},
		{name: "no such day", mutate: func(s *Submission) { s.ServiceDate = "2026-02-29" }, fields: []string{"serviceDate"}},
		{name: "short code", mutate: func(s *Submission) { s.ProcedureCode = "992" }, fields: []string{"procedureCode"}},
		{name: "negative amount", mutate: func(s *Submission) { s.AmountCents = -1 }, fields: []string{"amountCents"}},
		{name: "huge amount", mutate: func(s *Submission) { s.AmountCents = MaxAmountCents + 1 }, fields: []string{"amountCents"}},
		{name: "several", mutate: func(s *Submission) { s.MemberID, s.AmountCents = "", 0 }, fields: []string{"memberId", "amountCents"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := valid
			tt.mutate(&s)
			var got []string
			var inv *InvalidError
			if err := Validate(s); errors.As(err, &inv) {
				for _, f := range inv.Fields {
					got = append(got, f.Field)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.fields, got); diff != "" {
				t.Errorf("invalid fields (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHashTellsRequestsApart(t *testing.T) {
	t.Parallel()
	same := valid
	if !bytes.Equal(valid.Hash(), same.Hash()) {
		t.Fatal("equal submissions hash differently")
	}
	other := valid
	other.AmountCents++
	if bytes.Equal(valid.Hash(), other.Hash()) {
		t.Fatal("different submissions hash the same")
	}
}

func TestValidIdempotencyKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		key  string
		want bool
	}{
		{"6f1c8f3e-3f7a-4a57-9d2b-1b1f0f4b9c11", true},
		{"claim:M-1:2026-11-02", true},
		{"", false},
		{"has space", false},
		{"tab\there", false},
		{"é", false},
		{strings.Repeat("k", MaxIdempotencyKey), true},
		{strings.Repeat("k", MaxIdempotencyKey+1), false},
	}
	for _, tt := range tests {
		if got := ValidIdempotencyKey(tt.key); got != tt.want {
			t.Errorf("ValidIdempotencyKey(%q) = %v, want %v", tt.key, got, tt.want)
		}
	}
}
