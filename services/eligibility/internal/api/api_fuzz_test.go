package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/kit/web"
)

// FuzzDecodeRequest feeds arbitrary bodies and content types to the
// determination decoder. Whatever arrives, the decoder either returns a
// complete request or a 4xx problem, never a 5xx and never a panic; a
// decoded request survives a round trip through JSON unchanged, and the
// rules either accept it or name the invalid fields. The seed corpus is in
// testdata/fuzz/FuzzDecodeRequest.
func FuzzDecodeRequest(f *testing.F) {
	f.Add("application/json", []byte(`{"program":"snap","state":"OH","householdSize":4,"monthlyIncomeCents":250000}`))
	f.Fuzz(func(t *testing.T, contentType string, body []byte) {
		req, err := decode(contentType, body)
		if err != nil {
			var p *web.Problem
			if !errors.As(err, &p) || p.Status < 400 || p.Status > 499 {
				t.Fatalf("decode error %v is not a 4xx problem", err)
			}
			return
		}
		again, err := json.Marshal(map[string]any{
			"program": req.Program, "state": req.State,
			"householdSize": req.HouseholdSize, "monthlyIncomeCents": req.MonthlyIncomeCents,
		})
		if err != nil {
			t.Fatal(err)
		}
		back, err := decode("application/json", again)
		if err != nil || back != req {
			t.Fatalf("round trip of %+v gave %+v, %v", req, back, err)
		}
		var invalid *rules.InvalidError
		if err := rules.Validate(req); err != nil && (!errors.As(err, &invalid) || len(invalid.Fields) == 0) {
			t.Fatalf("Validate(%+v) = %v, want nil or the invalid fields", req, err)
		}
	})
}

func decode(contentType string, body []byte) (rules.Request, error) {
	r := httptest.NewRequest(http.MethodPost, DeterminationsPath, bytes.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	return DecodeRequest(httptest.NewRecorder(), r)
}
