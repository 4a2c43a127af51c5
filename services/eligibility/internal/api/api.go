// Package api is the eligibility HTTP interface.
package api

import (
	"context"
	"errors"
	"net/http"

	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/kit/web"
)

// DeterminationsPath is where determinations are requested. Claims calls it
// through the region's proxy.
const DeterminationsPath = "/v1/eligibility/determinations"

// Determiner decides requests.
type Determiner interface {
	Determine(ctx context.Context, req rules.Request) (rules.Determination, error)
}

// Register adds the eligibility routes to mux.
func Register(mux *http.ServeMux, d Determiner) {
	mux.Handle("POST "+DeterminationsPath, web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return determine(w, r, d)
	}))
}

// determinationRequest uses pointers so that a missing field is told apart
// from a zero one.
type determinationRequest struct {
	Program            *string `json:"program"`
	State              *string `json:"state"`
	HouseholdSize      *int    `json:"householdSize"`
	MonthlyIncomeCents *int64  `json:"monthlyIncomeCents"`
}

// DecodeRequest strictly decodes a determination request body and checks
// that every field is present; the rules validate the values.
func DecodeRequest(w http.ResponseWriter, r *http.Request) (rules.Request, error) {
	var body determinationRequest
	if err := web.DecodeJSON(w, r, &body, web.DefaultMaxBody); err != nil {
		return rules.Request{}, err
	}
	var missing []web.FieldError
	for _, f := range []struct {
		name   string
		absent bool
	}{
		{"program", body.Program == nil},
		{"state", body.State == nil},
		{"householdSize", body.HouseholdSize == nil},
		{"monthlyIncomeCents", body.MonthlyIncomeCents == nil},
	} {
		if f.absent {
			missing = append(missing, web.FieldError{Field: f.name, Detail: "is required"})
		}
	}
	if len(missing) > 0 {
		return rules.Request{}, web.Invalid(missing...)
	}
	return rules.Request{
		Program:            *body.Program,
		State:              *body.State,
		HouseholdSize:      *body.HouseholdSize,
		MonthlyIncomeCents: *body.MonthlyIncomeCents,
	}, nil
}

func determine(w http.ResponseWriter, r *http.Request, dt Determiner) error {
	req, err := DecodeRequest(w, r)
	if err != nil {
		return err
	}
	d, err := dt.Determine(r.Context(), req)
	var invalid *rules.InvalidError
	switch {
	case errors.As(err, &invalid):
		fields := make([]web.FieldError, len(invalid.Fields))
		for i, f := range invalid.Fields {
			fields[i] = web.FieldError{Field: f.Field, Detail: f.Detail}
		}
		return web.Invalid(fields...)
	case errors.Is(err, rules.ErrNoRuleSet):
		return web.NewProblem(http.StatusServiceUnavailable, "no %s rule set is in effect yet", req.Program)
	case err != nil:
		return err
	}
	web.WriteJSON(w, http.StatusOK, d)
	return nil
}
