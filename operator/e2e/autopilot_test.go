package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/operator/autopilot"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/gameday"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/operator/probe/localprobe"
	"github.com/tandemhq/tandem/stacks"
)

// newAutopilotHarness is a platform whose stack fails over automatically,
// probing every 500ms with a threshold of 3, with the probe secrets and
// policy.
func newAutopilotHarness(t *testing.T) (*harness, localprobe.Secrets, probe.Policy) {
	t.Helper()
	h := newHarness(t, func(s *stacks.Spec) {
		fastDeploys(s)
		s.Failover.Mode = stacks.FailoverAutomatic
		s.Failover.ProbeInterval = stacks.D(500 * time.Millisecond)
		s.Failover.FailureThreshold = 3
	})
	secrets, err := localprobe.ReadSecrets(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	return h, secrets, probe.PolicyFor(h.spec.Failover)
}

// TestAutomaticUnplannedFailover: every process of the primary region is
// killed with SIGKILL under write load; the autopilot (500ms probes,
// threshold 3, quorum of vantage points) fails the platform over on its
// own. RTO (first failed probe → verified write in the new region) and RPO
// (acknowledged claims missing) are measured and reported. The old primary,
// started again by hand, takes no write.
func TestAutomaticUnplannedFailover(t *testing.T) {
	h, secrets, policy := newAutopilotHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prober := localprobe.New(h.c, secrets, localprobe.RequestFor(h.spec), policy, nil)
	eng := &failover.Engine{Routing: h.c, Fleets: h.c, Database: h.c, Cache: h.c, Store: h.c, Holder: "autopilot-test"}
	ap := autopilot.New(autopilot.Config{Mode: stacks.FailoverAutomatic, MinInterval: time.Minute, Regions: h.spec.RegionNames(),
		Request: failover.FromPolicy(failover.Request{}, h.spec)}, prober, eng, h.c)
	var mu sync.Mutex
	var done *autopilot.Decision
	healthyRounds := 0
	go func() {
		_ = ap.Run(ctx, policy.Interval, func(d autopilot.Decision) {
			mu.Lock()
			defer mu.Unlock()
			if d.Action == autopilot.ActionNone && d.Verdict == probe.VerdictHealthy {
				healthyRounds++
			}
			if d.Action == autopilot.ActionFailover && d.Failover != nil && d.Failover.Status == failover.StatusCompleted && done == nil {
				done = &d
			}
		})
	}()
	load := gameday.NewTraffic(h.front, 150)
	load.Start()
	defer load.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		n := healthyRounds
		mu.Unlock()
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the autopilot never saw a healthy platform")
		}
		time.Sleep(100 * time.Millisecond)
	}

	load.Phase("region killed")
	if _, err := h.c.KillRegion(ctx, "local-a"); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		mu.Lock()
		d := done
		mu.Unlock()
		if d != nil {
			f := d.Failover
			t.Logf("automatic %s failover %s -> %s: detection %s (first failed probe -> decision), RTO %s (first failed probe -> verified write), writes unavailable %s after the fence, estimated WAL lost %d bytes",
				f.Mode, f.From, f.To, d.Detection.Round(time.Millisecond), d.RTO.Round(time.Millisecond), f.Unavailable.Round(time.Millisecond), f.LostBytes)
			if f.Mode != failover.Unplanned || f.To != "local-b" || d.RTO <= 0 {
				t.Errorf("failover = %+v, RTO %s", f, d.RTO)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no automatic failover; last decision %+v", ap.Snapshot().Last)
		}
		time.Sleep(100 * time.Millisecond)
	}
	load.Phase("after")
	time.Sleep(3 * time.Second)
	load.Stop()
	cancel()
	n, missing, changed, err := load.ReadBack(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RPO: %d of %d acknowledged claims missing after the unplanned failover (%d changed)", len(missing), n, len(changed))
	if sent, f := failed(load.Phases(), "after"); sent == 0 || f != 0 {
		t.Errorf("after the failover %d of %d requests failed", f, sent)
	}

	// The old primary, started again by hand, is fenced.
	st, err := h.c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.ActiveRegion != "local-b" {
		t.Fatalf("active region %s", st.ActiveRegion)
	}
	assertFencedOnRestart(t, h, st.Regions[0].Database.DataDir, st.Regions[0].Database.Server)
	if sb := st.Regions[0].Database.Standby; sb != nil {
		// So is its in-region standby, started by hand too.
		assertFencedOnRestart(t, h, sb.DataDir, sb.Server)
	}
	resp, err := http.Get(h.front + "/v1/claims/00000000-0000-0000-0000-000000000000")
	if err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("front door after failover: %v %v", resp, err)
	}
}

// assertFencedOnRestart starts a fenced database again by hand, as a person
// might, and checks that it refuses writes.
func assertFencedOnRestart(t *testing.T, h *harness, dataDir, server string) {
	t.Helper()
	ctx := context.Background()
	_, portText, _ := strings.Cut(server, ":")
	s, err := pgproc.New(pgproc.Options{Name: "resurrected", DataDir: dataDir, Port: atoi(portText), Password: h.pgPassword(), Durable: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start the old primary by hand: %v", err)
	}
	defer s.Stop(10 * time.Second)
	conn, err := s.Connect(ctx, "claims")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE TABLE resurrected_write (x int)")
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("the old primary restarted by hand took a write (err %v)", err)
	}
}

// flappingProber flips a fault before each round of the prober it wraps:
// on odd rounds the primary region's proxy holds requests back for longer
// than the probe timeout, on even rounds it answers at once. Every vantage
// point sees the region's service path fail every other round — at
// quorum, but never failureThreshold rounds in a row. (The proxy delay
// leaves the services and their health alone, so nothing else fails.)
type flappingProber struct {
	autopilot.Prober
	flip func(round int) error

	mu          sync.Mutex
	round       int
	quorumDown  int // rounds in which a quorum saw the service path fail
	maxInARow   int // the longest run of failures any vantage point saw
	targetState probe.State
	flipErr     error
}

func (f *flappingProber) Round(ctx context.Context) (probe.Report, error) {
	f.mu.Lock()
	f.round++
	round := f.round
	f.mu.Unlock()
	err := f.flip(round)
	rep, rerr := f.Prober.Round(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil && f.flipErr == nil {
		f.flipErr = err
	}
	for _, tr := range rep.Targets {
		if tr.Name != localprobe.ServiceTarget("local-a") {
			continue
		}
		failed := 0
		for _, v := range tr.Views {
			if !v.Discarded && !v.Last.OK {
				failed++
			}
			f.maxInARow = max(f.maxInARow, v.Failures)
		}
		if tr.Quorum > 0 && failed >= tr.Quorum {
			f.quorumDown++
		}
		if tr.State == probe.StateDown {
			f.targetState = tr.State
		}
	}
	return rep, rerr
}

// TestFlappingTargetCausesNoFailover: the primary region's service path
// fails every other probe round at quorum (alternating failures, never the
// failure threshold in a row); the autopilot in automatic mode does not
// fail over.
func TestFlappingTargetCausesNoFailover(t *testing.T) {
	h, secrets, policy := newAutopilotHarness(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	healthy := 0
	fp := &flappingProber{
		Prober: localprobe.New(h.c, secrets, localprobe.RequestFor(h.spec), policy, nil),
		flip: func(round int) error {
			// Four healthy rounds first, then flapping.
			if round <= 4 {
				return nil
			}
			delay := time.Duration(0)
			if round%2 == 1 {
				delay = policy.Timeout + time.Second
			}
			_, err := h.c.SlowProxy(ctx, "local-a", delay)
			return err
		},
	}
	eng := &failover.Engine{Routing: h.c, Fleets: h.c, Database: h.c, Cache: h.c, Store: h.c, Holder: "autopilot-test"}
	ap := autopilot.New(autopilot.Config{Mode: stacks.FailoverAutomatic, MinInterval: time.Minute, Regions: h.spec.RegionNames(),
		Request: failover.FromPolicy(failover.Request{}, h.spec)}, fp, eng, h.c)
	var mu sync.Mutex
	var acted []autopilot.Decision
	rounds := 0
	go func() {
		_ = ap.Run(ctx, policy.Interval, func(d autopilot.Decision) {
			mu.Lock()
			defer mu.Unlock()
			rounds++
			if rounds <= 4 && d.Verdict == probe.VerdictHealthy {
				healthy++
			}
			if d.Action != autopilot.ActionNone {
				acted = append(acted, d)
			}
		})
	}()
	const flappingRounds = 14
	deadline := time.Now().Add(3 * time.Minute)
	for {
		mu.Lock()
		n := rounds
		mu.Unlock()
		if n >= 4+flappingRounds {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d probe rounds in 3 minutes", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if _, err := h.c.SlowProxy(context.Background(), "local-a", 0); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	fp.mu.Lock()
	defer fp.mu.Unlock()
	t.Logf("%d rounds flapping: the service path failed at quorum in %d of them, at most %d in a row at any vantage point (threshold 3); autopilot actions: %d",
		flappingRounds, fp.quorumDown, fp.maxInARow, len(acted))
	if healthy == 0 {
		t.Error("the autopilot never saw the platform healthy before the flapping")
	}
	if fp.flipErr != nil {
		t.Fatalf("flip the fault: %v", fp.flipErr)
	}
	if fp.quorumDown < flappingRounds/2-1 {
		t.Errorf("the service path failed at quorum in only %d rounds: the flapping did not bite", fp.quorumDown)
	}
	if fp.maxInARow >= 3 || fp.targetState == probe.StateDown {
		t.Errorf("a vantage point saw %d failures in a row (target state %q): not flapping", fp.maxInARow, fp.targetState)
	}
	for _, d := range acted {
		if d.Action == autopilot.ActionFailover {
			t.Errorf("the autopilot failed over on a flapping target: %+v", d)
		}
	}
	st, err := h.c.Status(context.Background())
	if err != nil || st.ActiveRegion != "local-a" {
		t.Errorf("active region %q (%v); want local-a", st.ActiveRegion, err)
	}
}
