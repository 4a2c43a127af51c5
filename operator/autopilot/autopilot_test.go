package autopilot

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/stacks"
)

// scripted plays probe reports round by round.
type scripted struct {
	verdicts []map[string]probe.Verdict
	i        int
}

func (s *scripted) Round(context.Context) (probe.Report, error) {
	v := s.verdicts[min(s.i, len(s.verdicts)-1)]
	s.i++
	rep := probe.Report{Round: s.i, At: time.Now()}
	for _, r := range []string{"a", "b"} {
		rep.Regions = append(rep.Regions, probe.RegionReport{Region: r, Verdict: v[r], Reasons: []string{"a/service down"}})
		failures := 0
		if v[r] == probe.VerdictDown {
			failures = 3
		}
		rep.Targets = append(rep.Targets, probe.TargetReport{Target: probe.Target{Name: r + "/service", Region: r, Critical: true},
			Views: []probe.ViewReport{{Vantage: "front-door", Failures: failures}}})
	}
	return rep, nil
}

// fakeFailovers is a hand-written stand-in for the failover engine.
type fakeFailovers struct {
	active    string
	started   []failover.Request
	current   *failover.Failover
	storeDown bool
	reachable bool
}

func (f *fakeFailovers) ActiveRegion(context.Context) (string, error) { return f.active, nil }
func (f *fakeFailovers) MakePlan(_ context.Context, req failover.Request) (*failover.Plan, error) {
	return &failover.Plan{From: f.active, To: req.To, Mode: req.Mode, Reachable: f.reachable, PredictedRPO: "0"}, nil
}
func (f *fakeFailovers) Start(_ context.Context, req failover.Request) (*failover.Failover, error) {
	f.started = append(f.started, req)
	f.current = &failover.Failover{ID: "f1", From: f.active, To: req.To, Mode: req.Mode, Status: failover.StatusRunning}
	return f.current, nil
}
func (f *fakeFailovers) Run(context.Context) (*failover.Failover, error) {
	f.current.Status, f.current.Ended = failover.StatusCompleted, time.Now()
	f.current.Steps = []failover.Step{{Name: "verify", Started: time.Now(), Duration: time.Millisecond}}
	f.active = f.current.To
	return f.current, nil
}
func (f *fakeFailovers) Current(context.Context) (*failover.Failover, error) {
	if f.storeDown {
		return nil, errors.New("state store unreachable")
	}
	if f.current == nil {
		return nil, failover.ErrNoFailover
	}
	return f.current, nil
}

var (
	healthy = map[string]probe.Verdict{"a": probe.VerdictHealthy, "b": probe.VerdictHealthy}
	aDown   = map[string]probe.Verdict{"a": probe.VerdictDown, "b": probe.VerdictHealthy}
)

func autopilotFor(mode string, f *fakeFailovers, rounds ...map[string]probe.Verdict) *Autopilot {
	return New(Config{Mode: mode, MinInterval: time.Hour, Regions: []string{"a", "b"}}, &scripted{verdicts: rounds}, f, f)
}

func steps(t *testing.T, a *Autopilot, n int) []Decision {
	t.Helper()
	var out []Decision
	for range n {
		d, err := a.Step(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

func TestAutomaticFailsOverOnceWhenTheActiveRegionIsDown(t *testing.T) {
	t.Parallel()
	f := &fakeFailovers{active: "a"}
	ds := steps(t, autopilotFor(stacks.FailoverAutomatic, f, healthy, aDown, aDown, aDown), 4)
	if len(f.started) != 1 || f.started[0].To != "b" || f.started[0].Mode != failover.Unplanned {
		t.Fatalf("failovers started: %+v", f.started)
	}
	if ds[1].Action != ActionFailover || ds[1].RTO <= 0 {
		t.Errorf("round 2 = %+v", ds[1])
	}
	if ds[2].Action != ActionNone || ds[2].Active != "b" {
		t.Errorf("after the failover: %+v", ds[2])
	}
}

func TestPlannedWhenTheOldPrimaryStillAnswers(t *testing.T) {
	t.Parallel()
	f := &fakeFailovers{active: "a", reachable: true}
	steps(t, autopilotFor(stacks.FailoverAutomatic, f, aDown), 1)
	if len(f.started) != 1 || f.started[0].Mode != failover.Planned {
		t.Fatalf("failovers started: %+v", f.started)
	}
}

func TestPoliciesThatDoNotActAlone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, mode string
		f          *fakeFailovers
		want       string
		reason     string
	}{
		{"off watches", stacks.FailoverOff, &fakeFailovers{active: "a"}, ActionNone, "policy is off"},
		{"manual alerts with the command", stacks.FailoverManual, &fakeFailovers{active: "a"}, ActionAlert, "tandem failover --to b --unplanned"},
		{"no action while the state store is unreachable", stacks.FailoverAutomatic, &fakeFailovers{active: "a", storeDown: true}, ActionHold, "state store cannot be read"},
		{"minimum interval between failovers", stacks.FailoverAutomatic,
			&fakeFailovers{active: "a", current: &failover.Failover{ID: "f0", Status: failover.StatusCompleted, Ended: time.Now()}}, ActionHold, "minimum interval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			d := steps(t, autopilotFor(tc.mode, tc.f, aDown), 1)[0]
			if d.Action != tc.want || !strings.Contains(d.Reason, tc.reason) || len(tc.f.started) != 0 {
				t.Errorf("decision %+v, started %v; want %s mentioning %q and no failover", d, tc.f.started, tc.want, tc.reason)
			}
		})
	}
}

func TestNoFailoverWhileTheVerdictIsNotDown(t *testing.T) {
	t.Parallel()
	// The prober owns quorum and hysteresis: a flapping target never
	// reaches a down verdict, so the autopilot sees only these.
	f := &fakeFailovers{active: "a"}
	degraded := map[string]probe.Verdict{"a": probe.VerdictDegraded, "b": probe.VerdictHealthy}
	unknown := map[string]probe.Verdict{"a": probe.VerdictUnknown, "b": probe.VerdictHealthy}
	steps(t, autopilotFor(stacks.FailoverAutomatic, f, healthy, degraded, unknown, degraded, healthy), 5)
	if len(f.started) != 0 {
		t.Fatalf("failed over without a down verdict: %+v", f.started)
	}
}
