package web

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Check is one dependency that must answer for the service to be ready.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
}

// CheckResult is how one check fared in a readiness probe.
type CheckResult struct {
	Name   string `json:"name"`
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Readiness is the /readyz body.
type Readiness struct {
	Status string        `json:"status"`
	Checks []CheckResult `json:"checks"`
}

// checkTimeout keeps a probe well under the platform's 500ms interval
// multiplied by its failure threshold, so a hung dependency shows as a
// failure instead of a probe timeout.
const checkTimeout = time.Second

// RegisterHealth adds GET /healthz (the process is alive) and GET /readyz
// (every check answered) to mux.
func RegisterHealth(mux *http.ServeMux, checks ...Check) {
	mux.HandleFunc("GET "+LivenessPath, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET "+ReadinessPath, func(w http.ResponseWriter, r *http.Request) {
		rd := Probe(r.Context(), checks)
		status := http.StatusOK
		if rd.Status != "ready" {
			status = http.StatusServiceUnavailable
		}
		w.Header().Set("Cache-Control", "no-store")
		WriteJSON(w, status, rd)
	})
}

// Probe runs every check concurrently.
func Probe(ctx context.Context, checks []Check) Readiness {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	results := make([]CheckResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			res := CheckResult{Name: c.Name, Status: "ok"}
			if err := c.Ping(ctx); err != nil {
				res.Status, res.Error = "fail", err.Error()
			}
			results[i] = res
		})
	}
	wg.Wait()
	rd := Readiness{Status: "ready", Checks: results}
	for _, res := range results {
		if res.Status != "ok" {
			rd.Status = "unavailable"
		}
	}
	return rd
}
