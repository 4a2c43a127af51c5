// Package api is the claims HTTP interface.
package api

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tandemhq/tandem/services/claims/internal/claims"
	"github.com/tandemhq/tandem/services/claims/internal/eligibility"
	"github.com/tandemhq/tandem/services/kit/usstates"
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
	mux.Handle("GET /v1/claims", web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return list(w, r, svc)
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

// DecodeSubmission reads a claim submission: the Idempotency-Key header
// and a strictly decoded, complete and valid body. Every failure is a 4xx
// problem that says what to fix.
func DecodeSubmission(w http.ResponseWriter, r *http.Request) (key string, sub claims.Submission, err error) {
	key = r.Header.Get(HeaderIdempotencyKey)
	if key == "" {
		return "", sub, web.NewProblem(http.StatusBadRequest,
			"the %s header is required: send a unique value (a UUID, say) per claim and reuse it when retrying", HeaderIdempotencyKey)
	}
	if !claims.ValidIdempotencyKey(key) {
		return "", sub, web.NewProblem(http.StatusBadRequest,
			"the %s header must be 1 to %d visible ASCII characters", HeaderIdempotencyKey, claims.MaxIdempotencyKey)
	}
	var body submitRequest
	if err := web.DecodeJSON(w, r, &body, web.DefaultMaxBody); err != nil {
		return "", sub, err
	}
	sub, missing := body.submission()
	if len(missing) > 0 {
		return "", sub, web.Invalid(missing...)
	}
	if err := claims.Validate(sub); err != nil {
		var inv *claims.InvalidError
		if errors.As(err, &inv) {
			fields := make([]web.FieldError, len(inv.Fields))
			for i, f := range inv.Fields {
				fields[i] = web.FieldError{Field: f.Field, Detail: f.Detail}
			}
			return "", sub, web.Invalid(fields...)
		}
		return "", sub, err
	}
	return key, sub, nil
}

func submit(w http.ResponseWriter, r *http.Request, svc *claims.Service) error {
	key, sub, err := DecodeSubmission(w, r)
	if err != nil {
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

// List bounds.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// statuses a list can filter on.
var statuses = []string{claims.StatusApproved, claims.StatusDenied, claims.StatusPended}

// ParseListQuery reads GET /v1/claims's query: optional state and status
// filters, a page size (limit) and the cursor of the previous page. Every
// problem with it is a 400 naming the parameter; unknown parameters are
// refused too, as unknown body fields are.
func ParseListQuery(q url.Values) (claims.Filter, error) {
	f := claims.Filter{Limit: DefaultPageSize}
	var bad []web.FieldError
	for name, vs := range q {
		switch name {
		case "state", "status", "limit", "cursor":
			if len(vs) > 1 {
				bad = append(bad, web.FieldError{Field: name, Detail: "must be given at most once"})
			}
		default:
			bad = append(bad, web.FieldError{Field: name, Detail: "is not a parameter of this list; use state, status, limit or cursor"})
		}
	}
	if v := q.Get("state"); v != "" {
		if !usstates.Valid(v) {
			bad = append(bad, web.FieldError{Field: "state", Detail: usstates.Unsupported})
		}
		f.State = v
	}
	if v := q.Get("status"); v != "" {
		if !slices.Contains(statuses, v) {
			bad = append(bad, web.FieldError{Field: "status", Detail: "must be one of " + strings.Join(statuses, ", ")})
		}
		f.Status = v
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageSize {
			bad = append(bad, web.FieldError{Field: "limit", Detail: "must be a number between 1 and " + strconv.Itoa(MaxPageSize)})
		}
		f.Limit = n
	}
	if v := q.Get("cursor"); v != "" {
		c, err := DecodeCursor(v)
		if err != nil {
			bad = append(bad, web.FieldError{Field: "cursor", Detail: "is not a cursor this service issued; pass nextCursor from the previous page unchanged"})
		}
		f.After = &c
	}
	if len(bad) > 0 {
		slices.SortFunc(bad, func(a, b web.FieldError) int { return strings.Compare(a.Field, b.Field) })
		p := web.Invalid(bad...)
		p.Status, p.Title = http.StatusBadRequest, http.StatusText(http.StatusBadRequest)
		return claims.Filter{}, p
	}
	return f, nil
}

// EncodeCursor makes the opaque cursor that continues a list after c.
func EncodeCursor(c claims.Cursor) string {
	raw := c.CreatedAt.UTC().Format(time.RFC3339Nano) + "|" + c.ID
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// DecodeCursor reverses EncodeCursor.
func DecodeCursor(s string) (claims.Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return claims.Cursor{}, err
	}
	at, id, ok := strings.Cut(string(raw), "|")
	if !ok {
		return claims.Cursor{}, errors.New("cursor lacks its separator")
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return claims.Cursor{}, err
	}
	u, err := uuid.Parse(id)
	if err != nil {
		return claims.Cursor{}, err
	}
	return claims.Cursor{CreatedAt: t.UTC(), ID: u.String()}, nil
}

// Page is one page of a claims list.
type Page struct {
	Claims []claims.Claim `json:"claims"`
	// NextCursor continues the list; it is absent on the last page.
	NextCursor string `json:"nextCursor,omitempty"`
}

func list(w http.ResponseWriter, r *http.Request, svc *claims.Service) error {
	f, err := ParseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	cs, more, err := svc.List(r.Context(), f)
	if err != nil {
		return err
	}
	page := Page{Claims: cs}
	if more {
		last := cs[len(cs)-1]
		page.NextCursor = EncodeCursor(claims.Cursor{CreatedAt: last.CreatedAt, ID: last.ID})
	}
	web.WriteJSON(w, http.StatusOK, page)
	return nil
}
