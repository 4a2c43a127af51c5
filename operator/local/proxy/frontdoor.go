package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"time"
)

// FrontDoorOptions configures a FrontDoor.
type FrontDoorOptions struct {
	// Regions maps each region to the base URL of its Router.
	Regions map[string]string
	// Active is the region traffic goes to first. Empty starts the front door fenced.
	Active string
	// DNSTTL delays every routing change made by SetActive, as clients holding a cached
	// Route 53 answer would, so that a local failover's recovery time is not better than
	// the real one could be. Fence is immediate.
	DNSTTL time.Duration
	Logger *slog.Logger
}

// Validate requires a parseable base URL for every region and a known Active region
// (or none).
func (o FrontDoorOptions) Validate() error {
	var errs []error
	for _, region := range slices.Sorted(maps.Keys(o.Regions)) {
		if _, err := parseTarget(o.Regions[region]); err != nil {
			errs = append(errs, fmt.Errorf("region %s: %w", region, err))
		}
	}
	if _, ok := o.Regions[o.Active]; o.Active != "" && !ok {
		errs = append(errs, fmt.Errorf("active region %q is not among the regions", o.Active))
	}
	if o.DNSTTL < 0 {
		errs = append(errs, fmt.Errorf("DNS TTL %s is negative", o.DNSTTL))
	}
	return errors.Join(errs...)
}

// FrontDoor plays the Route 53 failover records in front of the regions' Routers: every
// request goes to the active region, or is refused with 503 while routing is fenced.
type FrontDoor struct {
	log       *slog.Logger
	ttl       time.Duration
	now       func() time.Time
	regions   map[string]*url.URL
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	// retryWait is the pause before the first retry of a refused connection (doubled
	// for the second): the one upstream may be a router that is restarting.
	retryWait time.Duration

	mu      sync.Mutex
	active  string
	fenced  bool
	pending *routingChange
}

// routingChange is a SetActive that clients have not seen yet because of the DNS TTL.
type routingChange struct {
	region string
	at     time.Time
}

// NewFrontDoor builds a front door. Regions whose URL FrontDoorOptions.Validate rejects
// are left out (and logged); an Active region that is not known starts it fenced.
func NewFrontDoor(opts FrontDoorOptions) *FrontDoor {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "front-door")
	if err := opts.Validate(); err != nil {
		log.Error("invalid front door options", "err", err)
	}
	transport := newTransport()
	f := &FrontDoor{
		log:       log,
		ttl:       max(opts.DNSTTL, 0),
		now:       time.Now,
		regions:   map[string]*url.URL{},
		transport: transport,
		proxy:     newReverseProxy(transport, log),
		retryWait: 50 * time.Millisecond,
	}
	for region, raw := range opts.Regions {
		if u, err := parseTarget(raw); err == nil {
			f.regions[region] = u
		}
	}
	f.active = opts.Active
	f.fenced = f.regions[opts.Active] == nil
	return f
}

// resolveLocked applies a pending routing change whose TTL has run out.
func (f *FrontDoor) resolveLocked() {
	if f.pending == nil || f.now().Before(f.pending.at) {
		return
	}
	from := f.active
	f.active, f.fenced, f.pending = f.pending.region, false, nil
	f.log.Info("routing moved", "from", from, "to", f.active)
}

// route returns where a request goes now; ok is false while fenced.
func (f *FrontDoor) route() (region string, upstream *url.URL, ok bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolveLocked()
	if f.fenced {
		return f.active, nil, false
	}
	return f.active, f.regions[f.active], true
}

// Active reports the routing clients see now: the active region and whether routing is
// fenced. A SetActive still waiting for its DNS TTL is not reflected yet.
func (f *FrontDoor) Active() (region string, fenced bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolveLocked()
	return f.active, f.fenced
}

// Fence stops routing at once: every request gets 503 with Retry-After until SetActive.
// It cancels a pending SetActive.
func (f *FrontDoor) Fence() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolveLocked()
	if f.pending != nil {
		f.log.Info("pending routing change cancelled by fence", "to", f.pending.region)
	}
	f.pending = nil
	if !f.fenced {
		f.fenced = true
		f.log.Info("routing fenced", "active", f.active)
	}
}

// SetActive routes to region and lifts the fence, after the DNS TTL when there is one;
// until then routing stays as it was, fence included. Setting the routing already in
// force changes nothing.
func (f *FrontDoor) SetActive(region string) error {
	if _, ok := f.regions[region]; !ok {
		return fmt.Errorf("set active region: unknown region %q (known: %v)", region, slices.Sorted(maps.Keys(f.regions)))
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resolveLocked()
	if region == f.active && !f.fenced {
		f.pending = nil
		return nil
	}
	if f.pending != nil && f.pending.region == region {
		return nil // already on its way; asking again does not restart the TTL
	}
	f.pending = &routingChange{region: region, at: f.now().Add(f.ttl)}
	if f.ttl > 0 {
		f.log.Info("routing change pending", "from", f.active, "to", region, "dns_ttl", f.ttl)
	}
	f.resolveLocked()
	return nil
}

// Close closes idle upstream connections.
func (f *FrontDoor) Close() { f.transport.CloseIdleConnections() }

// ServeHTTP forwards req to the active region's Router.
func (f *FrontDoor) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if _, _, ok := f.route(); !ok {
		writeFenced(w)
		return
	}
	body, status, err := bufferBody(req)
	if err != nil {
		writeProblem(w, status, err.Error())
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	canReplay := replayable(req)
	for try := 0; ; try++ {
		// Routing is looked up again for a retry, as a client's resolver would.
		region, upstream, ok := f.route()
		if !ok {
			writeFenced(w)
			return
		}
		a := &attempt{upstream: upstream, header: HeaderFrontDoorRegion, value: region, replayable: canReplay}
		f.proxy.ServeHTTP(sw, attemptRequest(req, body, a))
		if a.err == nil || sw.status != 0 || req.Context().Err() != nil {
			return
		}
		if try < maxRetries && a.safeToRetry() && sleepCtx(req.Context(), f.retryWait<<try) {
			continue
		}
		f.log.Warn("request failed", "region", region, "attempts", try+1, "err", a.err)
		w.Header().Set(HeaderFrontDoorRegion, region)
		writeProblem(w, gatewayStatus(a.err), fmt.Sprintf("region %s did not answer: %v", region, a.err))
		return
	}
}

func writeFenced(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "1")
	writeProblem(w, http.StatusServiceUnavailable, "routing is fenced: a region failover is in progress")
}

// sleepCtx waits d and reports whether ctx is still live.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
