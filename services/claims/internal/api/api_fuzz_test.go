package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/kit/web"
)

// isClientProblem reports whether err is a 4xx problem document.
func isClientProblem(err error) bool {
	var p *web.Problem
	return errors.As(err, &p) && p.Status >= 400 && p.Status <= 499 && p.Detail != ""
}

// FuzzDecodeSubmission feeds arbitrary Idempotency-Key headers, content
// types and bodies to the submission decoder. It either accepts a valid
// submission under a usable key or answers with a 4xx problem; it never
// panics and never lets an invalid submission through. The seed corpus is
// in testdata/fuzz/FuzzDecodeSubmission.
func FuzzDecodeSubmission(f *testing.F) {
	f.Add("k-1", "application/json", []byte(`{"memberId":"M-1","state":"OH","householdSize":1,"monthlyIncomeCents":150000,"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":12500}`))
	f.Fuzz(func(t *testing.T, key, contentType string, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/v1/claims", bytes.NewReader(body))
		if key != "" {
			r.Header.Set(HeaderIdempotencyKey, key)
		}
		if contentType != "" {
			r.Header.Set("Content-Type", contentType)
		}
		gotKey, sub, err := DecodeSubmission(httptest.NewRecorder(), r)
		if err != nil {
			if !isClientProblem(err) {
				t.Fatalf("error %v is not a 4xx problem", err)
			}
			return
		}
		if !claims.ValidIdempotencyKey(gotKey) || gotKey != r.Header.Get(HeaderIdempotencyKey) {
			t.Fatalf("accepted key %q", gotKey)
		}
		if err := claims.Validate(sub); err != nil {
			t.Fatalf("accepted an invalid submission %+v: %v", sub, err)
		}
	})
}

// FuzzParseListQuery feeds arbitrary query strings to the list parser. It
// either returns a filter within bounds or a 400 problem naming the bad
// parameters; a cursor it accepts round-trips unchanged. The seed corpus is
// in testdata/fuzz/FuzzParseListQuery.
func FuzzParseListQuery(f *testing.F) {
	f.Add("state=OH&status=approved&limit=2")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http answers 400 before the handler runs
		}
		filter, err := ParseListQuery(q)
		if err != nil {
			var p *web.Problem
			if !errors.As(err, &p) || p.Status != http.StatusBadRequest || len(p.Errors) == 0 {
				t.Fatalf("error %v is not a 400 problem naming parameters", err)
			}
			return
		}
		if filter.Limit < 1 || filter.Limit > MaxPageSize {
			t.Fatalf("limit %d out of bounds", filter.Limit)
		}
		if filter.After != nil {
			again, err := DecodeCursor(EncodeCursor(*filter.After))
			if err != nil || !again.CreatedAt.Equal(filter.After.CreatedAt) || again.ID != filter.After.ID {
				t.Fatalf("cursor %+v does not round-trip: %+v, %v", *filter.After, again, err)
			}
		}
	})
}
