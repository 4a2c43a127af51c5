// Package web is the HTTP layer every service shares: a server with graceful
// shutdown, liveness and readiness endpoints, RFC 9457 problem responses,
// strict JSON request decoding and the middleware that stamps the platform
// identity on every response and injects faults on demand.
package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/tandemhq/tandem/services/kit/logging"
)

// ProblemContentType is the media type of RFC 9457 error bodies.
const ProblemContentType = "application/problem+json"

// FieldError names one invalid request field.
type FieldError struct {
	Field  string `json:"field"`
	Detail string `json:"detail"`
}

// Problem is an RFC 9457 problem document. It is also an error, so handlers
// return it and HandlerFunc renders it.
type Problem struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail,omitempty"`
	Errors []FieldError `json:"errors,omitempty"`
}

func (p *Problem) Error() string {
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
}

// NewProblem returns a problem whose title is the standard status text; the
// type is about:blank because the status code alone carries the semantics.
func NewProblem(status int, format string, args ...any) *Problem {
	return &Problem{
		Type:   "about:blank",
		Title:  http.StatusText(status),
		Status: status,
		Detail: fmt.Sprintf(format, args...),
	}
}

// Invalid returns a 422 problem naming every invalid field. The detail
// repeats them so that a human reading only the detail still learns which
// field to fix.
func Invalid(errs ...FieldError) *Problem {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		parts = append(parts, e.Field+": "+e.Detail)
	}
	p := NewProblem(http.StatusUnprocessableEntity, "%s", strings.Join(parts, "; "))
	p.Errors = errs
	return p
}

// WriteJSON writes v as a JSON body with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	writeJSON(w, "application/json", status, v)
}

// WriteProblem writes p as an application/problem+json body.
func WriteProblem(w http.ResponseWriter, p *Problem) {
	writeJSON(w, ProblemContentType, p.Status, p)
}

func writeJSON(w http.ResponseWriter, contentType string, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only values that cannot be JSON end up here, which is a
		// programming error; the client still gets a well-formed problem.
		body = []byte(`{"type":"about:blank","title":"Internal Server Error","status":500}`)
		contentType, status = ProblemContentType, http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// HandlerFunc is an http.Handler that returns an error instead of writing
// one. A *Problem is rendered as is; anything else is logged and hidden
// behind a 500 so that internal details never reach clients.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

func (f HandlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if err := f(w, r); err != nil {
		WriteError(w, r, err)
	}
}

// WriteError renders err as a problem response.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var p *Problem
	if errors.As(err, &p) {
		WriteProblem(w, p)
		return
	}
	logging.FromContext(r.Context()).Error("request failed", "err", err)
	WriteProblem(w, NewProblem(http.StatusInternalServerError, "the request could not be completed; retry later"))
}
