package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func TestProbeAndFaultBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown region to kill", []string{"fault", "kill-region", "nowhere"}, ExitUsage, `unknown region "nowhere"; this stack has regions local-a, local-b`},
		{"unknown region to partition", []string{"fault", "partition", "nowhere"}, ExitUsage, `unknown region "nowhere"`},
		{"unknown region to slow", []string{"fault", "slow-db", "nowhere"}, ExitUsage, `unknown region "nowhere"`},
		{"kill without a region", []string{"fault", "kill-region"}, ExitUsage, "takes 1 argument, got 0"},
		{"empty region", []string{"fault", "kill-db", ""}, ExitUsage, `unknown region ""; this stack has regions local-a, local-b`},
		{"unknown region to kill a cache", []string{"fault", "kill-cache", "nowhere"}, ExitUsage, `unknown region "nowhere"`},
		{"proxy delay too long", []string{"fault", "slow-proxy", "local-a", "--delay", "2h"}, ExitUsage, "--delay 2h0m0s is out of range"},
		{"heal with a region", []string{"fault", "heal", "local-a"}, ExitUsage, "takes no arguments"},
		{"zero delay", []string{"fault", "slow-db", "local-a", "--delay", "0s"}, ExitUsage, "--delay 0s is out of range"},
		{"delay too long", []string{"fault", "slow-db", "local-a", "--delay", "2m"}, ExitUsage, "--delay 2m0s is out of range"},
		{"unknown fault", []string{"fault", "flood"}, ExitUsage, `unknown fault "flood"; use one of kill-region, kill-db, kill-cache, partition, slow-db, slow-proxy, heal`},
		{"negative rounds", []string{"probe", "--rounds", "-1"}, ExitUsage, "--rounds -1 is out of range"},
		{"probe with nothing up", []string{"probe"}, ExitError, "no platform is up"},
		{"heal with nothing up", []string{"fault", "heal"}, ExitError, "no platform is up"},
		{"kill with nothing up", []string{"fault", "kill-region", "local-a"}, ExitError, "no platform is up"},
		{"faults with nothing up", []string{"fault"}, ExitError, "no platform is up"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			state := t.TempDir()
			args := append([]string{"--stacks-dir", stacksDir(t), "--state-dir", state}, tc.args...)
			code, _, errOut := execute(t, args...)
			if code != tc.code {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.want) {
				t.Errorf("stderr %q does not say %q", errOut, tc.want)
			}
			if entries, _ := os.ReadDir(state); len(entries) != 0 {
				t.Errorf("bad input left files in the state directory: %v", entries)
			}
		})
	}
}

func TestPrintProbe(t *testing.T) {
	t.Parallel()
	p := probe.New(probe.Policy{Interval: time.Second, FailureThreshold: 3, SuccessThreshold: 2}, nil)
	ok := probe.CheckFunc(func(context.Context) probe.Result { return probe.Result{OK: true} })
	targets := []probe.Target{
		{Name: "r1/database", Region: "r1", Kind: "postgres", Critical: true},
		{Name: "r2/database", Region: "r2", Kind: "postgres", Critical: true},
	}
	all := map[string]probe.Check{"r1/database": ok, "r2/database": ok}
	if err := p.Configure(targets, []probe.Vantage{{Name: "v1", Checks: all}, {Name: "v2", Checks: all}, {Name: "v3", Checks: all}}); err != nil {
		t.Fatal(err)
	}
	yes := true
	var rep probe.Report
	for range 3 {
		rep = p.Observe([]probe.Observation{
			{Vantage: "v1", Target: "r1/database", Result: probe.Result{Error: "connect: connection refused"}},
			{Vantage: "v1", Target: "r2/database", Result: probe.Result{OK: true, Role: "replica", Replicating: &yes, Latency: 3 * time.Millisecond}},
			{Vantage: "v2", Target: "r1/database", Result: probe.Result{Error: "connect: connection refused"}},
			{Vantage: "v2", Target: "r2/database", Result: probe.Result{OK: true, Role: "replica", Replicating: &yes}},
			{Vantage: "v3", Target: "r1/database", Result: probe.Result{Error: "no route\tto host"}},
			{Vantage: "v3", Target: "r2/database", Result: probe.Result{Error: "no route to host"}},
		})
	}
	var out bytes.Buffer
	printProbe(&out, rep)
	text := out.String()
	for _, want := range []string{
		"round 3 at ",
		"down after 3 failures in a row at a majority of vantage points, up after 2 successes",
		"r1      DOWN",
		"r1/database down: v1: connect: connection refused",
		"0 up, 2 down of 2  FAIL×3: connect: connection refused",
		"ok 3ms replica",
		"(not counted) FAIL: no route to host",
		"vantage point v3 suspects itself: all 2 of its checks failed",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}

// syncBuffer is a buffer a command writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestProbeAndFaultCommandsOnTheRealPlatform runs tandem probe and tandem
// fault against a real local platform.
func TestProbeAndFaultCommandsOnTheRealPlatform(t *testing.T) {
	spec, err := stacks.Load(stacksDir(t) + "/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	state, err := os.MkdirTemp("", "tandem-cli-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(state) })
	ctx := context.Background()
	var progress bytes.Buffer
	p, err := local.Up(ctx, local.Config{Stack: "local", Spec: spec, StateDir: state, BinDir: testinfra.ServiceBinaries(t), Progress: &progress})
	if err != nil {
		t.Fatalf("Up: %v\n%s", err, progress.String())
	}
	defer p.Down(ctx)
	if err := p.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		code, out, errOut := execute(t, append([]string{"--stacks-dir", stacksDir(t), "--state-dir", state}, args...)...)
		if code != ExitOK {
			t.Fatalf("tandem %v: exit %d: %s", args, code, errOut)
		}
		return out
	}
	probeJSON := func() probe.Report {
		t.Helper()
		var rep probe.Report
		if err := json.Unmarshal([]byte(run("probe", "-o", "json")), &rep); err != nil {
			t.Fatal(err)
		}
		return rep
	}

	rep := probeJSON()
	if rep.Round != 3 {
		t.Errorf("probe ran %d rounds, want 3 (the larger threshold of the local stack)", rep.Round)
	}
	for _, r := range rep.Regions {
		if r.Verdict != probe.VerdictHealthy {
			t.Errorf("region %s is %s before any fault: %v", r.Region, r.Verdict, r.Reasons)
		}
	}

	out := run("fault", "partition", "local-b")
	if !strings.HasPrefix(out, "partition local-b:\n") || !strings.Contains(out, "stopped listening") {
		t.Errorf("fault partition said:\n%s", out)
	}
	if out := run("fault"); !strings.Contains(out, "local-b  no      yes") {
		t.Errorf("fault list after the partition:\n%s", out)
	}
	out = run("probe")
	for _, want := range []string{"local-a  HEALTHY", "local-b  DOWN", "vantage point from-local-b suspects itself"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe during the partition lacks %q:\n%s", want, out)
		}
	}
	if out := run("fault", "heal"); !strings.Contains(out, "listens again") {
		t.Errorf("fault heal said:\n%s", out)
	}

	// --watch, not on a terminal: a line per change, until interrupted.
	var watchOut, watchErr syncBuffer
	root := NewRootCmd(&watchOut, &watchErr)
	root.SetArgs([]string{"--stacks-dir", stacksDir(t), "--state-dir", state, "probe", "--watch"})
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(wctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(watchOut.String(), "region local-a: unknown -> healthy") {
		if time.Now().After(deadline) {
			t.Fatalf("watch printed no verdict in 60s:\n%s\n%s", watchOut.String(), watchErr.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("interrupted watch: %v", err)
	}
	if strings.Contains(watchOut.String(), "\x1b[") {
		t.Error("watch redrew the screen on a non-terminal")
	}

	out = run("fault", "kill-region", "local-b", "-o", "json")
	var fr local.FaultReport
	if err := json.Unmarshal([]byte(out), &fr); err != nil || fr.Fault != "kill-region" || fr.Region != "local-b" || len(fr.Actions) == 0 {
		t.Errorf("fault kill-region -o json: %s (%v)", out, err)
	}
	var st topology.Status
	if err := json.Unmarshal([]byte(run("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Regions[1].Database.Role != topology.RoleDown || st.Regions[1].Cache.Role != topology.RoleDown {
		t.Errorf("status after killing local-b: database %s, cache %s; want down", st.Regions[1].Database.Role, st.Regions[1].Cache.Role)
	}
	if out := run("fault", "heal"); !strings.Contains(out, "local-b stays killed") {
		t.Errorf("heal after the kill said:\n%s", out)
	}
	rep = probeJSON()
	if r, _ := rep.Region("local-b"); r.Verdict != probe.VerdictDown {
		t.Errorf("local-b after its kill: %s", r.Verdict)
	}
	if r, _ := rep.Region("local-a"); r.Verdict != probe.VerdictHealthy {
		t.Errorf("local-a after local-b's kill: %s %v", r.Verdict, r.Reasons)
	}
}
