package gameday

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/stacks"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// TestGameday runs the whole rehearsal on the real local platform at a
// modest rate: the deploy is promoted with no failed request and every
// acknowledged claim is read back after the failover.
func TestGameday(t *testing.T) {
	spec, err := stacks.Load("../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec.Deploy.StepBake = stacks.D(2 * time.Second)
	spec.Deploy.MinSamples = 20
	spec.Deploy.MaxP99Ratio = 50 // a loaded test machine's latency must not decide it
	dir, err := os.MkdirTemp("", "tandem-gameday-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	var progress bytes.Buffer
	rep, err := Run(context.Background(), Options{Stack: "local", Spec: spec, StateDir: dir, BinDir: testinfra.ServiceBinaries(t),
		Progress: &progress, Rate: 150, Steady: 2 * time.Second})
	if err != nil {
		t.Fatalf("gameday could not run: %v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	rep.Print(&out)
	if !rep.Passed {
		t.Fatalf("gameday failed: %v\n%s", rep.Failures, out.String())
	}
	if rep.Deploy == nil || rep.Deploy.Status != deploy.StatusPromoted {
		t.Errorf("deploy = %+v", rep.Deploy)
	}
	var deploySent, deployFailed int64
	for _, p := range rep.Phases {
		if p.Name == "deploy" {
			deploySent, deployFailed = p.Sent, p.Failed
		}
	}
	if deploySent < 100 || deployFailed != 0 {
		t.Errorf("deploy phase: %d sent, %d failed; want traffic and no failure", deploySent, deployFailed)
	}
	if rep.ClaimsAcknowledged < 50 || len(rep.ClaimsMissing) != 0 {
		t.Errorf("claims: %d acknowledged, %d missing", rep.ClaimsAcknowledged, len(rep.ClaimsMissing))
	}
	if rep.Failover == nil || rep.Failover.To != "local-b" || rep.Failover.Unavailable <= 0 {
		t.Errorf("failover = %+v", rep.Failover)
	}
	for _, want := range []string{"Requests by phase", "failover duration", "RESULT: PASS"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if local.Running(dir) {
		t.Error("the platform is still up after the gameday")
	}
}
