// Package api is the notifications HTTP interface.
package api

import (
	"net/http"

	"github.com/tandemhq/tandem/services/kit/web"
	"github.com/tandemhq/tandem/services/notifications/internal/notify"
)

// Register adds the notifications routes to mux.
func Register(mux *http.ServeMux, store *notify.Store) {
	mux.Handle("GET /v1/notifications", web.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		claimID := r.URL.Query().Get("claimId")
		if claimID == "" {
			return web.NewProblem(http.StatusBadRequest, "the claimId query parameter is required, e.g. ?claimId=<claim uuid>")
		}
		if err := notify.ValidClaimID(claimID); err != nil {
			return web.NewProblem(http.StatusBadRequest, "claimId %q is not a UUID", claimID)
		}
		ns, err := store.ForClaim(r.Context(), claimID)
		if err != nil {
			return err
		}
		web.WriteJSON(w, http.StatusOK, map[string][]notify.Notification{"notifications": ns})
		return nil
	}))
}
