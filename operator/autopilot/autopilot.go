// Package autopilot is the operator daemon's decision loop: each round it
// probes the platform (quorum of vantage points, hysteresis), and when the
// active region is voted down it applies the stack's failover policy —
// off (watch only), manual (alert with the plan) or automatic (fail over,
// planned when the old primary still answers, unplanned otherwise) — with a
// minimum interval between failovers and no action at all while the state
// store cannot be read. It measures RTO from the first failed probe of the
// episode to the new region's verified write.
package autopilot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/stacks"
)

// Prober runs one probe round.
type Prober interface {
	Round(ctx context.Context) (probe.Report, error)
}

// Failovers is what the autopilot needs of the failover engine.
type Failovers interface {
	MakePlan(ctx context.Context, req failover.Request) (*failover.Plan, error)
	Start(ctx context.Context, req failover.Request) (*failover.Failover, error)
	Run(ctx context.Context) (*failover.Failover, error)
	Current(ctx context.Context) (*failover.Failover, error)
}

// Routing tells which region is active.
type Routing interface {
	ActiveRegion(ctx context.Context) (string, error)
}

// Config is the policy the autopilot applies.
type Config struct {
	Mode        string
	MinInterval time.Duration
	// Request carries the regions and limits of every failover it starts.
	Request failover.Request
	// Regions in preference order for a failover target.
	Regions []string
	Log     *slog.Logger
}

// Actions a round can end in.
const (
	ActionNone     = "none"
	ActionHold     = "hold"
	ActionAlert    = "alert"
	ActionFailover = "failover"
)

// Decision is what one round decided, and why.
type Decision struct {
	At       time.Time          `json:"at"`
	Active   string             `json:"activeRegion"`
	Verdict  probe.Verdict      `json:"verdict"`
	Action   string             `json:"action"`
	Reason   string             `json:"reason"`
	Failover *failover.Failover `json:"failover,omitempty"`
	// RTO is from the first failed probe of the episode to the verified
	// write in the new region (set with a completed failover).
	RTO time.Duration `json:"rto,omitempty"`
	// Detection is from the first failed probe of the episode to the
	// decision to fail over (set with a failover).
	Detection time.Duration `json:"detection,omitempty"`
}

// Autopilot runs rounds.
type Autopilot struct {
	cfg     Config
	prober  Prober
	fo      Failovers
	routing Routing

	mu           sync.Mutex
	last         Decision
	lastReport   probe.Report
	firstFailure time.Time
	rounds       int
	failovers    int
	lastRTO      time.Duration
}

// New builds an autopilot.
func New(cfg Config, p Prober, fo Failovers, r Routing) *Autopilot {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Autopilot{cfg: cfg, prober: p, fo: fo, routing: r}
}

// Step runs one probe round and acts on it.
func (a *Autopilot) Step(ctx context.Context) (Decision, error) {
	rep, err := a.prober.Round(ctx)
	if err != nil {
		return a.record(Decision{At: time.Now(), Action: ActionHold, Reason: "probe round failed: " + err.Error()}), nil
	}
	d := Decision{At: rep.At, Action: ActionNone}
	active, err := a.routing.ActiveRegion(ctx)
	if err != nil {
		d.Action, d.Reason = ActionHold, "the platform cannot be read: "+err.Error()
		return a.record(d), nil
	}
	d.Active = active
	ar, _ := a.regionOf(rep, active)
	d.Verdict = ar.Verdict
	a.trackEpisode(rep, active, ar)
	if ar.Verdict != probe.VerdictDown {
		d.Reason = fmt.Sprintf("active region %s is %s", active, ar.Verdict)
		return a.record(d), nil
	}
	down := fmt.Sprintf("active region %s is down (%s)", active, strings.Join(ar.Reasons, "; "))
	if a.cfg.Mode == stacks.FailoverOff {
		d.Reason = down + "; failover policy is off"
		return a.record(d), nil
	}
	cur, err := a.fo.Current(ctx)
	switch {
	case err != nil && !errors.Is(err, failover.ErrNoFailover):
		d.Action, d.Reason = ActionHold, down+"; the state store cannot be read, so no action is taken: "+err.Error()
		return a.record(d), nil
	case err == nil && cur.Status == failover.StatusRunning:
		if a.cfg.Mode != stacks.FailoverAutomatic {
			d.Action, d.Reason = ActionAlert, fmt.Sprintf("%s; failover %s is open at step %d: `tandem failover resume`", down, cur.ID, cur.Next+1)
			return a.record(d), nil
		}
		return a.runFailover(ctx, d, down+"; resuming open failover "+cur.ID)
	case err == nil && !cur.Ended.IsZero() && time.Since(cur.Ended) < a.cfg.MinInterval:
		d.Action, d.Reason = ActionHold, fmt.Sprintf("%s; the last failover ended %s ago, under the minimum interval %s", down, time.Since(cur.Ended).Round(time.Second), a.cfg.MinInterval)
		return a.record(d), nil
	}
	target := ""
	for _, r := range a.cfg.Regions {
		if rr, ok := a.regionOf(rep, r); r != active && ok && rr.Verdict != probe.VerdictDown && rr.Verdict != probe.VerdictUnknown {
			target = r
			break
		}
	}
	if target == "" {
		d.Action, d.Reason = ActionAlert, down+"; no other region is healthy enough to take over"
		return a.record(d), nil
	}
	req := a.cfg.Request
	req.To = target
	plan, err := a.fo.MakePlan(ctx, req)
	if err != nil {
		d.Action, d.Reason = ActionAlert, down+"; cannot plan a failover: "+err.Error()
		return a.record(d), nil
	}
	req.Mode = failover.Unplanned
	if plan.Reachable {
		req.Mode = failover.Planned
	}
	if plan, err = a.fo.MakePlan(ctx, req); err != nil || len(plan.Refusals) > 0 {
		why := "plan failed"
		if err != nil {
			why = err.Error()
		} else {
			why = strings.Join(plan.Refusals, "; ")
		}
		d.Action, d.Reason = ActionAlert, fmt.Sprintf("%s; a %s failover to %s is refused: %s (a person may force it)", down, req.Mode, target, why)
		return a.record(d), nil
	}
	if a.cfg.Mode == stacks.FailoverManual {
		d.Action = ActionAlert
		d.Reason = fmt.Sprintf("%s; ALERT: fail over with `tandem failover --to %s --%s` (predicted RPO: %s)", down, target, req.Mode, plan.PredictedRPO)
		return a.record(d), nil
	}
	if _, err := a.fo.Start(ctx, req); err != nil {
		d.Action, d.Reason = ActionAlert, down+"; failover refused: "+err.Error()
		return a.record(d), nil
	}
	return a.runFailover(ctx, d, fmt.Sprintf("%s; %s failover to %s", down, req.Mode, target))
}

func (a *Autopilot) runFailover(ctx context.Context, d Decision, why string) (Decision, error) {
	d.Action, d.Reason = ActionFailover, why
	a.mu.Lock()
	if !a.firstFailure.IsZero() {
		d.Detection = time.Since(a.firstFailure)
	}
	a.mu.Unlock()
	a.cfg.Log.Warn("failing over", "reason", why)
	f, err := a.fo.Run(ctx)
	d.Failover = f
	if err != nil {
		d.Reason += "; failed: " + err.Error()
		return a.record(d), err
	}
	a.mu.Lock()
	first := a.firstFailure
	a.mu.Unlock()
	if n := len(f.Steps); n > 0 && !first.IsZero() {
		last := f.Steps[n-1]
		d.RTO = last.Started.Add(last.Duration).Sub(first)
	}
	a.mu.Lock()
	a.failovers++
	a.lastRTO = d.RTO
	a.firstFailure = time.Time{}
	a.mu.Unlock()
	d.Reason += fmt.Sprintf("; completed: detection %s, writes unavailable %s, RTO %s, WAL lost %d bytes", d.Detection.Round(time.Millisecond), f.Unavailable.Round(time.Millisecond), d.RTO.Round(time.Millisecond), f.LostBytes)
	return a.record(d), nil
}

func (a *Autopilot) regionOf(rep probe.Report, name string) (probe.RegionReport, bool) {
	return rep.Region(name)
}

// trackEpisode notes the first failed probe of the active region's critical
// targets in an episode of trouble; a healthy verdict ends the episode.
func (a *Autopilot) trackEpisode(rep probe.Report, active string, ar probe.RegionReport) {
	failing := false
	for _, t := range rep.Targets {
		if t.Region != active || !t.Critical {
			continue
		}
		for _, v := range t.Views {
			if !v.Discarded && v.Failures > 0 {
				failing = true
			}
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case failing && a.firstFailure.IsZero():
		a.firstFailure = rep.At
	case !failing && ar.Verdict == probe.VerdictHealthy:
		a.firstFailure = time.Time{}
	}
	a.lastReport = rep
}

func (a *Autopilot) record(d Decision) Decision {
	a.mu.Lock()
	a.rounds++
	changed := d.Action != a.last.Action || d.Reason != a.last.Reason
	a.last = d
	a.mu.Unlock()
	if changed {
		level := slog.LevelInfo
		if d.Action != ActionNone {
			level = slog.LevelWarn
		}
		a.cfg.Log.Log(context.Background(), level, "autopilot", "action", d.Action, "active", d.Active, "verdict", string(d.Verdict), "reason", d.Reason)
	}
	return d
}

// Run steps every interval until ctx ends, calling each after every round.
func (a *Autopilot) Run(ctx context.Context, interval time.Duration, each func(Decision)) error {
	for {
		d, err := a.Step(ctx)
		if each != nil {
			each(d)
		}
		if err != nil && ctx.Err() == nil {
			a.cfg.Log.Error("failover failed; the next round decides again", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Snapshot is the autopilot's state for /metrics and /healthz.
type Snapshot struct {
	Rounds    int
	Failovers int
	LastRTO   time.Duration
	Last      Decision
	Report    probe.Report
}

// Snapshot returns the current state.
func (a *Autopilot) Snapshot() Snapshot {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Snapshot{Rounds: a.rounds, Failovers: a.failovers, LastRTO: a.lastRTO, Last: a.last, Report: a.lastReport}
}
