package proxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TargetHealth is the health of one target as its checks see it.
type TargetHealth struct {
	URL     string `json:"url"`
	Healthy bool   `json:"healthy"`
	// LastError is the latest failure of the current failure streak; empty after a
	// successful check.
	LastError string `json:"lastError,omitempty"`
}

// TargetGroupHealth is the health of one color of a service.
type TargetGroupHealth struct {
	Targets   int            `json:"targets"`
	Healthy   int            `json:"healthy"`
	PerTarget []TargetHealth `json:"perTarget"`
}

// target is one registered backend. healthy is read on every request without a lock;
// the streak counters belong to its checker and to passive ejection.
type target struct {
	url     *url.URL
	healthy atomic.Bool

	mu        sync.Mutex
	successes int
	failures  int
	lastErr   string

	checking atomic.Bool // a checker goroutine has been started
	stop     chan struct{}
	stopOnce sync.Once
}

func newTarget(u *url.URL) *target {
	return &target{url: u, stop: make(chan struct{})}
}

func (t *target) stopChecking() { t.stopOnce.Do(func() { close(t.stop) }) }

func (t *target) health() TargetHealth {
	t.mu.Lock()
	defer t.mu.Unlock()
	return TargetHealth{URL: t.url.String(), Healthy: t.healthy.Load(), LastError: t.lastErr}
}

// observe applies one health check result and reports whether the target changed state.
func (t *target) observe(err error, healthyAfter, unhealthyAfter int) (changed bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err == nil {
		t.successes++
		t.failures = 0
		t.lastErr = ""
		if !t.healthy.Load() && t.successes >= healthyAfter {
			t.healthy.Store(true)
			return true
		}
		return false
	}
	t.failures++
	t.successes = 0
	t.lastErr = err.Error()
	if t.healthy.Load() && t.failures >= unhealthyAfter {
		t.healthy.Store(false)
		return true
	}
	return false
}

// markDown makes the target unhealthy at once and reports whether it was healthy.
func (t *target) markDown(err error, unhealthyAfter int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.successes = 0
	t.failures = max(t.failures, unhealthyAfter)
	t.lastErr = err.Error()
	return t.healthy.Swap(false)
}

// Start runs the health checks of every target, present and future, until ctx ends or
// Close is called. It returns at once. Targets become healthy, and so receive traffic,
// only through these checks.
func (r *Router) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.closed {
		return
	}
	r.started = true
	r.runCtx, r.stop = context.WithCancel(ctx)
	for _, svc := range r.services {
		for _, g := range svc.groups {
			svc.mu.Lock()
			targets := g.targets
			svc.mu.Unlock()
			for _, t := range targets {
				r.spawnCheckerLocked(svc, g, t)
			}
		}
	}
	r.log.Info("router started", "services", len(r.services))
}

// Close stops the health checks and closes idle upstream connections. Requests still in
// flight finish; the router keeps routing by the health it last knew.
func (r *Router) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	stop := r.stop
	r.mu.Unlock()
	if stop != nil {
		stop()
	}
	r.checkers.Wait()
	r.transport.CloseIdleConnections()
}

// spawnCheckerLocked starts t's checker if the router runs and t has none yet. r.mu must
// be held, which orders it against Close's wait.
func (r *Router) spawnCheckerLocked(svc *service, g *targetGroup, t *target) {
	if !r.started || r.closed || !t.checking.CompareAndSwap(false, true) {
		return
	}
	ctx := r.runCtx
	r.checkers.Go(func() { r.runChecker(ctx, svc, g, t) })
}

func (r *Router) runChecker(ctx context.Context, svc *service, g *targetGroup, t *target) {
	timer := time.NewTimer(r.opts.HealthInterval)
	defer timer.Stop()
	for {
		err := r.probe(ctx, t, svc.healthPath)
		if ctx.Err() != nil {
			return
		}
		select {
		case <-t.stop:
			return
		default:
		}
		if t.observe(err, r.opts.HealthyThreshold, r.opts.UnhealthyThreshold) {
			if err == nil {
				r.log.Info("target healthy", "target_group", g.name, "target", t.url.String())
			} else {
				r.log.Warn("target unhealthy", "target_group", g.name, "target", t.url.String(), "err", err)
			}
		}
		timer.Reset(r.opts.HealthInterval)
		select {
		case <-ctx.Done():
			return
		case <-t.stop:
			return
		case <-timer.C:
		}
	}
}

// probe is one health check: GET of the health path, healthy on any 2xx.
func (r *Router) probe(ctx context.Context, t *target, path string) error {
	ctx, cancel := context.WithTimeout(ctx, r.opts.HealthTimeout)
	defer cancel()
	u := *t.url
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	req.Header.Set("User-Agent", "tandem-health-check")
	resp, err := r.checker.Do(req)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	defer resp.Body.Close()
	// Reading a little of the body lets the connection go back to the pool.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("health check: GET %s answered %s", path, resp.Status)
	}
	return nil
}
