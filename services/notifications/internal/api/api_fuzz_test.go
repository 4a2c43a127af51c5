package api

import (
	"errors"
	"net/http"
	"net/url"
	"testing"

	"github.com/google/uuid"

	"github.com/tandemhq/tandem/services/kit/web"
)

// FuzzParseQuery feeds arbitrary query strings to the notifications query
// decoder: it returns a UUID claim id or a 400 problem, never anything
// else. The seed corpus is in testdata/fuzz/FuzzParseQuery.
func FuzzParseQuery(f *testing.F) {
	f.Add("claimId=8e1f0c55-4b9c-4d7e-9a53-0b7bb1f1a2c3")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http answers 400 before the handler runs
		}
		id, err := ParseQuery(q)
		if err != nil {
			var p *web.Problem
			if !errors.As(err, &p) || p.Status != http.StatusBadRequest {
				t.Fatalf("error %v is not a 400 problem", err)
			}
			return
		}
		if _, err := uuid.Parse(id); err != nil {
			t.Fatalf("accepted claimId %q: %v", id, err)
		}
	})
}
