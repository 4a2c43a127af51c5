package failover

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
)

// fakeRegions is a hand-written stand-in for the platform's regions: it
// records calls in order and plays a replica that catches up after a few
// polls. The state store is a real bbolt file.
type fakeRegions struct {
	mu          sync.Mutex
	active      string
	calls       []string
	replayed    []string // successive DatabasePosition answers for the target
	fenceAt     string
	oldDown     bool
	lag         topology.Lag
	failPromote int // fail this many promote calls
}

func (f *fakeRegions) log(s string) { f.mu.Lock(); f.calls = append(f.calls, s); f.mu.Unlock() }

func (f *fakeRegions) ActiveRegion(context.Context) (string, error) { return f.active, nil }
func (f *fakeRegions) FenceRouting(context.Context) error           { f.log("fence-routing"); return nil }
func (f *fakeRegions) Route(_ context.Context, r string) error {
	f.log("route " + r)
	f.active = r
	return nil
}
func (f *fakeRegions) StopFleets(_ context.Context, r string) error {
	f.log("stop-fleets " + r)
	if f.oldDown {
		return errors.New("region unreachable")
	}
	return nil
}
func (f *fakeRegions) ActivateFleets(_ context.Context, r string) error {
	f.log("activate-fleets " + r)
	return nil
}
func (f *fakeRegions) FenceDatabase(_ context.Context, r string) (string, error) {
	f.log("fence-database " + r)
	if f.oldDown {
		return "", nil
	}
	return f.fenceAt, nil
}
func (f *fakeRegions) DatabasePosition(_ context.Context, r string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r == f.active && f.oldDown {
		return "", errors.New("connection refused")
	}
	if r == f.active {
		return f.fenceAt, nil
	}
	if len(f.replayed) == 0 {
		return "0/0", nil
	}
	p := f.replayed[0]
	if len(f.replayed) > 1 {
		f.replayed = f.replayed[1:]
	}
	return p, nil
}
func (f *fakeRegions) PromoteDatabase(_ context.Context, r string) error {
	f.mu.Lock()
	fail := f.failPromote > 0
	if fail {
		f.failPromote--
	}
	f.mu.Unlock()
	if fail {
		return errors.New("promotion failed")
	}
	f.log("promote-database " + r)
	return nil
}
func (f *fakeRegions) ReplicaLag(context.Context, string) (topology.Lag, error) {
	if f.oldDown {
		return topology.Lag{}, errors.New("no primary")
	}
	return f.lag, nil
}
func (f *fakeRegions) VerifyWrite(_ context.Context, r string, epoch int64) error {
	f.log("verify-write " + r)
	return nil
}
func (f *fakeRegions) FenceCache(_ context.Context, r string) error {
	f.log("fence-cache " + r)
	return nil
}
func (f *fakeRegions) PromoteCache(_ context.Context, r string) error {
	f.log("promote-cache " + r)
	return nil
}

func engine(t *testing.T, f *fakeRegions) *Engine {
	t.Helper()
	s, err := state.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &Engine{Routing: f, Fleets: f, Database: f, Cache: f, Store: s, Holder: "test-op"}
}

func request(mode string) Request {
	return Request{To: "b", Regions: []string{"a", "b"}, Mode: mode, MaxReplicaLag: 10 * time.Second, CatchUpTimeout: time.Second, LeaseTTL: 5 * time.Second}
}

func run(t *testing.T, e *Engine, req Request) (*Failover, error) {
	t.Helper()
	if _, err := e.Start(context.Background(), req); err != nil {
		return nil, err
	}
	return e.Run(context.Background())
}

var plannedCalls = []string{"fence-routing", "stop-fleets a", "fence-database a", "promote-database b",
	"fence-cache a", "promote-cache b", "activate-fleets b", "route b", "verify-write b"}

func TestPlannedSwitchover(t *testing.T) {
	t.Parallel()
	f := &fakeRegions{active: "a", fenceAt: "0/3000100", replayed: []string{"0/0", "0/3000000", "0/3000100"}, lag: topology.Lag{Streaming: true}}
	res, err := run(t, engine(t, f), request(""))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(plannedCalls, f.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if res.Mode != Planned || res.FencePosition != "0/3000100" || res.Status != StatusCompleted || res.Unavailable <= 0 || res.LostBytes != 0 || res.Epoch != 1 {
		t.Errorf("result = %+v", res)
	}
	if !strings.Contains(res.Steps[3].Detail, "RPO 0") {
		t.Errorf("wait step = %q", res.Steps[3].Detail)
	}
}

func TestModeChoiceAndRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		f     *fakeRegions
		req   Request
		want  string
		force bool // with --force it proceeds
	}{
		{"unknown region", &fakeRegions{active: "a"}, Request{To: "nowhere", Regions: []string{"a", "b"}}, `unknown region "nowhere"`, false},
		{"already active", &fakeRegions{active: "a"}, Request{To: "a", Regions: []string{"a", "b"}}, "already the active region", false},
		{"old primary unreachable names --unplanned", &fakeRegions{active: "a", oldDown: true}, request(""), "--unplanned", false},
		{"planned needs the old primary", &fakeRegions{active: "a", oldDown: true}, request(Planned), "--planned needs the old primary", false},
		{"replica lag above the limit", &fakeRegions{active: "a", fenceAt: "0/10", replayed: []string{"0/10"}, lag: topology.Lag{Streaming: true, Bytes: 9000, Seconds: 30}},
			request(""), "replica lag in b is 30.0s (9000 bytes), above the limit 10s", true},
		{"replica not streaming", &fakeRegions{active: "a", fenceAt: "0/10", replayed: []string{"0/10"}, lag: topology.Lag{}}, request(""), "not streaming", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := engine(t, tc.f)
			_, err := e.Start(context.Background(), tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Start = %v, want an error saying %q", err, tc.want)
			}
			if len(tc.f.calls) != 0 {
				t.Errorf("a refused failover acted: %v", tc.f.calls)
			}
			if !tc.force {
				return
			}
			req := tc.req
			req.Force = true
			res, err := run(t, e, req)
			if err != nil || res.Status != StatusCompleted || !res.Forced {
				t.Fatalf("forced: %v, %+v", err, res)
			}
		})
	}
}

func TestUnplannedFencesWhatItCanAndPromotes(t *testing.T) {
	t.Parallel()
	f := &fakeRegions{active: "a", oldDown: true, replayed: []string{"0/500"}}
	res, err := run(t, engine(t, f), request(Unplanned))
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusCompleted || res.Mode != Unplanned {
		t.Fatalf("result = %+v", res)
	}
	if !strings.HasPrefix(res.Steps[1].Detail, "best effort, not done") || !strings.Contains(res.Steps[3].Detail, "not waited for") {
		t.Errorf("steps = %+v", res.Steps)
	}
	if f.calls[0] != "fence-routing" {
		t.Errorf("the routing fence did not come first: %v", f.calls)
	}
}

func TestLaggingReplicaIsNeverPromoted(t *testing.T) {
	t.Parallel()
	f := &fakeRegions{active: "a", fenceAt: "1/0", replayed: []string{"0/FFFFFFFF"}, lag: topology.Lag{Streaming: true}}
	_, err := run(t, engine(t, f), request(""))
	if err == nil || !strings.Contains(err.Error(), "did not reach the fence position") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range f.calls {
		if strings.HasPrefix(c, "promote") || strings.HasPrefix(c, "route") {
			t.Errorf("lagging replica: %q happened", c)
		}
	}
}

func TestResumeRetriesTheFailedStepOnly(t *testing.T) {
	t.Parallel()
	f := &fakeRegions{active: "a", fenceAt: "0/10", replayed: []string{"0/10"}, lag: topology.Lag{Streaming: true}, failPromote: 1}
	e := engine(t, f)
	if _, err := run(t, e, request("")); err == nil || !strings.Contains(err.Error(), "failover resume") {
		t.Fatalf("first run = %v, want a failure pointing at resume", err)
	}
	open, _ := e.Current(context.Background())
	if open.Status != StatusRunning || open.Next != 4 {
		t.Fatalf("journal after the failure: %s at step %d", open.Status, open.Next)
	}
	e2 := *e
	e2.Holder = "second-op"
	res, err := e2.Run(context.Background())
	if err != nil || res.Status != StatusCompleted || res.Epoch != 2 {
		t.Fatalf("resume: %v, %+v", err, res)
	}
	if diff := cmp.Diff(plannedCalls, f.calls); diff != "" {
		t.Errorf("every step once (-want +got):\n%s", diff)
	}
}
