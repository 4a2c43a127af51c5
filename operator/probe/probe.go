// Package probe decides whether a platform's targets, and so its regions, are
// up, from checks run at several vantage points. It is the operator's health
// checker: the automatic-failover daemon acts on its region verdicts.
//
// The engine is pure Go over one small interface, Check, with an injected
// Clock. Each round every vantage point runs its checks; each vantage point
// keeps, per target, a view with hysteresis (down after FailureThreshold
// consecutive failures, up after SuccessThreshold consecutive successes).
// A target changes state only when a quorum (a strict majority) of the
// vantage points that can see it agree, so one prober with a bad network
// cannot fail a region over. A vantage point that sees every one of its
// targets fail in a round suspects itself: its results are shown but not
// counted, and it does not count towards the quorum either.
//
// The checks themselves (HTTP, TCP, PostgreSQL, Redis) are in check.go; the
// wiring that builds targets and vantage points from the local platform's
// topology is in the localprobe package.
package probe

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/stacks"
)

// Check probes one target from one vantage point. It must return when ctx
// ends; the engine gives it Policy.Timeout.
type Check interface {
	Check(ctx context.Context) Result
}

// CheckFunc adapts a function to Check.
type CheckFunc func(ctx context.Context) Result

// Check calls f.
func (f CheckFunc) Check(ctx context.Context) Result { return f(ctx) }

// Result is the outcome of one check.
type Result struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Latency is how long the check took (set by the engine when the check
	// leaves it zero).
	Latency time.Duration `json:"latency"`
	// Role is a database or cache server's role: primary or replica.
	Role string `json:"role,omitempty"`
	// Lag is how far a replica is behind its primary.
	Lag time.Duration `json:"lag,omitempty"`
	// Replicating says whether a replica receives changes from its primary
	// right now (nil where it does not apply).
	Replicating *bool  `json:"replicating,omitempty"`
	Detail      string `json:"detail,omitempty"`
}

// Failed is a failed Result carrying err.
func Failed(err error) Result { return Result{Error: err.Error()} }

// Target states.
type State string

// A target starts unknown until a quorum of vantage points agrees.
const (
	StateUnknown State = "unknown"
	StateUp      State = "up"
	StateDown    State = "down"
)

// Verdict is a region's health as the daemon acts on it.
type Verdict string

// Region verdicts. Down: a critical target (its service path, load
// balancer or database) is down. Unknown: a critical target has not been
// decided yet, or no vantage point can see it. Degraded: only non-critical
// problems (cache down, a replica behind or not replicating, slow answers).
const (
	VerdictUnknown  Verdict = "unknown"
	VerdictHealthy  Verdict = "healthy"
	VerdictDegraded Verdict = "degraded"
	VerdictDown     Verdict = "down"
)

// Target is something probed: a region's service path, load balancer,
// database or cache.
type Target struct {
	Name   string `json:"name"` // unique, e.g. "local-a/database"
	Region string `json:"region"`
	Kind   string `json:"kind"` // http, tcp, postgres, redis
	// Critical targets decide the region's verdict: one down makes the
	// region down. Others degrade it.
	Critical bool `json:"critical"`
}

// Vantage is a place checks are run from, with the checks it runs, by
// target name. A vantage point sees only the targets it has checks for.
type Vantage struct {
	Name   string
	Checks map[string]Check
}

// Policy says how often to probe and how much evidence changes a state.
type Policy struct {
	Interval time.Duration `json:"interval"`
	// Timeout bounds each check.
	Timeout          time.Duration `json:"timeout"`
	FailureThreshold int           `json:"failureThreshold"`
	SuccessThreshold int           `json:"successThreshold"`
	// MaxReplicaLag degrades a region whose replica is further behind; zero
	// does not judge lag.
	MaxReplicaLag time.Duration `json:"maxReplicaLag,omitempty"`
	// Slow degrades a region whose target answers no vantage point faster
	// than this; zero does not judge latency.
	Slow time.Duration `json:"slow,omitempty"`
}

// PolicyFor reads the probe settings of a stack's failover policy.
func PolicyFor(f stacks.FailoverPolicy) Policy {
	return Policy{
		Interval:         f.ProbeInterval.Duration,
		FailureThreshold: f.FailureThreshold,
		SuccessThreshold: f.SuccessThreshold,
		MaxReplicaLag:    f.MaxReplicaLag.Duration,
	}.WithDefaults()
}

// WithDefaults fills what is unset: a one-second interval, a two-second
// timeout, down after 3 failures, up after 2 successes, slow at a quarter of
// the timeout.
func (p Policy) WithDefaults() Policy {
	if p.Interval <= 0 {
		p.Interval = time.Second
	}
	if p.Timeout <= 0 {
		p.Timeout = 2 * time.Second
	}
	if p.FailureThreshold <= 0 {
		p.FailureThreshold = 3
	}
	if p.SuccessThreshold <= 0 {
		p.SuccessThreshold = 2
	}
	if p.Slow <= 0 {
		p.Slow = p.Timeout / 4
	}
	return p
}

// Observation is one check's result: what a vantage point saw of a target.
type Observation struct {
	Vantage string `json:"vantage"`
	Target  string `json:"target"`
	Result  Result `json:"result"`
}

// Report is the prober's state after a round: the verdict per region, the
// state per target with every vantage point's view as evidence, and what
// changed in this round.
type Report struct {
	Round    int             `json:"round"`
	At       time.Time       `json:"at"`
	Policy   Policy          `json:"policy"`
	Regions  []RegionReport  `json:"regions"`
	Targets  []TargetReport  `json:"targets"`
	Vantages []VantageReport `json:"vantages"`
	Changes  []Change        `json:"changes,omitempty"`
}

// RegionReport is one region's verdict.
type RegionReport struct {
	Region  string    `json:"region"`
	Verdict Verdict   `json:"verdict"`
	Since   time.Time `json:"since"`
	Reasons []string  `json:"reasons,omitempty"`
}

// TargetReport is one target's state and the evidence behind it.
type TargetReport struct {
	Target
	State State     `json:"state"`
	Since time.Time `json:"since"`
	// Voters is how many vantage points counted this round (those that see
	// the target and do not suspect themselves); Quorum is the majority of
	// them; Down and Up count their views.
	Voters int          `json:"voters"`
	Quorum int          `json:"quorum"`
	Down   int          `json:"down"`
	Up     int          `json:"up"`
	Views  []ViewReport `json:"views"`
}

// ViewReport is one vantage point's view of a target.
type ViewReport struct {
	Vantage   string `json:"vantage"`
	State     State  `json:"state"`
	Failures  int    `json:"failures"`  // in a row
	Successes int    `json:"successes"` // in a row
	// Discarded is set when the vantage point suspected itself this round:
	// Last is shown but was not counted.
	Discarded bool   `json:"discarded,omitempty"`
	Last      Result `json:"last"`
}

// VantageReport is one vantage point's round.
type VantageReport struct {
	Name    string `json:"name"`
	Checked int    `json:"checked"`
	Failed  int    `json:"failed"`
	Suspect bool   `json:"suspect"`
}

// Change is a state change in a round.
type Change struct {
	Kind   string `json:"kind"` // target, region or vantage
	Name   string `json:"name"`
	From   string `json:"from"`
	To     string `json:"to"`
	Reason string `json:"reason,omitempty"`
}

func (c Change) String() string {
	s := fmt.Sprintf("%s %s: %s -> %s", c.Kind, c.Name, c.From, c.To)
	if c.Reason != "" {
		s += " (" + c.Reason + ")"
	}
	return s
}

// Region returns the verdict of a region.
func (r Report) Region(name string) (RegionReport, bool) {
	i := slices.IndexFunc(r.Regions, func(x RegionReport) bool { return x.Region == name })
	if i < 0 {
		return RegionReport{}, false
	}
	return r.Regions[i], true
}

// Target returns the state of a target.
func (r Report) Target(name string) (TargetReport, bool) {
	i := slices.IndexFunc(r.Targets, func(x TargetReport) bool { return x.Name == name })
	if i < 0 {
		return TargetReport{}, false
	}
	return r.Targets[i], true
}

// Vantage returns a vantage point's round.
func (r Report) Vantage(name string) (VantageReport, bool) {
	i := slices.IndexFunc(r.Vantages, func(x VantageReport) bool { return x.Name == name })
	if i < 0 {
		return VantageReport{}, false
	}
	return r.Vantages[i], true
}

// Clock is the engine's time: tests drive it by hand.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

// SystemClock is the wall clock.
type SystemClock struct{}

// Now is time.Now.
func (SystemClock) Now() time.Time { return time.Now() }

// After is time.After.
func (SystemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Prober runs rounds of checks and keeps the states they lead to. It is
// safe for concurrent use.
type Prober struct {
	policy Policy
	clock  Clock

	mu       sync.Mutex
	targets  []Target
	vantages []Vantage
	views    map[viewKey]*view
	states   map[string]*targetState
	regions  map[string]*regionState
	suspects map[string]bool
	round    int
}

type viewKey struct{ vantage, target string }

type view struct {
	state     State
	failures  int
	successes int
	discarded bool
	last      Result
}

type targetState struct {
	state            State
	since            time.Time
	voters, down, up int
}

type regionState struct {
	verdict Verdict
	since   time.Time
}

// New returns a prober with the policy (defaults filled in) and clock (the
// system clock when nil). Configure gives it targets and vantage points.
func New(policy Policy, clock Clock) *Prober {
	if clock == nil {
		clock = SystemClock{}
	}
	return &Prober{
		policy:   policy.WithDefaults(),
		clock:    clock,
		views:    map[viewKey]*view{},
		states:   map[string]*targetState{},
		regions:  map[string]*regionState{},
		suspects: map[string]bool{},
	}
}

// Policy returns the policy in force.
func (p *Prober) Policy() Policy { return p.policy }

// Configure sets the targets and the vantage points that check them. State
// is kept for every target and view that remains, so a topology change (a
// failover moving the front door's target) does not reset the evidence.
func (p *Prober) Configure(targets []Target, vantages []Vantage) error {
	var errs []error
	names := map[string]bool{}
	for i, t := range targets {
		switch {
		case t.Name == "":
			errs = append(errs, fmt.Errorf("target %d has no name", i))
		case names[t.Name]:
			errs = append(errs, fmt.Errorf("target %q is listed twice", t.Name))
		case t.Region == "":
			errs = append(errs, fmt.Errorf("target %q has no region", t.Name))
		}
		names[t.Name] = true
	}
	seen := map[string]bool{}
	for i, v := range vantages {
		switch {
		case v.Name == "":
			errs = append(errs, fmt.Errorf("vantage point %d has no name", i))
		case seen[v.Name]:
			errs = append(errs, fmt.Errorf("vantage point %q is listed twice", v.Name))
		}
		seen[v.Name] = true
		for _, tn := range sortedKeys(v.Checks) {
			if !names[tn] {
				errs = append(errs, fmt.Errorf("vantage point %q checks unknown target %q", v.Name, tn))
			} else if v.Checks[tn] == nil {
				errs = append(errs, fmt.Errorf("vantage point %q has a nil check for %q", v.Name, tn))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("probe configuration: %w", err)
	}

	p.mu.Lock()
	defer p.mu.Unlock()
	p.targets = slices.Clone(targets)
	p.vantages = slices.Clone(vantages)
	keep := map[viewKey]bool{}
	for _, v := range vantages {
		for tn := range v.Checks {
			keep[viewKey{v.Name, tn}] = true
		}
	}
	for k := range p.views {
		if !keep[k] {
			delete(p.views, k)
		}
	}
	regions := map[string]bool{}
	for _, t := range targets {
		regions[t.Region] = true
	}
	for name := range p.states {
		if !names[name] {
			delete(p.states, name)
		}
	}
	for name := range p.regions {
		if !regions[name] {
			delete(p.regions, name)
		}
	}
	for name := range p.suspects {
		if !seen[name] {
			delete(p.suspects, name)
		}
	}
	return nil
}

// Round runs every vantage point's checks at once, each bounded by the
// policy's timeout, and records the results. If ctx ends during the round
// nothing is recorded (a cancelled check is not the target's failure).
func (p *Prober) Round(ctx context.Context) (Report, error) {
	p.mu.Lock()
	vantages := p.vantages
	p.mu.Unlock()
	var obs []Observation
	for _, v := range vantages {
		for _, tn := range sortedKeys(v.Checks) {
			obs = append(obs, Observation{Vantage: v.Name, Target: tn})
		}
	}
	var wg sync.WaitGroup
	i := 0
	for _, v := range vantages {
		for _, tn := range sortedKeys(v.Checks) {
			o := &obs[i]
			c := v.Checks[tn]
			wg.Go(func() { o.Result = p.run(ctx, c) })
			i++
		}
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	return p.Observe(obs), nil
}

// run runs one check within the timeout. A check that ignores its context
// is abandoned at the deadline and counted as failed.
func (p *Prober) run(ctx context.Context, c Check) Result {
	cctx, cancel := context.WithTimeout(ctx, p.policy.Timeout)
	defer cancel()
	start := p.clock.Now()
	done := make(chan Result, 1)
	go func() { done <- c.Check(cctx) }()
	var r Result
	select {
	case r = <-done:
	case <-cctx.Done():
		r = Result{Error: fmt.Sprintf("no answer within %s", p.policy.Timeout)}
	}
	if !r.OK && r.Error == "" {
		r.Error = "failed"
	}
	if r.Latency == 0 {
		r.Latency = p.clock.Now().Sub(start)
	}
	return r
}

// Observe records one round of results and returns the report. It is the
// engine's whole decision logic; Round only gathers the observations.
// Observations of targets that are not configured are ignored.
func (p *Prober) Observe(obs []Observation) Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	p.round++
	known := map[string]bool{}
	for _, t := range p.targets {
		known[t.Name] = true
	}

	// Self-suspicion: a vantage point that saw two or more targets and
	// every one of them failed is more likely broken itself than all of
	// them at once.
	var vorder []string
	tallies := map[string]*VantageReport{}
	for _, o := range obs {
		if !known[o.Target] {
			continue
		}
		t := tallies[o.Vantage]
		if t == nil {
			t = &VantageReport{Name: o.Vantage}
			tallies[o.Vantage] = t
			vorder = append(vorder, o.Vantage)
		}
		t.Checked++
		if !o.Result.OK {
			t.Failed++
		}
	}
	var changes []Change
	for _, name := range vorder {
		t := tallies[name]
		t.Suspect = t.Checked >= 2 && t.Failed == t.Checked
		if t.Suspect != p.suspects[name] {
			c := Change{Kind: "vantage", Name: name, From: "trusted", To: "suspect",
				Reason: fmt.Sprintf("every one of its %d checks failed; its results are not counted", t.Checked)}
			if !t.Suspect {
				c.From, c.To, c.Reason = "suspect", "trusted", ""
			}
			changes = append(changes, c)
		}
		p.suspects[name] = t.Suspect
	}

	// Views: hysteresis per vantage point and target.
	voters := map[string][]*view{}
	for _, o := range obs {
		if !known[o.Target] {
			continue
		}
		k := viewKey{o.Vantage, o.Target}
		v := p.views[k]
		if v == nil {
			v = &view{state: StateUnknown}
			p.views[k] = v
		}
		v.last = o.Result
		v.discarded = tallies[o.Vantage].Suspect
		if v.discarded {
			continue
		}
		if o.Result.OK {
			v.successes++
			v.failures = 0
			if v.successes >= p.policy.SuccessThreshold {
				v.state = StateUp
			}
		} else {
			v.failures++
			v.successes = 0
			if v.failures >= p.policy.FailureThreshold {
				v.state = StateDown
			}
		}
		voters[o.Target] = append(voters[o.Target], v)
	}

	// Targets: a quorum of the vantage points that count decides.
	for _, t := range p.targets {
		ts := p.states[t.Name]
		if ts == nil {
			ts = &targetState{state: StateUnknown, since: now}
			p.states[t.Name] = ts
		}
		vs := voters[t.Name]
		ts.voters, ts.down, ts.up = len(vs), 0, 0
		for _, v := range vs {
			switch v.state {
			case StateDown:
				ts.down++
			case StateUp:
				ts.up++
			}
		}
		next := ts.state
		if q := quorum(ts.voters); ts.voters > 0 {
			if ts.down >= q {
				next = StateDown
			} else if ts.up >= q {
				next = StateUp
			}
		}
		if next != ts.state {
			changes = append(changes, Change{Kind: "target", Name: t.Name, From: string(ts.state), To: string(next),
				Reason: fmt.Sprintf("%d of %d vantage points", max(ts.down, ts.up), ts.voters) + p.evidenceLocked(t.Name, next)})
			ts.state, ts.since = next, now
		}
	}

	// Regions.
	for _, region := range p.regionOrderLocked() {
		verdict, reasons := p.verdictLocked(region)
		rs := p.regions[region]
		if rs == nil {
			rs = &regionState{verdict: VerdictUnknown, since: now}
			p.regions[region] = rs
		}
		if verdict != rs.verdict {
			changes = append(changes, Change{Kind: "region", Name: region, From: string(rs.verdict), To: string(verdict),
				Reason: strings.Join(reasons, "; ")})
			rs.verdict, rs.since = verdict, now
		}
	}

	rep := p.reportLocked(now)
	for _, name := range vorder {
		rep.Vantages = append(rep.Vantages, *tallies[name])
	}
	rep.Changes = changes
	return rep
}

// quorum is the strict majority of n.
func quorum(n int) int { return n/2 + 1 }

// evidenceLocked names the error most vantage points see for a target
// going down.
func (p *Prober) evidenceLocked(target string, to State) string {
	if to != StateDown {
		return ""
	}
	for _, vk := range p.viewKeysLocked(target) {
		v := p.views[vk]
		if !v.discarded && v.state == StateDown && v.last.Error != "" {
			return ": " + vk.vantage + ": " + v.last.Error
		}
	}
	return ""
}

func (p *Prober) viewKeysLocked(target string) []viewKey {
	var keys, extra []viewKey
	for _, v := range p.vantages {
		if k := (viewKey{v.Name, target}); p.views[k] != nil {
			keys = append(keys, k)
		}
	}
	// Views recorded through Observe alone, by no configured vantage point.
	for k := range p.views {
		if k.target == target && !slices.Contains(keys, k) {
			extra = append(extra, k)
		}
	}
	slices.SortFunc(extra, func(a, b viewKey) int { return cmp.Compare(a.vantage, b.vantage) })
	return append(keys, extra...)
}

func (p *Prober) regionOrderLocked() []string {
	var out []string
	for _, t := range p.targets {
		if !slices.Contains(out, t.Region) {
			out = append(out, t.Region)
		}
	}
	return out
}

// verdictLocked judges a region from its targets' states and the latest
// results of the vantage points that count.
func (p *Prober) verdictLocked(region string) (Verdict, []string) {
	var down, unknown, degraded []string
	for _, t := range p.targets {
		if t.Region != region {
			continue
		}
		ts := p.states[t.Name]
		if ts == nil {
			ts = &targetState{state: StateUnknown}
		}
		switch {
		case ts.state == StateDown && t.Critical:
			down = append(down, fmt.Sprintf("%s down%s", t.Name, p.evidenceLocked(t.Name, StateDown)))
			continue
		case ts.state == StateDown:
			degraded = append(degraded, fmt.Sprintf("%s down%s", t.Name, p.evidenceLocked(t.Name, StateDown)))
			continue
		case ts.voters == 0 && t.Critical:
			unknown = append(unknown, t.Name+": no vantage point that counts can see it")
			continue
		case ts.state == StateUnknown && t.Critical:
			unknown = append(unknown, t.Name+": not enough evidence yet")
			continue
		}
		degraded = append(degraded, p.qualityLocked(t)...)
	}
	switch {
	case len(down) > 0:
		return VerdictDown, down
	case len(unknown) > 0:
		return VerdictUnknown, unknown
	case len(degraded) > 0:
		return VerdictDegraded, degraded
	}
	return VerdictHealthy, nil
}

// qualityLocked finds what degrades a target that is up: a replica behind
// or not replicating, or answers slower than Policy.Slow from every
// vantage point.
func (p *Prober) qualityLocked(t Target) []string {
	var out []string
	var fastest, lag time.Duration
	oks := 0
	notReplicating := false
	for _, vk := range p.viewKeysLocked(t.Name) {
		v := p.views[vk]
		if v.discarded || !v.last.OK {
			continue
		}
		if oks == 0 || v.last.Latency < fastest {
			fastest = v.last.Latency
		}
		oks++
		lag = max(lag, v.last.Lag)
		if v.last.Replicating != nil && !*v.last.Replicating {
			notReplicating = true
		}
	}
	if oks == 0 {
		return nil
	}
	if notReplicating {
		out = append(out, t.Name+" replica is not replicating")
	}
	if p.policy.MaxReplicaLag > 0 && lag > p.policy.MaxReplicaLag {
		out = append(out, fmt.Sprintf("%s replica is %s behind (more than %s)", t.Name, lag.Round(time.Millisecond), p.policy.MaxReplicaLag))
	}
	if p.policy.Slow > 0 && fastest > p.policy.Slow {
		out = append(out, fmt.Sprintf("%s is slow: %s at best (more than %s)", t.Name, fastest.Round(time.Millisecond), p.policy.Slow))
	}
	return out
}

// Report returns the current state without running a round.
func (p *Prober) Report() Report {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reportLocked(p.clock.Now())
}

func (p *Prober) reportLocked(now time.Time) Report {
	rep := Report{Round: p.round, At: now, Policy: p.policy}
	for _, region := range p.regionOrderLocked() {
		verdict, reasons := p.verdictLocked(region)
		rr := RegionReport{Region: region, Verdict: verdict, Reasons: reasons}
		if rs := p.regions[region]; rs != nil {
			rr.Since = rs.since
		}
		rep.Regions = append(rep.Regions, rr)
	}
	for _, t := range p.targets {
		tr := TargetReport{Target: t, State: StateUnknown}
		if ts := p.states[t.Name]; ts != nil {
			tr.State, tr.Since, tr.Voters, tr.Down, tr.Up = ts.state, ts.since, ts.voters, ts.down, ts.up
			if ts.voters > 0 {
				tr.Quorum = quorum(ts.voters)
			}
		}
		for _, vk := range p.viewKeysLocked(t.Name) {
			v := p.views[vk]
			tr.Views = append(tr.Views, ViewReport{Vantage: vk.vantage, State: v.state, Failures: v.failures,
				Successes: v.successes, Discarded: v.discarded, Last: v.last})
		}
		rep.Targets = append(rep.Targets, tr)
	}
	return rep
}

// Run runs a round at once and then one every policy interval (measured
// from the start of each round) until ctx ends, handing each report to
// each.
func (p *Prober) Run(ctx context.Context, each func(Report)) error {
	return Every(ctx, p.clock, p.policy.Interval, func(ctx context.Context) error {
		rep, err := p.Round(ctx)
		if err != nil {
			return err
		}
		each(rep)
		return nil
	})
}

// Every calls fn at once and then every interval on clock, measured from
// the start of each call, until ctx ends or fn fails. A call that takes
// longer than the interval is followed at once by the next.
func Every(ctx context.Context, clock Clock, interval time.Duration, fn func(context.Context) error) error {
	for {
		start := clock.Now()
		if err := fn(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		wait := max(interval-clock.Now().Sub(start), 0)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-clock.After(wait):
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
