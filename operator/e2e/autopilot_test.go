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

// TestAutomaticUnplannedFailover: every process of the primary region is
// killed with SIGKILL under write load; the autopilot (500ms probes,
// threshold 3, quorum of vantage points) fails the platform over on its
// own. RTO (first failed probe → verified write in the new region) and RPO
// (acknowledged claims missing) are measured and reported. The old primary,
// started again by hand, takes no write.
func TestAutomaticUnplannedFailover(t *testing.T) {
	h := newHarness(t, func(s *stacks.Spec) {
		fastDeploys(s)
		s.Failover.Mode = stacks.FailoverAutomatic
		s.Failover.ProbeInterval = stacks.D(500 * time.Millisecond)
		s.Failover.FailureThreshold = 3
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secrets, err := localprobe.ReadSecrets(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	policy := probe.PolicyFor(h.spec.Failover)
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
			t.Logf("automatic %s failover %s -> %s: RTO %s (first failed probe -> verified write), writes unavailable %s after the fence, estimated WAL lost %d bytes",
				f.Mode, f.From, f.To, d.RTO.Round(time.Millisecond), f.Unavailable.Round(time.Millisecond), f.LostBytes)
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
