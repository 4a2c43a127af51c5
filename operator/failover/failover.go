// Package failover is tandem's region failover engine: a journaled plan of
// steps that fences the old primary region (routing first, then its fleet,
// database and cache), waits — in a planned switchover — for the target
// region's database replica to reach the fence position so that no
// acknowledged write is lost, promotes the database and the cache there,
// activates the target region's fleet, moves global routing to it and proves
// it takes writes. Every step is idempotent and journaled in the state
// store under a lease whose epoch grows with every failover, so a crashed
// operator resumes (`tandem failover resume`) and a stale one cannot act.
// It drives a platform only through the small interfaces below; the local
// platform and the AWS driver both satisfy them.
package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
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

// Database fences, reads, promotes and proves a region's database.
type Database interface {
	FenceDatabase(ctx context.Context, region string) (string, error)
	DatabasePosition(ctx context.Context, region string) (string, error)
	PromoteDatabase(ctx context.Context, region string) error
	ReplicaLag(ctx context.Context, region string) (topology.Lag, error)
	VerifyWrite(ctx context.Context, region string, epoch int64) error
}

// Cache fences and promotes a region's cache.
type Cache interface {
	FenceCache(ctx context.Context, region string) error
	PromoteCache(ctx context.Context, region string) error
}

// Modes.
const (
	Planned   = "planned"
	Unplanned = "unplanned"
)

// Statuses of a journaled failover.
const (
	StatusRunning   = "running"
	StatusCompleted = "completed"
)

// Errors a caller maps to exit codes.
var (
	// ErrRefused: readiness checks refused the failover; nothing changed.
	ErrRefused = errors.New("failover refused")
	// ErrNoFailover: nothing to resume.
	ErrNoFailover = errors.New("no failover")
)

// Request asks for one failover.
type Request struct {
	To      string   `json:"to"`
	Regions []string `json:"regions"`
	// Mode is Planned, Unplanned, or "" to choose: planned when the old
	// primary is reachable, otherwise refuse and name --unplanned.
	Mode           string        `json:"mode"`
	Force          bool          `json:"force,omitempty"`
	MaxReplicaLag  time.Duration `json:"maxReplicaLag"`
	CatchUpTimeout time.Duration `json:"catchUpTimeout"`
	LeaseTTL       time.Duration `json:"leaseTTL"`
}

// Step is one step of the plan as journaled and printed.
type Step struct {
	Name         string        `json:"name"`
	Precondition string        `json:"precondition,omitempty"`
	BestEffort   bool          `json:"bestEffort,omitempty"`
	Detail       string        `json:"detail,omitempty"`
	Started      time.Time     `json:"started,omitzero"`
	Duration     time.Duration `json:"duration,omitempty"`
	Done         bool          `json:"done,omitempty"`
	Epoch        int64         `json:"epoch,omitempty"`
}

// Plan is what a failover would do, from live state, changing nothing.
type Plan struct {
	From         string       `json:"from"`
	To           string       `json:"to"`
	Mode         string       `json:"mode"`
	Reachable    bool         `json:"oldPrimaryReachable"`
	Lag          topology.Lag `json:"replicaLag"`
	PredictedRPO string       `json:"predictedRpo"`
	Refusals     []string     `json:"refusals,omitempty"`
	Steps        []Step       `json:"steps"`
}

// Failover is the journal record of one failover.
type Failover struct {
	ID            string    `json:"id"`
	Request       Request   `json:"request"`
	Plan          Plan      `json:"plan"`
	Mode          string    `json:"mode"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	Next          int       `json:"nextStep"`
	Steps         []Step    `json:"steps"`
	FencePosition string    `json:"fencePosition"`
	Status        string    `json:"status"`
	Holder        string    `json:"holder,omitempty"`
	Epoch         int64     `json:"epoch"`
	Started       time.Time `json:"started"`
	FencedAt      time.Time `json:"fencedAt,omitzero"`
	RoutedAt      time.Time `json:"routedAt,omitzero"`
	Ended         time.Time `json:"ended,omitzero"`
	// Unavailable is the write unavailability the failover caused: from
	// the routing fence to routing moved.
	Unavailable time.Duration `json:"unavailable"`
	// LostBytes estimates the WAL the new primary never received (0 for a
	// planned switchover, which waits for it).
	LostBytes int64  `json:"lostBytes"`
	Forced    bool   `json:"forced,omitempty"`
	Reason    string `json:"reason,omitempty"`
	version   int64
}

// Engine plans and runs failovers.
type Engine struct {
	Routing  Routing
	Fleets   Fleets
	Database Database
	Cache    Cache
	Store    state.Store
	Holder   string
	// OnStep sees every step as it finishes.
	OnStep func(*Failover, Step)
}

// FromPolicy fills a request's limits from the stack's failover policy.
func FromPolicy(r Request, s *stacks.Spec) Request {
	if r.MaxReplicaLag == 0 {
		r.MaxReplicaLag = s.Failover.MaxReplicaLag.Duration
	}
	if r.CatchUpTimeout == 0 {
		r.CatchUpTimeout = s.Failover.CatchUpTimeout.Duration
	}
	if r.LeaseTTL == 0 {
		r.LeaseTTL = s.Deploy.LeaseTTL.Duration
	}
	if len(r.Regions) == 0 {
		r.Regions = s.RegionNames()
	}
	return r
}

// steps lists the plan's steps for a mode.
func steps(from, to, mode string) []Step {
	unplanned := mode == Unplanned
	return []Step{
		{Name: "fence routing", Precondition: "mandatory in every mode: the front door stops sending traffic to " + from},
		{Name: "stop fleet in " + from, Precondition: "drain and stop the old region's tasks", BestEffort: unplanned},
		{Name: "fence database in " + from, Precondition: "read-only, sessions ended, endpoint closed, server stopped and marked to restart as a standby", BestEffort: unplanned},
		{Name: "wait for replica in " + to, Precondition: map[bool]string{false: "replica replays up to the fence position (RPO 0)", true: "skipped: the old primary is unreachable; what it did not send is lost"}[unplanned]},
		{Name: "promote database in " + to, Precondition: "replica leaves recovery and takes writes"},
		{Name: "fence cache in " + from, Precondition: "pause writes on the old cache primary", BestEffort: unplanned},
		{Name: "promote cache in " + to, Precondition: "replica becomes primary; the old one, if reachable, its replica"},
		{Name: "activate fleet in " + to, Precondition: "every service's release starts and is healthy"},
		{Name: "route to " + to, Precondition: "the front door routes to " + to},
		{Name: "verify writes in " + to, Precondition: "a synthetic write stamped with the failover's epoch is read back"},
	}
}

// MakePlan reads the live state and lays out a failover, changing nothing.
func (e *Engine) MakePlan(ctx context.Context, req Request) (*Plan, error) {
	known := false
	for _, r := range req.Regions {
		known = known || r == req.To
	}
	if !known {
		return nil, fmt.Errorf("unknown region %q; this stack has %v", req.To, req.Regions)
	}
	from, err := e.Routing.ActiveRegion(ctx)
	if err != nil {
		return nil, fmt.Errorf("read the active region: %w", err)
	}
	if from == req.To {
		return nil, fmt.Errorf("%s is already the active region; nothing to fail over", req.To)
	}
	p := &Plan{From: from, To: req.To, Mode: req.Mode}
	_, perr := e.Database.DatabasePosition(ctx, from)
	p.Reachable = perr == nil
	switch {
	case p.Mode == "" && p.Reachable:
		p.Mode = Planned
	case p.Mode == "":
		p.Mode = Unplanned
		p.Refusals = append(p.Refusals, fmt.Sprintf("the old primary in %s is unreachable (%v); a planned switchover is impossible — confirm an unplanned failover with --unplanned", from, perr))
	case p.Mode == Planned && !p.Reachable:
		p.Refusals = append(p.Refusals, fmt.Sprintf("--planned needs the old primary in %s, which is unreachable (%v); use --unplanned", from, perr))
	}
	lag, lerr := e.Database.ReplicaLag(ctx, req.To)
	p.Lag = lag
	switch {
	case lerr != nil && p.Reachable:
		p.Refusals = append(p.Refusals, fmt.Sprintf("the database replica in %s cannot be read (%v); a region failed away from must be rebuilt as a replica first: `tandem reprotect %s`", req.To, lerr, req.To))
	case lerr != nil:
		// With the primary gone the lag cannot be computed; the replica
		// must at least answer.
		if _, err := e.Database.DatabasePosition(ctx, req.To); err != nil {
			p.Refusals = append(p.Refusals, fmt.Sprintf("the database replica in %s cannot be read (%v)", req.To, err))
		}
	case req.MaxReplicaLag > 0 && time.Duration(lag.Seconds*float64(time.Second)) > req.MaxReplicaLag:
		p.Refusals = append(p.Refusals, fmt.Sprintf("replica lag in %s is %.1fs (%d bytes), above the limit %s", req.To, lag.Seconds, lag.Bytes, req.MaxReplicaLag))
	case p.Reachable && !lag.Streaming:
		p.Refusals = append(p.Refusals, fmt.Sprintf("the replica in %s is not streaming from %s", req.To, from))
	}
	switch {
	case p.Mode == Planned:
		p.PredictedRPO = fmt.Sprintf("0: the switchover waits for the replica, now %d bytes behind (%.1fs)", lag.Bytes, lag.Seconds)
	case lerr == nil:
		p.PredictedRPO = fmt.Sprintf("up to %d bytes of WAL (%.1fs of writes) that the replica has not received", lag.Bytes, lag.Seconds)
	default:
		p.PredictedRPO = "unknown: the old primary cannot be asked how far ahead it was"
	}
	p.Steps = steps(from, req.To, p.Mode)
	return p, nil
}
