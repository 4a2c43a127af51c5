package localprobe

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// twoRegions is a topology with a fleet in local-a only.
func twoRegions() topology.Status {
	return topology.Status{
		ActiveRegion: "local-a",
		FrontDoor:    topology.FrontDoor{URL: "http://127.0.0.1:7000", ActiveRegion: "local-a"},
		Regions: []topology.RegionStatus{
			{Name: "local-a", ProxyURL: "http://127.0.0.1:7001",
				Database: topology.DataStatus{Role: "primary", Endpoint: "127.0.0.1:7002", Server: "127.0.0.1:7003"},
				Cache:    topology.DataStatus{Role: "primary", Endpoint: "127.0.0.1:7004", Server: "127.0.0.1:7005"},
				Services: []topology.ServiceStatus{{Name: "claims", Colors: map[string]topology.ColorStatus{"blue": {Tasks: 2}}}}},
			{Name: "local-b", ProxyURL: "http://127.0.0.1:7011",
				Database: topology.DataStatus{Role: "replica", Endpoint: "127.0.0.1:7012", Server: "127.0.0.1:7013"},
				Cache:    topology.DataStatus{Role: "replica", Endpoint: "127.0.0.1:7014", Server: "127.0.0.1:7015"},
				Services: []topology.ServiceStatus{{Name: "claims", Colors: map[string]topology.ColorStatus{}}}},
		},
	}
}

func TestPlan(t *testing.T) {
	t.Parallel()
	secrets := Secrets{Postgres: "pg-secret", Redis: "redis-secret"}
	targets, vantages := Plan(twoRegions(), local.Faults{}, secrets, DefaultRequest)
	var names []string
	for _, tg := range targets {
		names = append(names, tg.Name+" "+tg.Kind+map[bool]string{true: " critical", false: ""}[tg.Critical])
	}
	want := []string{
		"local-a/service http critical", "local-a/proxy tcp critical", "local-a/database postgres critical", "local-a/cache redis",
		"local-b/proxy tcp critical", "local-b/database postgres critical", "local-b/cache redis",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("targets (-want +got):\n%s", diff)
	}
	if len(vantages) != 3 || vantages[0].Name != FrontDoor || vantages[1].Name != "from-local-a" || vantages[2].Name != "from-local-b" {
		t.Fatalf("vantage points: %+v", vantages)
	}
	front, ok := vantages[0].Checks["local-a/service"].(probe.HTTP)
	if !ok || len(vantages[0].Checks) != 1 {
		t.Fatalf("front door checks: %+v", vantages[0].Checks)
	}
	if front.URL != "http://127.0.0.1:7000"+DefaultRequest.Path || front.Header["X-Tandem-Front-Door-Region"] != "local-a" {
		t.Errorf("front door check: %+v", front)
	}
	for _, v := range vantages[1:] {
		if len(v.Checks) != len(targets) {
			t.Errorf("%s checks %d targets, want all %d", v.Name, len(v.Checks), len(targets))
		}
	}
	db := vantages[2].Checks["local-b/database"].(probe.Postgres)
	if !strings.Contains(db.DSN, "127.0.0.1:7012") || !strings.Contains(db.DSN, "pg-secret") {
		t.Errorf("local-b database check goes to %q, want its endpoint with the password", db.DSN)
	}
	if rc := vantages[1].Checks["local-a/cache"].(probe.Redis); rc.Addr != "127.0.0.1:7004" || rc.Password != "redis-secret" {
		t.Errorf("local-a cache check: %+v", rc)
	}
}

func TestPlanAfterFailoverMovesTheFrontDoorsTarget(t *testing.T) {
	t.Parallel()
	st := twoRegions()
	st.ActiveRegion, st.FrontDoor.ActiveRegion = "local-b", "local-b"
	st.Regions[0].Services[0].Colors = map[string]topology.ColorStatus{}
	st.Regions[1].Services[0].Colors = map[string]topology.ColorStatus{"blue": {Tasks: 1}}
	targets, vantages := Plan(st, local.Faults{}, Secrets{}, DefaultRequest)
	if slices.ContainsFunc(targets, func(tg probe.Target) bool { return tg.Name == "local-a/service" }) {
		t.Error("local-a, which runs no fleet, still has a service target")
	}
	if _, ok := vantages[0].Checks["local-b/service"]; !ok {
		t.Errorf("front door checks %v, want local-b/service", vantages[0].Checks)
	}
}

func TestPartitionedRegionsProberReachesNothingOutside(t *testing.T) {
	t.Parallel()
	faults := local.Faults{Regions: []local.RegionFaults{{Region: "local-b", Partitioned: true}}}
	_, vantages := Plan(twoRegions(), faults, Secrets{}, DefaultRequest)
	ctx := context.Background()
	inB := vantages[2].Checks["local-a/proxy"].(probe.TCP)
	if r := inB.Check(ctx); r.OK || !strings.Contains(r.Error, "local-b is partitioned from local-a") {
		t.Errorf("from local-b to local-a's proxy: %+v, want cut off", r)
	}
	// Its own region is dialled for real (nothing listens on these test
	// ports, so the dial is refused rather than cut off).
	own := vantages[2].Checks["local-b/proxy"].(probe.TCP)
	if r := own.Check(ctx); r.OK || strings.Contains(r.Error, "partitioned") {
		t.Errorf("from local-b to its own proxy: %+v, want a real dial", r)
	}
	inA := vantages[1].Checks["local-a/proxy"].(probe.TCP)
	if r := inA.Check(ctx); strings.Contains(r.Error, "partitioned") {
		t.Errorf("from local-a: %+v; local-a is not partitioned", r)
	}
}

func TestRequestFor(t *testing.T) {
	t.Parallel()
	spec, err := stacks.Load("../../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// claims' GET smoke answers 404, which would not tell a service from
	// a missing route; notifications' answers 200.
	if got := RequestFor(spec); got.Path != DefaultRequest.Path || got.Status != 200 {
		t.Errorf("RequestFor(local) = %+v", got)
	}
	if got := RequestFor(nil); got != DefaultRequest {
		t.Errorf("RequestFor(nil) = %+v", got)
	}
}

func TestReadSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := ReadSecrets(dir); err == nil || !strings.Contains(err.Error(), "run as the user that started the platform") {
		t.Errorf("missing file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), []byte(`{"postgres":"p","redis":"r"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := ReadSecrets(dir); err != nil || s != (Secrets{Postgres: "p", Redis: "r"}) {
		t.Errorf("ReadSecrets = %+v, %v", s, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets.json"), []byte(`{"postgres":"p"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSecrets(dir); err == nil {
		t.Error("secrets without the cache password accepted")
	}
}

// roundsUntil runs rounds until done says so, at most max of them.
func roundsUntil(t *testing.T, lp *Prober, max int, what string, done func(probe.Report) bool) probe.Report {
	t.Helper()
	var rep probe.Report
	for range max {
		var err error
		if rep, err = lp.Round(context.Background()); err != nil {
			t.Fatal(err)
		}
		if done(rep) {
			return rep
		}
		time.Sleep(lp.Policy().Interval)
	}
	t.Fatalf("%s: not after %d rounds; last report:\nregions %+v\nchanges %v", what, max, rep.Regions, rep.Changes)
	return rep
}

func verdicts(rep probe.Report) map[string]probe.Verdict {
	out := map[string]probe.Verdict{}
	for _, r := range rep.Regions {
		out[r.Region] = r.Verdict
	}
	return out
}

func lastResult(t *testing.T, rep probe.Report, target, vantage string) probe.Result {
	t.Helper()
	tr, ok := rep.Target(target)
	if !ok {
		t.Fatalf("no target %s", target)
	}
	for _, v := range tr.Views {
		if v.Vantage == vantage {
			return v.Last
		}
	}
	t.Fatalf("%s has no view of %s", vantage, target)
	return probe.Result{}
}

// TestProberAgainstTheRealPlatform probes a real local platform, then
// partitions, heals and kills its standby region and checks what the
// prober concludes each time.
func TestProberAgainstTheRealPlatform(t *testing.T) {
	spec, err := stacks.Load("../../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tandem-probe-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	ctx := context.Background()
	var progress bytes.Buffer
	p, err := local.Up(ctx, local.Config{Stack: "local", Spec: spec, StateDir: dir, BinDir: testinfra.ServiceBinaries(t), Progress: &progress})
	if err != nil {
		t.Fatalf("Up: %v\n%s", err, progress.String())
	}
	defer p.Down(ctx)
	secrets, err := ReadSecrets(dir)
	if err != nil {
		t.Fatal(err)
	}
	policy := probe.Policy{Interval: 100 * time.Millisecond, FailureThreshold: 3, SuccessThreshold: 2, MaxReplicaLag: 10 * time.Second}
	lp := New(p, secrets, RequestFor(spec), policy, nil)
	healthy := func(rep probe.Report) bool {
		v := verdicts(rep)
		return v["local-a"] == probe.VerdictHealthy && v["local-b"] == probe.VerdictHealthy
	}

	rep := roundsUntil(t, lp, 50, "both regions healthy", healthy)
	if n := len(rep.Vantages); n != 3 {
		t.Errorf("%d vantage points, want 3", n)
	}
	for target, role := range map[string]string{"local-a/database": "primary", "local-b/database": "replica", "local-a/cache": "primary", "local-b/cache": "replica"} {
		r := lastResult(t, rep, target, "from-local-a")
		if !r.OK || r.Role != role {
			t.Errorf("%s: %+v, want ok as %s", target, r, role)
		}
		if role == "replica" && (r.Replicating == nil || !*r.Replicating) {
			t.Errorf("%s: %+v, want replicating", target, r)
		}
	}
	if r := lastResult(t, rep, "local-a/service", FrontDoor); !r.OK {
		t.Errorf("front door: %+v", r)
	}

	if _, err := p.Partition(ctx, "local-b"); err != nil {
		t.Fatal(err)
	}
	rep = roundsUntil(t, lp, 20, "local-b down after its partition", func(rep probe.Report) bool {
		return verdicts(rep)["local-b"] == probe.VerdictDown
	})
	if v, _ := rep.Vantage("from-local-b"); !v.Suspect {
		t.Errorf("the prober in the partitioned region does not suspect itself: %+v", v)
	}
	if v, _ := rep.Vantage("from-local-a"); v.Suspect {
		t.Errorf("from-local-a suspects itself: %+v", v)
	}
	if got := verdicts(rep)["local-a"]; got != probe.VerdictHealthy {
		t.Errorf("local-a during local-b's partition: %s", got)
	}
	if tr, _ := rep.Target("local-b/database"); tr.State != probe.StateDown || tr.Voters != 1 {
		t.Errorf("local-b/database: %s with %d voters; want down, counted by from-local-a alone", tr.State, tr.Voters)
	}

	if _, err := p.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	rep = roundsUntil(t, lp, 100, "both regions healthy after heal", healthy)
	if r := lastResult(t, rep, "local-b/database", "from-local-b"); !r.OK || r.Replicating == nil || !*r.Replicating {
		t.Errorf("local-b's replica after heal: %+v, want streaming", r)
	}

	if _, err := p.KillRegion(ctx, "local-b"); err != nil {
		t.Fatal(err)
	}
	rep = roundsUntil(t, lp, 20, "local-b down after its kill", func(rep probe.Report) bool {
		return verdicts(rep)["local-b"] == probe.VerdictDown
	})
	if got := verdicts(rep)["local-a"]; got != probe.VerdictHealthy {
		t.Errorf("local-a after local-b's kill: %s", got)
	}
	for _, v := range rep.Vantages {
		if v.Suspect {
			t.Errorf("%s suspects itself after a region kill; it still sees local-a", v.Name)
		}
	}
	if tr, _ := rep.Target("local-b/database"); tr.Voters != 2 || tr.Down != 2 {
		t.Errorf("local-b/database after the kill: %d of %d down, want 2 of 2", tr.Down, tr.Voters)
	}
}
