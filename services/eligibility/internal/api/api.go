// Package api is the eligibility HTTP interface.
package api

import (
	"errors"
	"net/http"

	"github.com/tandemhq/tandem/services/eligibility/internal/rules"
	"github.com/tandemhq/tandem/services/kit/web"
)

// DeterminationsPath is where determinations are requested. Claims calls it
// through the region's proxy.
const DeterminationsPath = "/v1/eligibility/determinations"

// Register adds the eligibility routes to mux.
func Register(mux *http.ServeMux, table *rules.Table) {
	mux.Handle("POST "+DeterminationsPath, web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return determine(w, r, table)
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

func determine(w http.ResponseWriter, r *http.Request, table *rules.Table) error {
	var body determinationRequest
	if err := web.DecodeJSON(w, r, &body, web.DefaultMaxBody); err != nil {
		return err
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
		return web.Invalid(missing...)
	}
	d, err := table.Determine(rules.Request{
		Program:            *body.Program,
		State:              *body.State,
		HouseholdSize:      *body.HouseholdSize,
		MonthlyIncomeCents: *body.MonthlyIncomeCents,
	})
	var invalid *rules.InvalidError
	switch {
	case errors.As(err, &invalid):
		fields := make([]web.FieldError, len(invalid.Fields))
		for i, f := range invalid.Fields {
			fields[i] = web.FieldError{Field: f.Field, Detail: f.Detail}
		}
		return web.Invalid(fields...)
	case errors.Is(err, rules.ErrNoRuleSet):
		return web.NewProblem(http.StatusServiceUnavailable, "no %s rule set is in effect yet", *body.Program)
	case err != nil:
		return err
	}
	web.WriteJSON(w, http.StatusOK, d)
	return nil
}
