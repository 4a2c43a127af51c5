// Package api is the notifications HTTP interface.
package api

import (
	"net/http"
	"net/url"

	"github.com/tandemhq/tandem/services/kit/web"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
)

// Register adds the notifications routes to mux.
func Register(mux *http.ServeMux, store *notify.Store) {
	mux.Handle("GET /v1/notifications", web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		claimID, err := ParseQuery(r.URL.Query())
		if err != nil {
			return err
		}
		ns, err := store.ForClaim(r.Context(), claimID)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string][]notify.Notification{"notifications": ns})
		return nil
	}))
}

// ParseQuery reads GET /v1/notifications's query: exactly one claimId, a
// UUID, and nothing else. Every problem is a 400 that says what to send.
func ParseQuery(q url.Values) (string, error) {
	for name := range q {
		if name != "claimId" {
			return "", web.NewProblem(http.StatusBadRequest, "unknown query parameter %q: the only parameter is claimId", name)
		}
	}
	ids := q["claimId"]
	switch {
	case len(ids) == 0 || ids[0] == "":
		return "", web.NewProblem(http.StatusBadRequest, "the claimId query parameter is required, e.g. ?claimId=<claim uuid>")
	case len(ids) > 1:
		return "", web.NewProblem(http.StatusBadRequest, "claimId must be given once")
	}
	if err := notify.ValidClaimID(ids[0]); err != nil {
		return "", web.NewProblem(http.StatusBadRequest, "claimId %q is not a UUID", ids[0])
	}
	return ids[0], nil
}
