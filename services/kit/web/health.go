package web

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Check is one dependency of the service.
type Check struct {
	Name string
	Ping func(ctx context.Context) error
	// Optional marks a dependency the service can serve without, in a
	// degraded way (a cache, a read replica, a downstream service behind
	// a fallback). Its failure makes readiness "degraded" but keeps the
	// answer 200: taking the instance out of rotation would turn a
	// degradation into an outage.
	Optional bool
}

// CheckResult is how one check fared in a readiness probe.
type CheckResult struct {
	Name     string `json:"name"`
	Status   string `json:"status"`
	Optional bool   `json:"optional,omitempty"`
	Error    string `json:"error,omitempty"`
}

// Readiness statuses.
const (
	StatusReady       = "ready"
	StatusDegraded    = "degraded"
	StatusUnavailable = "unavailable"
)

// Readiness is the /readyz body. Status is ready, degraded (an optional
// dependency failed; the answer is still 200) or unavailable (a required
// one failed; 503). Degraded lists the optional dependencies that failed.
type Readiness struct {
	Status   string        `json:"status"`
	Checks   []CheckResult `json:"checks"`
	Degraded []string      `json:"degraded,omitempty"`
}

// checkTimeout keeps a probe well under the platform's 500ms interval
// multiplied by its failure threshold, so a hung dependency shows as a
// failure instead of a probe timeout.
const checkTimeout = time.Second

// RegisterHealth adds GET /healthz (the process is alive) and GET /readyz
// (every required check answered) to mux.
func RegisterHealth(mux *http.ServeMux, checks ...Check) {
	mux.HandleFunc("GET "+LivenessPath, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, map[string]string{"status": "alive"})
	})
	mux.HandleFunc("GET "+ReadinessPath, func(w http.ResponseWriter, r *http.Request) {
		rd := Probe(r.Context(), checks)
		status := http.StatusOK
		if rd.Status == StatusUnavailable {
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
			res := CheckResult{Name: c.Name, Status: "ok", Optional: c.Optional}
			if err := c.Ping(ctx); err != nil {
				res.Status, res.Error = "fail", err.Error()
			}
			results[i] = res
		})
	}
	wg.Wait()
	rd := Readiness{Status: StatusReady, Checks: results}
	for _, res := range results {
		switch {
		case res.Status == "ok":
		case res.Optional:
			rd.Degraded = append(rd.Degraded, res.Name)
			if rd.Status == StatusReady {
				rd.Status = StatusDegraded
			}
		default:
			rd.Status = StatusUnavailable
		}
	}
	return rd
}
