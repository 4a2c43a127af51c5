package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/gameday"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

func fastDeploys(s *stacks.Spec) {
	s.Deploy.StepBake = stacks.D(time.Second)
	s.Deploy.Bake = stacks.D(time.Second)
	s.Deploy.ScaleDownDelay = stacks.D(500 * time.Millisecond)
	s.Deploy.AnalysisTimeout = stacks.D(15 * time.Second)
	s.Deploy.LeaseTTL = stacks.D(2 * time.Second)
	s.Deploy.MinSamples = 10
	// These tests are about control, not latency: a loaded machine's
	// latency swings must not decide them (the p99 gates have unit tests).
	s.Deploy.MaxP99 = stacks.D(10 * time.Second)
	s.Deploy.MaxP99Ratio = 50
}

func failed(phases []gameday.PhaseReport, name string) (sent, failed int64) {
	for _, p := range phases {
		if p.Name == name {
			return p.Sent, p.Failed
		}
	}
	return 0, 0
}

// TestDeployUnderLoad: a good version is promoted under 500 requests/s
// with no failed request; a version failing 20% of requests is rolled back
// automatically (exit 3) with the evidence in the audit trail, and nothing
// fails once the rollback is done.
func TestDeployUnderLoad(t *testing.T) {
	h := newHarness(t, func(s *stacks.Spec) {
		s.Deploy.LeaseTTL = stacks.D(2 * time.Second)
		s.Deploy.MaxP99Ratio = 50 // about failed requests, not latency
	})
	load := gameday.NewTraffic(h.front, 500)
	load.Start()
	defer load.Stop()
	time.Sleep(2 * time.Second)

	load.Phase("good deploy")
	if code, out := h.run("deploy", "claims", "--version", "v2", "--wait"); code != 0 {
		t.Fatalf("good deploy exited %d:\n%s", code, out)
	}
	load.Phase("faulty deploy")
	code, out := h.run("deploy", "claims", "--version", "v3", "--set-env", "TANDEM_FAULT_ERROR_RATE=0.2", "--wait")
	if code != 3 {
		t.Fatalf("faulty deploy exited %d, want 3 (rolled back):\n%s", code, out)
	}
	load.Phase("after rollback")
	time.Sleep(3 * time.Second)
	load.Stop()

	phases := load.Phases()
	if sent, f := failed(phases, "good deploy"); sent < 2000 || f != 0 {
		t.Errorf("good deploy: %d requests sent, %d failed; want >= 2000 and 0", sent, f)
	}
	if sent, f := failed(phases, "after rollback"); sent < 1000 || f != 0 {
		t.Errorf("after the rollback: %d requests sent, %d failed; want 0 failed", sent, f)
	}
	d := h.current("claims")
	if d.Status != deploy.StatusRolledBack || d.Request.Version != "v3" {
		t.Fatalf("journal: %s %s", d.Request.Version, d.Status)
	}
	var evidence string
	for _, ev := range d.Events {
		if (ev.Phase == deploy.PhaseAnalysis && strings.HasPrefix(ev.Message, deploy.Breach) && ev.New != nil && ev.New.Errors > 0) ||
			(ev.Phase == deploy.PhaseRollback && strings.Contains(ev.Message, "test traffic failed: ") && strings.Contains(ev.Message, "answered 500")) {
			evidence = ev.Message
		}
	}
	if evidence == "" {
		t.Errorf("the audit trail has no evidence of the fault: %+v", d.Events)
	}
	t.Logf("faulty version rolled back on: %s", evidence)
	w, _ := h.c.Weights(context.Background(), h.primary, "claims")
	if w != (topology.Weights{Green: 100}) {
		t.Errorf("weights after the rollback = %+v, want all on green (v2)", w)
	}
	if _, out := h.run("deploy", "history", "claims"); !strings.Contains(out, "rolled-back") || !strings.Contains(out, "promoted") {
		t.Errorf("history:\n%s", out)
	}
}

// TestDeployControls: two deploys of one service, drift behind the
// operator's back, and a deploy with no traffic.
func TestDeployControls(t *testing.T) {
	h := newHarness(t, fastDeploys)
	ctx := context.Background()

	t.Run("a second deploy of the same service is refused; the first is unaffected", func(t *testing.T) {
		load := gameday.NewTraffic(h.front, 100)
		load.Start()
		defer load.Stop()
		if code, out := h.run("deploy", "claims", "--version", "v2"); code != 0 {
			t.Fatalf("first deploy: exit %d\n%s", code, out)
		}
		code, out := h.run("deploy", "claims", "--version", "v9")
		first := h.current("claims")
		if code != 4 || !strings.Contains(out, first.ID) || !strings.Contains(out, "open deploy") {
			t.Errorf("second deploy: exit %d, want 4 naming %s:\n%s", code, first.ID, out)
		}
		if code, out := h.run("deploy", "watch", "claims"); code != 0 {
			t.Fatalf("watching the first deploy: exit %d\n%s", code, out)
		}
		if d := h.current("claims"); d.ID != first.ID || d.Status != deploy.StatusPromoted || d.Request.Version != "v2" {
			t.Errorf("first deploy ended %s %s (%s)", d.Request.Version, d.Status, d.Reason)
		}
	})

	t.Run("weights changed behind the operator's back halt the deploy on the last verified weights", func(t *testing.T) {
		load := gameday.NewTraffic(h.front, 100)
		load.Start()
		defer load.Stop()
		cmd := h.command("deploy", "claims", "--version", "v3", "--wait")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(60 * time.Second)
		for {
			if d := h.current("claims"); d.Request.Version == "v3" && d.Phase == deploy.PhaseAnalysis {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the deploy never reached analysis")
			}
			time.Sleep(20 * time.Millisecond)
		}
		verified := h.current("claims").Verified
		// Someone moves weights by hand.
		if err := h.c.SetWeights(ctx, h.primary, "claims", topology.Weights{Blue: 90, Green: 10}); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		if err == nil || code != 1 || !strings.Contains(out.String(), "weights drifted") {
			t.Fatalf("drift: exit %d, want 1 with a drift error:\n%s", code, out.String())
		}
		d := h.current("claims")
		w, _ := h.c.Weights(ctx, h.primary, "claims")
		if d.Status != deploy.StatusHalted || w != verified {
			t.Errorf("after drift: status %s, weights %+v; want halted on the last verified %+v", d.Status, w, verified)
		}
		if code, out := h.run("deploy", "abort", "claims", "--wait"); code != 3 {
			t.Fatalf("abort: exit %d\n%s", code, out)
		}
		if w, _ := h.c.Weights(ctx, h.primary, "claims"); w.Of(d.From) != 100 {
			t.Errorf("after abort weights = %+v, want all on %s", w, d.From)
		}
	})

	t.Run("no traffic: analysis is inconclusive and holds, neither promoting nor rolling back", func(t *testing.T) {
		h.spec.Deploy.OnDeadline = stacks.OnDeadlineHold
		req := deploy.Request{Region: h.primary, Service: "notifications", Version: "v2", Count: 1, Steps: []int{25, 50, 100}, Policy: deploy.PolicyFrom(h.spec.Deploy)}
		req.Policy.AnalysisTimeout = 4 * time.Second
		if _, _, err := h.engine.Start(ctx, req); err != nil {
			t.Fatal(err)
		}
		s := h.sample("notifications")
		d, err := h.engine.Run(ctx, "notifications")
		if n, v := s.finish(); len(v) > 0 {
			t.Errorf("%d of %d samples broke an invariant: %v", len(v), n, v[:min(5, len(v))])
		}
		if err != nil || d.Status != deploy.StatusHeld {
			t.Fatalf("no traffic: %v, status %s (%s); want held", err, d.Status, d.Reason)
		}
		holds := 0
		for _, ev := range d.Events {
			if strings.HasPrefix(ev.Message, deploy.Inconclusive) {
				holds++
			}
		}
		w, _ := h.c.Weights(ctx, h.primary, "notifications")
		if holds < 3 || w != (topology.Weights{Blue: 75, Green: 25}) {
			t.Errorf("%d inconclusive looks, weights %+v; want several, with traffic held at the first step", holds, w)
		}
		if code, out := h.run("deploy", "abort", "notifications", "--wait"); code != 3 {
			t.Fatalf("abort: exit %d\n%s", code, out)
		}
	})
}

// TestOperatorKilledInEachPhase: the operator is killed with SIGKILL in
// each phase of a deploy under load; `tandem deploy resume` converges to a
// promoted deploy, and at no sampled moment do weights stop summing to 100
// or traffic go to a color with no healthy target.
func TestOperatorKilledInEachPhase(t *testing.T) {
	h := newHarness(t, fastDeploys)
	load := gameday.NewTraffic(h.front, 150)
	load.Start()
	defer load.Stop()
	order := []string{deploy.PhaseLaunch, deploy.PhaseWaitHealthy, deploy.PhaseTestTraffic, deploy.PhaseShift,
		deploy.PhaseAnalysis, deploy.PhaseBake, deploy.PhasePromote}
	s := h.sample("claims")
	for i, phase := range order {
		version := fmt.Sprintf("v%d", i+2)
		cmd := h.command("deploy", "claims", "--version", version, "--wait")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killedIn := ""
		deadline := time.Now().Add(60 * time.Second)
		for killedIn == "" {
			d, err := h.engine.Current(context.Background(), "claims")
			if err == nil && d.Request.Version == version {
				if slices.Index(order, d.Phase) >= i || !d.Open() {
					_ = cmd.Process.Signal(syscall.SIGKILL)
					killedIn = d.Phase
				}
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("%s: the deploy never reached %s", version, phase)
			}
			time.Sleep(5 * time.Millisecond)
		}
		_ = cmd.Wait()
		code, out := h.run("deploy", "resume", "claims", "--wait")
		d := h.current("claims")
		if killedIn == deploy.PhaseDone {
			// Promoted before the kill landed: nothing to resume.
			if d.Status != deploy.StatusPromoted {
				t.Fatalf("%s: finished as %s", version, d.Status)
			}
		} else if code != 0 || d.Status != deploy.StatusPromoted {
			t.Fatalf("%s killed in %s (target %s): resume exit %d, status %s (%s)\n%s", version, killedIn, phase, code, d.Status, d.Reason, out)
		}
		t.Logf("%s: killed in %s (target %s), resumed at epoch %d, %s", version, killedIn, phase, d.Epoch, d.Status)
	}
	n, violations := s.finish()
	if len(violations) > 0 {
		t.Errorf("%d of %d samples broke an invariant: %v", len(violations), n, violations[:min(5, len(violations))])
	}
	if n < 100 {
		t.Errorf("only %d samples taken", n)
	}
}
