package proxy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Color is one side of a blue/green pair.
type Color string

// The two colors of every service.
const (
	Blue  Color = "blue"
	Green Color = "green"
)

// ParseColor accepts "blue" or "green" in any case.
func ParseColor(s string) (Color, error) {
	switch c := Color(strings.ToLower(strings.TrimSpace(s))); c {
	case Blue, Green:
		return c, nil
	}
	return "", fmt.Errorf("unknown color %q: want %q or %q", s, Blue, Green)
}

// Other returns the opposite color.
func (c Color) Other() Color {
	if c == Green {
		return Blue
	}
	return Green
}

func (c Color) index() int {
	if c == Green {
		return 1
	}
	return 0
}

// Weights is the traffic split of one service between its colors, in percent.
type Weights struct {
	Blue  int `json:"blue"`
	Green int `json:"green"`
}

// Validate requires each weight in 0..100 and a sum of 100, which also rules out
// both colors at 0%.
func (w Weights) Validate() error {
	if w.Blue < 0 || w.Blue > 100 || w.Green < 0 || w.Green > 100 {
		return fmt.Errorf("weights %s: each must be between 0 and 100", w)
	}
	if w.Blue+w.Green != 100 {
		return fmt.Errorf("weights %s: must add up to 100", w)
	}
	return nil
}

// Of returns the weight of color c.
func (w Weights) Of(c Color) int {
	if c == Green {
		return w.Green
	}
	return w.Blue
}

func (w Weights) String() string { return fmt.Sprintf("blue=%d green=%d", w.Blue, w.Green) }

// ServiceRoute is a listener rule: the path prefixes that belong to a service and the
// path its targets answer health checks on.
type ServiceRoute struct {
	Name         string
	PathPrefixes []string
	// HealthPath defaults to "/", as an ALB target group's does.
	HealthPath string
}

// ValidateRoutes reports every problem of a route table: names must be present and
// unique, prefixes and health paths must start with "/", and no prefix may belong to
// two services. NewRouter skips what this rejects, so callers validate first.
func ValidateRoutes(routes []ServiceRoute) error {
	var errs []error
	names := map[string]bool{}
	owner := map[string]string{}
	for i, rt := range routes {
		switch {
		case rt.Name == "":
			errs = append(errs, fmt.Errorf("route %d: name is empty", i))
		case names[rt.Name]:
			errs = append(errs, fmt.Errorf("route %q: name used twice", rt.Name))
		}
		names[rt.Name] = true
		if len(rt.PathPrefixes) == 0 {
			errs = append(errs, fmt.Errorf("route %q: no path prefixes", rt.Name))
		}
		for _, p := range rt.PathPrefixes {
			if !strings.HasPrefix(p, "/") {
				errs = append(errs, fmt.Errorf("route %q: prefix %q must start with /", rt.Name, p))
				continue
			}
			if o, ok := owner[p]; ok {
				errs = append(errs, fmt.Errorf("route %q: prefix %q already belongs to %q", rt.Name, p, o))
				continue
			}
			owner[p] = rt.Name
		}
		if rt.HealthPath != "" && !strings.HasPrefix(rt.HealthPath, "/") {
			errs = append(errs, fmt.Errorf("route %q: health path %q must start with /", rt.Name, rt.HealthPath))
		}
	}
	return errors.Join(errs...)
}

// Options tunes a Router's health checks. Zero values take the defaults.
type Options struct {
	HealthInterval     time.Duration // default 500ms
	HealthTimeout      time.Duration // default 1s
	HealthyThreshold   int           // consecutive 2xx answers to become healthy; default 2
	UnhealthyThreshold int           // consecutive failures to become unhealthy; default 2
	Logger             *slog.Logger  // default: discard
}

func (o Options) withDefaults() Options {
	if o.HealthInterval <= 0 {
		o.HealthInterval = 500 * time.Millisecond
	}
	if o.HealthTimeout <= 0 {
		o.HealthTimeout = time.Second
	}
	if o.HealthyThreshold <= 0 {
		o.HealthyThreshold = 2
	}
	if o.UnhealthyThreshold <= 0 {
		o.UnhealthyThreshold = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Router is one region's L7 load balancer: an ALB listener with a blue and a green
// target group per service. It is an http.Handler; Start runs its health checks.
type Router struct {
	// delay holds every request back before it is routed (a fault: a
	// slow network in front of the load balancer).
	delay     atomic.Int64
	region    string
	opts      Options
	log       *slog.Logger
	now       func() time.Time
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	checker   *http.Client

	// Fixed at construction, read without locks.
	services map[string]*service
	prefixes []prefixRule // longest prefix first

	mu       sync.Mutex // guards the health checkers' lifecycle
	runCtx   context.Context
	stop     context.CancelFunc
	started  bool
	closed   bool
	checkers sync.WaitGroup
}

type prefixRule struct {
	prefix string
	svc    *service
}

// service is one service's share of the listener. Its lock is held only to choose a
// target or change weights and targets, never while a request is forwarded.
type service struct {
	name       string
	healthPath string

	mu      sync.Mutex
	weights Weights
	current [2]int // smooth weighted round-robin state, indexed by Color.index
	groups  [2]*targetGroup
}

type targetGroup struct {
	name  string // "claims-green"
	color Color
	// targets is replaced as a whole by SetTargets; next is the round-robin cursor. Both
	// are guarded by service.mu.
	targets []*target
	next    int
	stats   groupStats
}

// NewRouter builds the listener of region for routes. Every service starts with blue at
// 100% and no targets. What ValidateRoutes rejects is left out (and logged): a route
// without a usable name or health path, a prefix not starting with "/" or already
// claimed by an earlier route.
func NewRouter(region string, routes []ServiceRoute, opts Options) *Router {
	opts = opts.withDefaults()
	log := opts.Logger.With("region", region)
	if err := ValidateRoutes(routes); err != nil {
		log.Error("invalid routes skipped", "err", err)
	}
	transport := newTransport()
	r := &Router{
		region:    region,
		opts:      opts,
		log:       log,
		now:       time.Now,
		transport: transport,
		proxy:     newReverseProxy(transport, log),
		checker: &http.Client{
			Transport: transport,
			// A health check judges the answer of the health path itself, as an ALB does.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		services: map[string]*service{},
	}
	claimed := map[string]bool{}
	for _, rt := range routes {
		if rt.Name == "" || r.services[rt.Name] != nil {
			continue
		}
		hp := cmp.Or(rt.HealthPath, "/")
		if !strings.HasPrefix(hp, "/") {
			continue
		}
		svc := &service{name: rt.Name, healthPath: hp, weights: Weights{Blue: 100}}
		for _, c := range []Color{Blue, Green} {
			svc.groups[c.index()] = &targetGroup{name: rt.Name + "-" + string(c), color: c}
		}
		r.services[rt.Name] = svc
		for _, p := range rt.PathPrefixes {
			if strings.HasPrefix(p, "/") && !claimed[p] {
				claimed[p] = true
				r.prefixes = append(r.prefixes, prefixRule{prefix: p, svc: svc})
			}
		}
	}
	slices.SortStableFunc(r.prefixes, func(a, b prefixRule) int { return len(b.prefix) - len(a.prefix) })
	return r
}

// Region is the region this router serves.
func (r *Router) Region() string { return r.region }

// match returns the service whose longest prefix matches path. Prefixes match whole
// path segments: "/v1/claims" takes "/v1/claims" and "/v1/claims/7", not "/v1/claimsx".
func (r *Router) match(path string) *service {
	for _, pr := range r.prefixes {
		p := pr.prefix
		if !strings.HasPrefix(path, p) {
			continue
		}
		if len(path) == len(p) || strings.HasSuffix(p, "/") || path[len(p)] == '/' {
			return pr.svc
		}
	}
	return nil
}

func (r *Router) lookup(name string, c Color) (*service, *targetGroup, error) {
	svc, ok := r.services[name]
	if !ok {
		return nil, nil, fmt.Errorf("unknown service %q in region %s", name, r.region)
	}
	if c != Blue && c != Green {
		return nil, nil, fmt.Errorf("service %s: unknown color %q", name, c)
	}
	return svc, svc.groups[c.index()], nil
}

// SetWeights changes the split of service atomically: once it returns, every request that
// was sent to a color has been counted in that color's in-flight figure, and no new
// request goes to a color at 0% except through the header rule. Invalid weights change
// nothing.
func (r *Router) SetWeights(service string, w Weights) error {
	svc, ok := r.services[service]
	if !ok {
		return fmt.Errorf("set weights: unknown service %q in region %s", service, r.region)
	}
	if err := w.Validate(); err != nil {
		return fmt.Errorf("set weights of %s: %w", service, err)
	}
	svc.mu.Lock()
	old := svc.weights
	svc.weights = w
	svc.current = [2]int{}
	svc.mu.Unlock()
	if old != w {
		r.log.Info("weights changed", "service", service, "from", old.String(), "to", w.String())
	}
	return nil
}

// Weights reads back the split in force for service.
func (r *Router) Weights(service string) (Weights, error) {
	svc, ok := r.services[service]
	if !ok {
		return Weights{}, fmt.Errorf("weights: unknown service %q in region %s", service, r.region)
	}
	svc.mu.Lock()
	defer svc.mu.Unlock()
	return svc.weights, nil
}

// SetTargets replaces the targets of one color of service with base URLs like
// "http://127.0.0.1:8081". Targets already registered keep their health; new ones start
// unhealthy and receive traffic once their health checks pass (after Start); removed ones
// get no new request from the moment SetTargets returns, while their requests in flight
// finish (see Drain). An invalid URL changes nothing.
func (r *Router) SetTargets(service string, c Color, targets []string) error {
	svc, g, err := r.lookup(service, c)
	if err != nil {
		return fmt.Errorf("set targets: %w", err)
	}
	urls := make([]*url.URL, 0, len(targets))
	seen := map[string]bool{}
	for _, raw := range targets {
		u, err := parseTarget(raw)
		if err != nil {
			return fmt.Errorf("set targets of %s: %w", g.name, err)
		}
		if !seen[u.String()] {
			seen[u.String()] = true
			urls = append(urls, u)
		}
	}

	svc.mu.Lock()
	existing := map[string]*target{}
	for _, t := range g.targets {
		existing[t.url.String()] = t
	}
	next := make([]*target, 0, len(urls))
	var added []*target
	for _, u := range urls {
		t, ok := existing[u.String()]
		if ok {
			delete(existing, u.String())
		} else {
			t = newTarget(u)
			added = append(added, t)
		}
		next = append(next, t)
	}
	g.targets = next
	g.next = 0
	svc.mu.Unlock()

	for _, t := range existing {
		t.stopChecking()
	}
	r.mu.Lock()
	for _, t := range added {
		r.spawnCheckerLocked(svc, g, t)
	}
	r.mu.Unlock()
	if len(added) > 0 || len(existing) > 0 {
		r.log.Info("targets changed", "target_group", g.name, "targets", len(next),
			"added", len(added), "removed", len(existing))
	}
	return nil
}

func parseTarget(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimSuffix(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", raw, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("target %q: want a base URL like http://127.0.0.1:8080", raw)
	}
	return u, nil
}

// Health reports the target health of one color of service; the zero value for an
// unknown service or color.
func (r *Router) Health(service string, c Color) TargetGroupHealth {
	svc, g, err := r.lookup(service, c)
	if err != nil {
		return TargetGroupHealth{}
	}
	svc.mu.Lock()
	targets := g.targets
	svc.mu.Unlock()
	h := TargetGroupHealth{Targets: len(targets), PerTarget: make([]TargetHealth, 0, len(targets))}
	for _, t := range targets {
		th := t.health()
		if th.Healthy {
			h.Healthy++
		}
		h.PerTarget = append(h.PerTarget, th)
	}
	return h
}

// Stats reports the cumulative traffic of one color of service; the zero value for an
// unknown service or color.
func (r *Router) Stats(service string, c Color) Stats {
	_, g, err := r.lookup(service, c)
	if err != nil {
		return Stats{}
	}
	return g.stats.snapshot()
}

// Window reports what one color of service served during the last d (whole seconds, at
// most five minutes); the zero value for an unknown service or color.
func (r *Router) Window(service string, c Color, d time.Duration) WindowStats {
	_, g, err := r.lookup(service, c)
	if err != nil {
		return WindowStats{}
	}
	return g.stats.window(r.now(), d)
}

// Drain waits until no request is in flight on one color of service, or ctx ends. It is
// the step between taking a color out of service (weight 0, or its targets removed) and
// stopping its processes; it refuses a color that still takes weighted traffic, since
// that wait would not end. Requests pinned by the header rule still reach a drained
// color that has targets.
func (r *Router) Drain(ctx context.Context, service string, c Color) error {
	svc, g, err := r.lookup(service, c)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	svc.mu.Lock()
	weight, targets := svc.weights.Of(c), len(g.targets)
	svc.mu.Unlock()
	if weight > 0 && targets > 0 {
		return fmt.Errorf("drain %s: it still has weight %d and %d targets; set its weight to 0 or remove its targets first",
			g.name, weight, targets)
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if g.stats.inFlight.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("drain %s: %d requests still in flight: %w", g.name, g.stats.inFlight.Load(), ctx.Err())
		case <-tick.C:
		}
	}
}

// lease is a request's claim on one target: it holds an in-flight slot of the target's
// group until released.
type lease struct {
	group  *targetGroup
	target *target
}

// acquire picks a healthy target and takes an in-flight slot on its group, both under
// the service lock: this is what lets Drain trust the in-flight count.
//
// A pinned color is the only candidate. Otherwise prefer is tried first (chosen by weight
// when empty), then the other color; a color at 0% is never a candidate. Targets in tried
// are skipped. When nothing is found, charge is the group the failure is counted against.
func (s *service) acquire(pinned, prefer Color, tried []*target) (l lease, charge *targetGroup, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var candidates []Color
	if pinned != "" {
		candidates = []Color{pinned}
	} else {
		if prefer == "" {
			prefer = s.pickColor()
		}
		for _, c := range [2]Color{prefer, prefer.Other()} {
			if s.weights.Of(c) > 0 {
				candidates = append(candidates, c)
			}
		}
	}
	for _, c := range candidates {
		g := s.groups[c.index()]
		if t := g.nextHealthy(tried); t != nil {
			g.stats.inFlight.Add(1)
			return lease{group: g, target: t}, g, true
		}
	}
	if len(candidates) > 0 {
		charge = s.groups[candidates[0].index()]
	} else {
		charge = s.groups[prefer.index()]
	}
	return lease{}, charge, false
}

// pickColor is smooth weighted round-robin over the two colors: exact proportions over
// every hundred requests, evenly interleaved, and never a color at 0%.
func (s *service) pickColor() Color {
	s.current[0] += s.weights.Blue
	s.current[1] += s.weights.Green
	i := 0
	if s.current[1] > s.current[0] {
		i = 1
	}
	s.current[i] -= 100
	return [2]Color{Blue, Green}[i]
}

func (g *targetGroup) nextHealthy(tried []*target) *target {
	n := len(g.targets)
	for i := range n {
		t := g.targets[(g.next+i)%n]
		if t.healthy.Load() && !slices.Contains(tried, t) {
			g.next = (g.next + i + 1) % n
			return t
		}
	}
	return nil
}

// ServeHTTP routes req by path to a service, chooses a color (header rule, then weights)
// and a healthy target of it, and forwards, replaying the request on another target
// when a failed attempt allows it (see attempt.safeToRetry): at most twice, first on the
// same color, then on the other one if it has weight.
// SetDelay makes the router hold every request back by d before routing
// it; zero removes the delay. Its own health checks are not delayed.
func (r *Router) SetDelay(d time.Duration) { r.delay.Store(int64(d)) }

// Delay is the delay SetDelay set.
func (r *Router) Delay() time.Duration { return time.Duration(r.delay.Load()) }

func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if d := r.Delay(); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return
		}
	}
	svc := r.match(req.URL.Path)
	if svc == nil {
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("no listener rule in region %s matches path %s", r.region, req.URL.Path))
		return
	}
	var pinned Color
	if v := req.Header.Get(HeaderColor); v != "" {
		c, err := ParseColor(v)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, fmt.Sprintf("header %s: %v", HeaderColor, err))
			return
		}
		pinned = c
	}
	body, status, err := bufferBody(req)
	if err != nil {
		writeProblem(w, status, err.Error())
		return
	}

	start := r.now()
	l, charge, ok := svc.acquire(pinned, "", nil)
	if !ok {
		w.Header().Set(HeaderTargetGroup, charge.name)
		writeProblem(w, http.StatusServiceUnavailable, fmt.Sprintf("target group %s has no healthy target", charge.name))
		charge.stats.record(r.now(), http.StatusServiceUnavailable, r.now().Sub(start))
		return
	}
	r.forward(&statusWriter{ResponseWriter: w}, req, body, svc, pinned, l, start)
}

func (r *Router) forward(w *statusWriter, req *http.Request, body []byte, svc *service, pinned Color, l lease, start time.Time) {
	finished := false
	defer func() {
		if finished {
			return
		}
		// ReverseProxy aborts the handler with a panic when the target fails in the
		// middle of its answer: the client got a broken response, which counts as a 5xx.
		l.group.stats.inFlight.Add(-1)
		l.group.stats.record(r.now(), http.StatusBadGateway, r.now().Sub(start))
	}()

	var tried []*target
	canReplay := replayable(req)
	for try := 0; ; try++ {
		tried = append(tried, l.target)
		a := &attempt{upstream: l.target.url, header: HeaderTargetGroup, value: l.group.name, replayable: canReplay}
		r.proxy.ServeHTTP(w, attemptRequest(req, body, a))
		if a.err == nil || w.status != 0 {
			break
		}
		if errors.Is(a.err, syscall.ECONNREFUSED) {
			r.eject(l, a.err)
		}
		if req.Context().Err() != nil {
			w.status = statusClientClosed
			break
		}
		if try < maxRetries && a.safeToRetry() {
			if next, _, ok := svc.acquire(pinned, l.group.color, tried); ok {
				r.log.Info("request retried on another target", "target_group", l.group.name,
					"target", l.target.url.String(), "next", next.target.url.String(), "err", a.err)
				l.group.stats.inFlight.Add(-1)
				l = next
				continue
			}
		}
		r.log.Warn("request failed", "target_group", l.group.name, "target", l.target.url.String(),
			"attempts", try+1, "err", a.err)
		w.Header().Set(HeaderTargetGroup, l.group.name)
		writeProblem(w, gatewayStatus(a.err), fmt.Sprintf("target %s of %s did not answer: %v", l.target.url, l.group.name, a.err))
		break
	}
	finished = true
	l.group.stats.inFlight.Add(-1)
	l.group.stats.record(r.now(), w.status, r.now().Sub(start))
}

// eject takes a target that refused a connection out of rotation at once, without
// waiting for its health checks: it is gone, and every request sent there would need a
// retry. Its health checks bring it back.
func (r *Router) eject(l lease, err error) {
	if l.target.markDown(err, r.opts.UnhealthyThreshold) {
		r.log.Warn("target ejected", "target_group", l.group.name, "target", l.target.url.String(), "err", err)
	}
}
