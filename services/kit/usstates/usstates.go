// Package usstates lists the jurisdictions the benefit rules cover: the 50
// states and the District of Columbia. Territories (PR, GU, VI, AS, MP) run
// their programs under different rules and are not covered.
package usstates

import "slices"

// codes are the USPS codes of the 50 states and DC, sorted so that Valid
// can binary-search them.
var codes = []string{
	"AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL",
	"GA", "HI", "IA", "ID", "IL", "IN", "KS", "KY", "LA", "MA",
	"MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE",
	"NH", "NJ", "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI",
	"SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA", "WI", "WV",
	"WY",
}

// Codes returns a copy of the covered codes, sorted.
func Codes() []string { return slices.Clone(codes) }

// Valid reports whether code is an upper-case USPS code of a state or DC.
func Valid(code string) bool {
	_, ok := slices.BinarySearch(codes, code)
	return ok
}

// Unsupported is the sentence every service uses to reject a code, so that
// clients see the same explanation whichever service answered.
const Unsupported = "must be the two-letter USPS code of one of the 50 states or DC; territories (PR, GU, VI, AS, MP) are not covered"
