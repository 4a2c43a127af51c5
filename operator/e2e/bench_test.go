package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/gameday"
	"github.com/tandemhq/tandem/stacks"
)

// benchDeploy runs one deploy of claims through the engine and returns it.
func (h *harness) benchDeploy(b *testing.B, version string, env map[string]string) *deploy.Deploy {
	b.Helper()
	ctx := context.Background()
	req := deploy.Request{Region: h.primary, Service: "claims", Version: version, Env: env, Count: 2,
		Steps: h.spec.Deploy.Steps, Policy: deploy.PolicyFrom(h.spec.Deploy)}
	if _, _, err := h.engine.Start(ctx, req); err != nil {
		b.Fatal(err)
	}
	d, err := h.engine.Run(ctx, "claims")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkDeployCutover deploys good versions of claims blue/green under
// 300 requests/s through the front door and reports the requests that
// failed during each deploy and the deploy's duration.
//
//	go test ./operator/e2e -run '^$' -bench DeployCutover -benchtime 3x
func BenchmarkDeployCutover(b *testing.B) {
	h := newBenchHarness(b)
	load := gameday.NewTraffic(h.front, 300)
	load.Start()
	defer load.Stop()
	time.Sleep(2 * time.Second)
	var failedTotal, sentTotal int64
	var took time.Duration
	b.ResetTimer()
	for i := range b.N {
		name := fmt.Sprintf("deploy %d", i)
		load.Phase(name)
		d := h.benchDeploy(b, fmt.Sprintf("v%d", i+2), nil)
		if d.Status != deploy.StatusPromoted {
			b.Fatalf("deploy %d: %s (%s)", i, d.Status, d.Reason)
		}
		load.Phase("between")
		sent, f := failed(load.Phases(), name)
		failedTotal += f
		sentTotal += sent
		took += d.Ended.Sub(d.Started)
	}
	b.StopTimer()
	b.ReportMetric(float64(failedTotal)/float64(b.N), "failed-requests/op")
	b.ReportMetric(float64(sentTotal)/float64(b.N), "requests/op")
	b.ReportMetric(took.Seconds()/float64(b.N), "deploy-s/op")
}

// BenchmarkBreachToOldColor deploys a version that fails 5% of requests
// under 300 requests/s and reports the time from the analysis breach to all
// traffic verified back on the old color.
//
//	go test ./operator/e2e -run '^$' -bench BreachToOldColor -benchtime 3x
func BenchmarkBreachToOldColor(b *testing.B) {
	h := newBenchHarness(b)
	load := gameday.NewTraffic(h.front, 300)
	load.Start()
	defer load.Stop()
	time.Sleep(2 * time.Second)
	var total time.Duration
	var measured int
	b.ResetTimer()
	for i := 0; measured < b.N && i < 3*b.N; i++ {
		d := h.benchDeploy(b, fmt.Sprintf("bad%d", i), map[string]string{"TANDEM_FAULT_ERROR_RATE": "0.05"})
		if d.Status != deploy.StatusRolledBack {
			b.Fatalf("faulty deploy %d: %s (%s)", i, d.Status, d.Reason)
		}
		var breach, back time.Time
		for _, ev := range d.Events {
			if ev.Phase == deploy.PhaseAnalysis && strings.HasPrefix(ev.Message, deploy.Breach) {
				breach = ev.At
			}
			if ev.Phase == deploy.PhaseRollback && strings.HasPrefix(ev.Message, "all traffic back on") {
				back = ev.At
			}
		}
		if breach.IsZero() {
			continue // caught by the smoke check before any weight moved
		}
		total += back.Sub(breach)
		measured++
	}
	b.StopTimer()
	if measured == 0 {
		b.Fatal("no rollback came from an analysis breach")
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(measured), "ms-breach-to-old/op")
}

func newBenchHarness(b *testing.B) *harness {
	b.Helper()
	return newHarness(b, func(s *stacks.Spec) {
		fastDeploys(s)
		s.Deploy.MinSamples = 20
	})
}
