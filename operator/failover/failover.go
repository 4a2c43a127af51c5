// Package failover is tandem's region failover engine: a plan of steps that
// fences the old primary region (routing first, then its fleet, database and
// cache), waits for the target region's database replica to reach the fence
// position so that no acknowledged write is lost, promotes the database and
// the cache there, activates the target region's fleet and moves global
// routing to it. It drives a platform only through the small interfaces
// below; the local platform and the AWS driver both satisfy them.
package failover

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Routing is global routing between regions (Route 53 failover records).
type Routing interface {
	ActiveRegion(ctx context.Context) (string, error)
	FenceRouting(ctx context.Context) error
	Route(ctx context.Context, region string) error
}

// Fleets scales a region's services to zero or activates them.
type Fleets interface {
	StopFleets(ctx context.Context, region string) error
	ActivateFleets(ctx context.Context, region string) error
}

// Database fences, reads the position of, and promotes a region's database.
type Database interface {
	FenceDatabase(ctx context.Context, region string) (string, error)
	DatabasePosition(ctx context.Context, region string) (string, error)
	PromoteDatabase(ctx context.Context, region string) error
}

// Cache fences and promotes a region's cache.
type Cache interface {
	FenceCache(ctx context.Context, region string) error
	PromoteCache(ctx context.Context, region string) error
}

// Request is one failover.
type Request struct {
	To string
	// Regions are the stack's regions, to reject an unknown target early.
	Regions        []string
	CatchUpTimeout time.Duration
}

// Step is one executed step of the plan.
type Step struct {
	Name     string        `json:"name"`
	Detail   string        `json:"detail,omitempty"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
}

// Result is a completed failover.
type Result struct {
	From          string    `json:"from"`
	To            string    `json:"to"`
	FencePosition string    `json:"fencePosition"`
	Steps         []Step    `json:"steps"`
	Started       time.Time `json:"started"`
	// Unavailable is the write unavailability: from the routing fence to
	// routing moved to the new region.
	Unavailable time.Duration `json:"unavailable"`
	Duration    time.Duration `json:"duration"`
}

// Engine runs failovers.
type Engine struct {
	Routing  Routing
	Fleets   Fleets
	Database Database
	Cache    Cache
	OnStep   func(Step)
}

// Run performs a planned switchover to req.To.
func (e *Engine) Run(ctx context.Context, req Request) (*Result, error) {
	known := false
	for _, r := range req.Regions {
		known = known || r == req.To
	}
	if !known {
		return nil, fmt.Errorf("unknown region %q; this stack has %v", req.To, req.Regions)
	}
	from, err := e.Routing.ActiveRegion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read active region: %w", err)
	}
	if from == req.To {
		return nil, fmt.Errorf("%s is already the active region; nothing to fail over", req.To)
	}
	if _, err := e.Database.DatabasePosition(ctx, req.To); err != nil {
		return nil, fmt.Errorf("preflight: the database replica in %s is not readable (%w); a region that was failed away from must be rebuilt as a replica (reprotect) before it can take over again, which this version does not do: `tandem down` and `tandem up` start over", req.To, err)
	}
	if req.CatchUpTimeout == 0 {
		req.CatchUpTimeout = 30 * time.Second
	}
	res := &Result{From: from, To: req.To, Started: time.Now()}
	step := func(name string, fn func() (string, error)) error {
		s := Step{Name: name, Started: time.Now()}
		detail, err := fn()
		s.Detail, s.Duration = detail, time.Since(s.Started)
		res.Steps = append(res.Steps, s)
		if e.OnStep != nil {
			e.OnStep(s)
		}
		if err != nil {
			return fmt.Errorf("failover %s -> %s: %s: %w", from, req.To, name, err)
		}
		return nil
	}
	fenced := time.Now()
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"fence routing", func() (string, error) { return "front door stops routing to " + from, e.Routing.FenceRouting(ctx) }},
		{"stop fleet in " + from, func() (string, error) { return "tasks drained and stopped", e.Fleets.StopFleets(ctx, from) }},
		{"fence database in " + from, func() (string, error) {
			pos, err := e.Database.FenceDatabase(ctx, from)
			res.FencePosition = pos
			return "read-only and stopped at " + pos, err
		}},
		{"wait for replica in " + req.To, func() (string, error) { return e.waitCatchUp(ctx, req.To, res.FencePosition, req.CatchUpTimeout) }},
		{"promote database in " + req.To, func() (string, error) { return "writable", e.Database.PromoteDatabase(ctx, req.To) }},
		{"fence cache in " + from, func() (string, error) { return "writes paused", e.Cache.FenceCache(ctx, from) }},
		{"promote cache in " + req.To, func() (string, error) { return "primary", e.Cache.PromoteCache(ctx, req.To) }},
		{"activate fleet in " + req.To, func() (string, error) { return "every service healthy", e.Fleets.ActivateFleets(ctx, req.To) }},
		{"route to " + req.To, func() (string, error) { return "front door routes to " + req.To, e.Routing.Route(ctx, req.To) }},
	}
	for _, s := range steps {
		if err := step(s.name, s.fn); err != nil {
			res.Duration = time.Since(res.Started)
			return res, err
		}
	}
	res.Unavailable = time.Since(fenced)
	res.Duration = time.Since(res.Started)
	return res, nil
}

func (e *Engine) waitCatchUp(ctx context.Context, region, fence string, timeout time.Duration) (string, error) {
	if fence == "" {
		return "old primary was already down: no fence position to wait for", nil
	}
	want, err := ParsePosition(fence)
	if err != nil {
		return "", err
	}
	deadline := time.Now().Add(timeout)
	for {
		pos, err := e.Database.DatabasePosition(ctx, region)
		if err == nil {
			got, perr := ParsePosition(pos)
			if perr == nil && got >= want {
				return fmt.Sprintf("replayed %s >= fence %s (RPO 0)", pos, fence), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("replica in %s did not reach the fence position %s within %s (at %s, %v); nothing was promoted", region, fence, timeout, pos, err)
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ParsePosition parses a PostgreSQL WAL position ("16/B374D848").
func ParsePosition(s string) (uint64, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad WAL position %q", s)
	}
	return h<<32 | l, nil
}
