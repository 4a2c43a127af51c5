// Package gameday is tandem's rehearsal: it brings up the local platform,
// puts steady load on it through the front door, deploys a new version of a
// service blue/green under that load, fails the platform over to another
// region under that load, reads back every acknowledged claim, and reports
// what happened, phase by phase.
package gameday

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/stacks"
)

// Options configure a gameday.
type Options struct {
	Stack    string
	Spec     *stacks.Spec
	StateDir string
	BinDir   string
	Logger   *slog.Logger
	// Progress receives a line per step as it happens; may be nil.
	Progress io.Writer
	// Rate is the offered load in requests per second.
	Rate int
	// Steady is how long load runs before, between and after the
	// deploy and the failover.
	Steady  time.Duration
	Service string
	Version string
	// To is the failover target (default: the first secondary region).
	To string
}

// PhaseReport is what the load saw during one phase.
type PhaseReport struct {
	Name     string           `json:"name"`
	Start    time.Duration    `json:"start"`
	Duration time.Duration    `json:"duration"`
	Sent     int64            `json:"sent"`
	Failed   int64            `json:"failed"`
	Failures map[string]int64 `json:"failures,omitempty"`
}

// Mark is one line of the timeline.
type Mark struct {
	At    time.Duration `json:"at"`
	Event string        `json:"event"`
}

// Report is the gameday's outcome.
type Report struct {
	Stack    string        `json:"stack"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration"`
	Rate     int           `json:"offeredRate"`
	Timeline []Mark        `json:"timeline"`
	Phases   []PhaseReport `json:"phases"`

	Deploy *deploy.Deploy `json:"deploy,omitempty"`
	// ZoneFailover is the in-region database failover after the zone
	// failure (stacks with database.multiAZ).
	ZoneFailover *local.ZoneFailover `json:"zoneFailover,omitempty"`
	Failover     *failover.Failover  `json:"failover,omitempty"`

	ClaimsAcknowledged int      `json:"claimsAcknowledged"`
	ClaimsMissing      []string `json:"claimsMissing"`
	ClaimsMismatched   []string `json:"claimsMismatched"`
	ClaimsNotified     int      `json:"claimsNotified"`

	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"`
}

type run struct {
	o       Options
	rep     *Report
	mu      sync.Mutex
	traffic *Traffic
}

func (r *run) mark(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.mu.Lock()
	at := time.Since(r.rep.Started)
	r.rep.Timeline = append(r.rep.Timeline, Mark{At: at, Event: msg})
	r.mu.Unlock()
	if r.o.Progress != nil {
		fmt.Fprintf(r.o.Progress, "[%7.2fs] %s\n", at.Seconds(), msg)
	}
}

func (r *run) enter(name string) {
	if r.traffic != nil {
		r.traffic.Phase(name)
	}
}

func (r *run) steady(ctx context.Context, name string) error {
	r.enter(name)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(r.o.Steady):
		return nil
	}
}

// Run performs the gameday. The returned report is complete whenever the
// platform came up; the error is for a gameday that could not run at all.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Rate <= 0 {
		o.Rate = 300
	}
	if o.Steady <= 0 {
		o.Steady = 5 * time.Second
	}
	if o.Service == "" {
		o.Service = "claims"
	}
	if o.Version == "" {
		o.Version = "v2"
	}
	if _, ok := o.Spec.Service(o.Service); !ok {
		return nil, fmt.Errorf("gameday deploys %q, which this stack does not have", o.Service)
	}
	if o.To == "" {
		for _, reg := range o.Spec.Regions {
			if reg.Role == stacks.RoleSecondary {
				o.To = reg.Name
				break
			}
		}
	}
	if o.To == "" {
		return nil, fmt.Errorf("stack %s has no secondary region to fail over to", o.Stack)
	}
	r := &run{o: o, rep: &Report{Stack: o.Stack, Started: time.Now(), Rate: o.Rate}}
	r.mark("bringing up the %s platform", o.Stack)
	p, err := local.Up(ctx, local.Config{Stack: o.Stack, Spec: o.Spec, StateDir: o.StateDir, BinDir: o.BinDir, Logger: o.Logger, Progress: o.Progress})
	if err != nil {
		return nil, err
	}
	defer func() {
		r.mark("taking the platform down")
		p.Down(context.WithoutCancel(ctx))
	}()
	if err := p.Serve(ctx); err != nil {
		return nil, err
	}
	st, err := p.Status(ctx)
	if err != nil {
		return nil, err
	}
	r.mark("platform up; front door %s routes to %s", st.FrontDoor.URL, st.ActiveRegion)

	err = r.exercise(ctx, p, st.FrontDoor.URL, st.ActiveRegion)
	r.finish(err)
	return r.rep, nil
}

func (r *run) exercise(ctx context.Context, p *local.Platform, frontDoor, primary string) error {
	o := r.o
	r.traffic = NewTraffic(frontDoor, o.Rate)
	r.enter("steady")
	r.traffic.Start()
	r.mark("load started: %d requests/s (2/3 eligibility determinations, 1/3 claim submissions)", o.Rate)
	defer r.traffic.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(o.Steady):
	}

	r.enter("deploy")
	r.mark("deploying %s %s blue/green in %s", o.Service, o.Version, primary)
	req := deploy.Request{Region: primary, Service: o.Service, Version: o.Version,
		Count: min(mustService(o.Spec, o.Service).Count, o.Spec.Local.MaxTasks), Steps: o.Spec.Deploy.Steps, Policy: deploy.PolicyFrom(o.Spec.Deploy)}
	eng := &deploy.Engine{Traffic: p, Fleet: p, Metrics: p, Test: p, Store: p, Holder: "gameday",
		OnEvent: func(_ *deploy.Deploy, ev deploy.Event) { r.mark("deploy %s: %s", ev.Phase, ev.Message) }}
	if _, _, err := eng.Start(ctx, req); err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	res, err := eng.Run(ctx, o.Service)
	r.rep.Deploy = res
	if err != nil {
		return fmt.Errorf("deploy: %w", err)
	}
	if err := r.steady(ctx, "after deploy"); err != nil {
		return err
	}

	if o.Spec.Database.MultiAZ {
		if err := r.zoneFailure(ctx, p, primary); err != nil {
			return err
		}
	}

	r.enter("failover")
	r.mark("failing over %s -> %s", primary, o.To)
	feng := &failover.Engine{Routing: p, Fleets: p, Database: p, Cache: p, Store: p, Holder: "gameday",
		OnStep: func(_ *failover.Failover, s failover.Step) {
			r.mark("failover %s (%s): %s", s.Name, s.Duration.Round(time.Millisecond), s.Detail)
		}}
	freq := failover.FromPolicy(failover.Request{To: o.To, Regions: o.Spec.RegionNames(), Mode: failover.Planned}, o.Spec)
	var fres *failover.Failover
	if _, err = feng.Start(ctx, freq); err == nil {
		fres, err = feng.Run(ctx)
	}
	r.rep.Failover = fres
	if err != nil {
		return fmt.Errorf("failover: %w", err)
	}
	if err := r.steady(ctx, "after failover"); err != nil {
		return err
	}
	r.traffic.Stop()
	r.mark("load stopped")

	r.mark("reading back every acknowledged claim through the front door")
	n, missing, mismatched, err := r.traffic.ReadBack(ctx)
	r.rep.ClaimsAcknowledged = n
	r.rep.ClaimsMissing, r.rep.ClaimsMismatched = nonNil(missing), nonNil(mismatched)
	if err != nil {
		return err
	}
	acks := r.traffic.l.acknowledged()
	r.rep.ClaimsNotified = countNotified(ctx, &http.Client{Timeout: 10 * time.Second}, frontDoor, acks)
	r.mark("read back: %d missing, %d differing; %d of %d claims have a notification",
		len(missing), len(mismatched), r.rep.ClaimsNotified, len(acks))
	return nil
}

// zoneFailure kills the server behind the primary region's database
// endpoint under load and waits for the in-region standby to take over and
// for the failed server to be back as a synchronous standby.
func (r *run) zoneFailure(ctx context.Context, p *local.Platform, primary string) error {
	r.enter("zone failure")
	rep, err := p.KillDatabase(ctx, primary)
	if err != nil {
		return fmt.Errorf("zone failure: %w", err)
	}
	for _, a := range rep.Actions {
		r.mark("zone failure: %s", a)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st, err := p.Status(ctx)
		if err != nil {
			return err
		}
		for _, reg := range st.Regions {
			if reg.Name != primary {
				continue
			}
			if n := len(reg.Database.Failovers); n > 0 && r.rep.ZoneFailover == nil {
				f := reg.Database.Failovers[n-1]
				r.rep.ZoneFailover = &f
				r.mark("in-region failover %s -> %s in %dms (%s); the endpoint moved", f.From, f.To, f.TookMs, f.Reason)
			}
			if sb := reg.Database.Standby; r.rep.ZoneFailover != nil && sb != nil && sb.State == local.StandbySync {
				r.mark("%s rebuilt as the synchronous standby", sb.Name)
				return r.steady(ctx, "after zone failure")
			}
		}
		if time.Now().After(deadline) {
			if r.rep.ZoneFailover == nil {
				return fmt.Errorf("zone failure: the standby in %s did not take over within a minute", primary)
			}
			return fmt.Errorf("zone failure: the failed server in %s was not rebuilt as a synchronous standby within a minute", primary)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func mustService(spec *stacks.Spec, name string) stacks.Service {
	s, _ := spec.Service(name)
	return s
}

// countNotified counts acknowledged claims that have at least one
// notification, giving the event pipeline a bounded time to catch up.
func countNotified(ctx context.Context, hc *http.Client, url string, acks []ack) int {
	pending := make([]ack, len(acks))
	copy(pending, acks)
	deadline := time.Now().Add(30 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		var still []ack
		var mu sync.Mutex
		var wg sync.WaitGroup
		work := make(chan ack)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for a := range work {
					if !hasNotification(ctx, hc, url, a.ID) {
						mu.Lock()
						still = append(still, a)
						mu.Unlock()
					}
				}
			}()
		}
		for _, a := range pending {
			work <- a
		}
		close(work)
		wg.Wait()
		pending = still
		if len(pending) > 0 {
			time.Sleep(time.Second)
		}
	}
	return len(acks) - len(pending)
}

func hasNotification(ctx context.Context, hc *http.Client, url, claimID string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/notifications?claimId="+claimID, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var body struct {
		Notifications []json.RawMessage `json:"notifications"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&body) != nil {
		return false
	}
	return len(body.Notifications) > 0
}

func (r *run) finish(err error) {
	rep := r.rep
	rep.Duration = time.Since(rep.Started)
	if r.traffic != nil {
		rep.Phases = r.traffic.Phases()[1:] // the first is the moment before load starts
	}
	if err != nil {
		rep.Failures = append(rep.Failures, err.Error())
	}
	if rep.Deploy == nil || rep.Deploy.Status != deploy.StatusPromoted {
		rep.Failures = append(rep.Failures, "the deploy was not promoted")
	}
	for _, p := range rep.Phases {
		if p.Name == "deploy" && p.Failed > 0 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("%d requests failed during the deploy", p.Failed))
		}
	}
	if r.o.Spec.Database.MultiAZ && rep.ZoneFailover == nil {
		rep.Failures = append(rep.Failures, "the in-region database failover did not happen")
	}
	if rep.Failover == nil || rep.Failover.Status != failover.StatusCompleted {
		rep.Failures = append(rep.Failures, "the failover did not complete")
	}
	if n := len(rep.ClaimsMissing); n > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d acknowledged claims are missing", n))
	}
	if n := len(rep.ClaimsMismatched); n > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d acknowledged claims changed", n))
	}
	if rep.ClaimsAcknowledged == 0 {
		rep.Failures = append(rep.Failures, "no claim was acknowledged: the load never reached the services")
	}
	rep.Passed = len(rep.Failures) == 0
}

// Print writes the report for a person.
func (rep *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\n=== tandem gameday report: stack %s, %s, offered %d req/s ===\n\n", rep.Stack, rep.Duration.Round(time.Millisecond), rep.Rate)
	fmt.Fprintln(w, "Timeline")
	for _, m := range rep.Timeline {
		fmt.Fprintf(w, "  %8.2fs  %s\n", m.At.Seconds(), m.Event)
	}
	fmt.Fprintln(w, "\nRequests by phase")
	fmt.Fprintf(w, "  %-18s %9s %9s %8s %8s  %s\n", "PHASE", "DURATION", "SENT", "FAILED", "RATE/s", "FAILURES")
	for _, p := range rep.Phases {
		var kinds []string
		for k, v := range p.Failures {
			kinds = append(kinds, fmt.Sprintf("%s: %d", k, v))
		}
		sort.Strings(kinds)
		rate := 0.0
		if p.Duration > 0 {
			rate = float64(p.Sent) / p.Duration.Seconds()
		}
		fmt.Fprintf(w, "  %-18s %8.2fs %9d %8d %8.0f  %s\n", p.Name, p.Duration.Seconds(), p.Sent, p.Failed, rate, strings.Join(kinds, ", "))
	}
	if d := rep.Deploy; d != nil {
		fmt.Fprintf(w, "\nDeploy: %s %s %s -> %s: %s in %s", d.Request.Service, d.Request.Version, d.From, d.To, d.Status, d.Updated.Sub(d.Started).Round(time.Millisecond))
		if d.Reason != "" {
			fmt.Fprintf(w, " (%s)", d.Reason)
		}
		fmt.Fprintln(w)
	}
	if f := rep.Failover; f != nil {
		if z := rep.ZoneFailover; z != nil {
			fmt.Fprintf(w, "Zone failure: database %s -> %s in %dms (%s)\n", z.From, z.To, z.TookMs, z.Reason)
		}
		fmt.Fprintf(w, "Failover: %s -> %s, fence position %s\n", f.From, f.To, f.FencePosition)
		for _, s := range f.Steps {
			fmt.Fprintf(w, "  %-30s %9s  %s\n", s.Name, s.Duration.Round(time.Millisecond), s.Detail)
		}
		fmt.Fprintf(w, "  failover duration (routing fenced -> routed to %s): %s\n", f.To, f.Unavailable.Round(time.Millisecond))
	}
	fmt.Fprintf(w, "\nClaims: %d acknowledged, %d missing, %d differing, %d with a notification\n",
		rep.ClaimsAcknowledged, len(rep.ClaimsMissing), len(rep.ClaimsMismatched), rep.ClaimsNotified)
	for i, id := range rep.ClaimsMissing {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more\n", len(rep.ClaimsMissing)-10)
			break
		}
		fmt.Fprintf(w, "  missing: %s\n", id)
	}
	if rep.Passed {
		standby := ""
		if rep.ZoneFailover != nil {
			standby = "; the in-region standby took over"
		}
		fmt.Fprintf(w, "\nRESULT: PASS (no request failed during the deploy%s; no acknowledged claim is missing)\n", standby)
		return
	}
	fmt.Fprintln(w, "\nRESULT: FAIL")
	for _, f := range rep.Failures {
		fmt.Fprintf(w, "  - %s\n", f)
	}
}
