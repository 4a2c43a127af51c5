// Package claims adjudicates claims: it validates a submission, asks the
// eligibility service whether the member qualifies for Medicaid, and stores
// the claim together with the claim.decided event in one transaction.
// Submissions are idempotent on the client's Idempotency-Key.
package claims

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/tandemhq/tandem/services/kit/usstates"
)

// Statuses.
const (
	StatusApproved = "approved"
	StatusDenied   = "denied"
	// StatusPended means eligibility could not be determined when the claim
	// arrived; re-adjudication decides it later.
	StatusPended = "pended"
)

// Submission is a validated claim request.
type Submission struct {
	MemberID           string `json:"memberId"`
	State              string `json:"state"`
	HouseholdSize      int    `json:"householdSize"`
	MonthlyIncomeCents int64  `json:"monthlyIncomeCents"`
	ServiceDate        string `json:"serviceDate"`
	ProcedureCode      string `json:"procedureCode"`
	AmountCents        int64  `json:"amountCents"`
}

// Hash identifies the request for idempotency: the SHA-256 of its canonical
// JSON, so that whitespace and field order do not make a retry look like a
// different request.
func (s Submission) Hash() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		// A struct of strings and integers always marshals; hashing the
		// Go representation keeps Hash total anyway.
		b = fmt.Appendf(nil, "%#v", s)
	}
	sum := sha256.Sum256(b)
	return sum[:]
}

// Claim is a stored claim.
type Claim struct {
	ID           string `json:"id"`
	Status       string `json:"status"`
	StatusReason string `json:"statusReason"`
	Submission
	RuleSet          string     `json:"ruleSet,omitempty"`
	IncomeLimitCents *int64     `json:"incomeLimitCents,omitempty"`
	CreatedAt        time.Time  `json:"createdAt"`
	DecidedAt        *time.Time `json:"decidedAt,omitempty"`

	idempotencyKey string
	requestHash    []byte
}

// FieldError names an invalid field.
type FieldError struct {
	Field  string
	Detail string
}

// InvalidError lists every invalid field of a submission.
type InvalidError struct {
	Fields []FieldError
}

func (e *InvalidError) Error() string {
	return fmt.Sprintf("invalid claim: %d invalid fields, first %s: %s", len(e.Fields), e.Fields[0].Field, e.Fields[0].Detail)
}

// Bounds.
const (
	MaxMemberIDLen        = 64
	MaxAmountCents        = 1_000_000_000 // $10 million
	MaxIdempotencyKey     = 255
	maxHouseholdSize      = 50
	maxMonthlyIncomeCents = 1_000_000_000_000
)

var (
	memberIDPattern  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
	procedurePattern = regexp.MustCompile(`^[0-9A-Z]{5}$`)
)

// Validate checks a submission. The bounds on state, household size and
// income mirror the eligibility service's, so that a claim it would reject
// is refused here rather than pended.
func Validate(s Submission) error {
	var f []FieldError
	add := func(field, detail string) { f = append(f, FieldError{field, detail}) }
	if s.MemberID == "" || len(s.MemberID) > MaxMemberIDLen || !memberIDPattern.MatchString(s.MemberID) {
		add("memberId", fmt.Sprintf("must be 1 to %d letters, digits, '.', '_' or '-'", MaxMemberIDLen))
	}
	if !usstates.Valid(s.State) {
		add("state", usstates.Unsupported)
	}
	if s.HouseholdSize < 1 || s.HouseholdSize > maxHouseholdSize {
		add("householdSize", fmt.Sprintf("must be between 1 and %d", maxHouseholdSize))
	}
	if s.MonthlyIncomeCents < 0 || s.MonthlyIncomeCents > maxMonthlyIncomeCents {
		add("monthlyIncomeCents", fmt.Sprintf("must be between 0 and %d", int64(maxMonthlyIncomeCents)))
	}
	if d, err := time.Parse(time.DateOnly, s.ServiceDate); err != nil || d.Format(time.DateOnly) != s.ServiceDate {
		add("serviceDate", "must be a calendar date in YYYY-MM-DD form")
	}
	if !procedurePattern.MatchString(s.ProcedureCode) {
		add("procedureCode", "must be a five-character CPT or HCPCS code such as 99213")
	}
	if s.AmountCents <= 0 || s.AmountCents > MaxAmountCents {
		add("amountCents", fmt.Sprintf("must be between 1 and %d", int64(MaxAmountCents)))
	}
	if len(f) > 0 {
		return &InvalidError{Fields: f}
	}
	return nil
}

// ValidIdempotencyKey reports whether key is usable: 1 to 255 visible ASCII
// characters, which covers UUIDs and the other usual formats.
func ValidIdempotencyKey(key string) bool {
	if key == "" || len(key) > MaxIdempotencyKey {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}
