// Package api is the claims HTTP interface.
package api

import (
	"errors"
	"net/http"

	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/eligibility"
	"github.com/tandemhq/tandem/services/kit/web"
)

// Headers of the idempotency contract.
const (
	HeaderIdempotencyKey = "Idempotency-Key"
	HeaderReplayed       = "Idempotent-Replayed"
)

// Register adds the claims routes to mux.
func Register(mux *http.ServeMux, svc *claims.Service) {
	mux.Handle("POST /v1/claims", web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return submit(w, r, svc)
	}))
	mux.Handle("GET /v1/claims/{id}", web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return get(w, r, svc)
	}))
}

// submitRequest uses pointers so that a missing field is told apart from a
// zero one.
type submitRequest struct {
	MemberID           *string `json:"memberId"`
	State              *string `json:"state"`
	HouseholdSize      *int    `json:"householdSize"`
	MonthlyIncomeCents *int64  `json:"monthlyIncomeCents"`
	ServiceDate        *string `json:"serviceDate"`
	ProcedureCode      *string `json:"procedureCode"`
	AmountCents        *int64  `json:"amountCents"`
}

func (s submitRequest) submission() (claims.Submission, []web.FieldError) {
	var missing []web.FieldError
	req := func(name string, present bool) {
		if !present {
			missing = append(missing, web.FieldError{Field: name, Detail: "is required"})
		}
	}
	req("memberId", s.MemberID != nil)
	req("state", s.State != nil)
	req("householdSize", s.HouseholdSize != nil)
	req("monthlyIncomeCents", s.MonthlyIncomeCents != nil)
	req("serviceDate", s.ServiceDate != nil)
	req("procedureCode", s.ProcedureCode != nil)
	req("amountCents", s.AmountCents != nil)
	if len(missing) > 0 {
		return claims.Submission{}, missing
	}
	return claims.Submission{
		MemberID: *s.MemberID, State: *s.State, HouseholdSize: *s.HouseholdSize,
		MonthlyIncomeCents: *s.MonthlyIncomeCents, ServiceDate: *s.ServiceDate,
		ProcedureCode: *s.ProcedureCode, AmountCents: *s.AmountCents,
	}, nil
}

func submit(w http.ResponseWriter, r *http.Request, svc *claims.Service) error {
	key := r.Header.Get(HeaderIdempotencyKey)
	if key == "" {
		return web.NewProblem(http.StatusBadRequest,
			"the %s header is required: send a unique value (a UUID, say) per claim and reuse it when retrying", HeaderIdempotencyKey)
	}
	if !claims.ValidIdempotencyKey(key) {
		return web.NewProblem(http.StatusBadRequest,
			"the %s header must be 1 to %d visible ASCII characters", HeaderIdempotencyKey, claims.MaxIdempotencyKey)
	}
	var body submitRequest
	if err := web.DecodeJSON(w, r, &body, web.DefaultMaxBody); err != nil {
		return err
	}
	sub, missing := body.submission()
	if len(missing) > 0 {
		return web.Invalid(missing...)
	}
	if err := claims.Validate(sub); err != nil {
		var inv *claims.InvalidError
		if errors.As(err, &inv) {
			fields := make([]web.FieldError, len(inv.Fields))
			for i, f := range inv.Fields {
				fields[i] = web.FieldError{Field: f.Field, Detail: f.Detail}
			}
			return web.Invalid(fields...)
		}
		return err
	}

	c, replayed, err := svc.Submit(r.Context(), key, sub)
	var rejected *eligibility.RejectedError
	switch {
	case errors.Is(err, claims.ErrKeyReused):
		return web.NewProblem(http.StatusConflict,
			"this %s was already used for a different claim; use a new key for a new claim", HeaderIdempotencyKey)
	case errors.As(err, &rejected):
		return web.NewProblem(http.StatusUnprocessableEntity, "%s", rejected.Detail)
	case err != nil:
		return err
	}
	if replayed {
		w.Header().Set(HeaderReplayed, "true")
	}
	w.Header().Set("Location", "/v1/claims/"+c.ID)
	web.WriteJSON(w, http.StatusCreated, c)
	return nil
}

func get(w http.ResponseWriter, r *http.Request, svc *claims.Service) error {
	id := r.PathValue("id")
	c, err := svc.Get(r.Context(), id)
	if errors.Is(err, claims.ErrNotFound) {
		return web.NewProblem(http.StatusNotFound, "no claim has id %q", id)
	}
	if err != nil {
		return err
	}
	web.WriteJSON(w, http.StatusOK, c)
	return nil
}
