package probe

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/stacks"
)

// fakeClock is moved by hand; After fires when Advance passes its deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: c.now.Add(d), c: ch})
	return ch
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.c <- c.now
		} else {
			kept = append(kept, w)
		}
	}
	c.waiters = kept
}

func (c *fakeClock) Waiting() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.waiters)
}

var testPolicy = Policy{Interval: time.Second, FailureThreshold: 3, SuccessThreshold: 2}

// world is a prober over named targets in region "r1" (the first critical,
// the second not) seen by vantage points a, b and c, fed by Observe.
type world struct {
	t     *testing.T
	p     *Prober
	clock *fakeClock
}

func newWorld(t *testing.T, policy Policy, targets ...Target) *world {
	t.Helper()
	clock := newFakeClock()
	p := New(policy, clock)
	if len(targets) == 0 {
		targets = []Target{
			{Name: "r1/db", Region: "r1", Kind: "postgres", Critical: true},
			{Name: "r1/cache", Region: "r1", Kind: "redis"},
			{Name: "r2/db", Region: "r2", Kind: "postgres", Critical: true},
		}
	}
	var vantages []Vantage
	for _, v := range []string{"a", "b", "c"} {
		checks := map[string]Check{}
		for _, tg := range targets {
			checks[tg.Name] = CheckFunc(func(context.Context) Result { return Result{OK: true} })
		}
		vantages = append(vantages, Vantage{Name: v, Checks: checks})
	}
	if err := p.Configure(targets, vantages); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, p: p, clock: clock}
}

// round feeds one round: failing lists "vantage:target" pairs that fail;
// every other pair of every vantage point passes.
func (w *world) round(failing ...string) Report {
	w.t.Helper()
	w.clock.Advance(time.Second)
	fail := map[string]bool{}
	for _, f := range failing {
		fail[f] = true
	}
	var obs []Observation
	for _, tr := range w.p.Report().Targets {
		for _, v := range []string{"a", "b", "c"} {
			r := Result{OK: true}
			if fail[v+":"+tr.Name] {
				r = Result{Error: "connection refused"}
			}
			obs = append(obs, Observation{Vantage: v, Target: tr.Name, Result: r})
		}
	}
	return w.p.Observe(obs)
}

func (w *world) state(rep Report, target string) State {
	w.t.Helper()
	tr, ok := rep.Target(target)
	if !ok {
		w.t.Fatalf("no target %s in report", target)
	}
	return tr.State
}

func (w *world) verdict(rep Report, region string) Verdict {
	w.t.Helper()
	rr, ok := rep.Region(region)
	if !ok {
		w.t.Fatalf("no region %s in report", region)
	}
	return rr.Verdict
}

func TestTargetsStartUnknownAndComeUpAfterSuccessThreshold(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testPolicy)
	rep := w.round()
	if got := w.state(rep, "r1/db"); got != StateUnknown {
		t.Fatalf("after 1 success: %s, want unknown (success threshold 2)", got)
	}
	if got := w.verdict(rep, "r1"); got != VerdictUnknown {
		t.Fatalf("region after 1 round: %s, want unknown", got)
	}
	rep = w.round()
	if got := w.state(rep, "r1/db"); got != StateUp {
		t.Fatalf("after 2 successes: %s, want up", got)
	}
	if got := w.verdict(rep, "r1"); got != VerdictHealthy {
		t.Fatalf("region: %s, want healthy", got)
	}
}

func TestQuorum(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		failing []string // vantage points failing r1/db every round
		want    State
	}{
		{"one of three is not a quorum", []string{"a"}, StateUp},
		{"two of three are", []string{"a", "b"}, StateDown},
		{"three of three are", []string{"a", "b", "c"}, StateDown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, testPolicy)
			w.round()
			w.round()
			var pairs []string
			for _, v := range tc.failing {
				pairs = append(pairs, v+":r1/db")
			}
			// Two failures in a row are below the threshold of 3 whatever
			// the quorum.
			for i := range 2 {
				if got := w.state(w.round(pairs...), "r1/db"); got != StateUp {
					t.Fatalf("after %d failures: %s, want still up", i+1, got)
				}
			}
			rep := w.round(pairs...)
			if got := w.state(rep, "r1/db"); got != tc.want {
				t.Fatalf("after 3 failures at %v: %s, want %s", tc.failing, got, tc.want)
			}
			tr, _ := rep.Target("r1/db")
			if tr.Voters != 3 || tr.Quorum != 2 || tr.Down != len(tc.failing) {
				t.Errorf("voters %d quorum %d down %d; want 3, 2, %d", tr.Voters, tr.Quorum, tr.Down, len(tc.failing))
			}
			wantVerdict := VerdictHealthy
			if tc.want == StateDown {
				wantVerdict = VerdictDown
				if len(rep.Changes) == 0 || !strings.Contains(rep.Changes[0].Reason, "connection refused") {
					t.Errorf("changes %v do not carry the evidence", rep.Changes)
				}
			}
			if got := w.verdict(rep, "r1"); got != wantVerdict {
				t.Errorf("region r1: %s, want %s", got, wantVerdict)
			}
			if got := w.verdict(rep, "r2"); got != VerdictHealthy {
				t.Errorf("region r2: %s, want healthy", got)
			}
		})
	}
}

func TestHysteresis(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testPolicy)
	w.round()
	w.round()
	down := []string{"a:r1/db", "b:r1/db", "c:r1/db"}
	for range 3 {
		w.round(down...)
	}
	if got := w.state(w.p.Report(), "r1/db"); got != StateDown {
		t.Fatalf("after 3 failures everywhere: %s", got)
	}
	// One success is not enough to come back, and a failure in between
	// starts the count again.
	if got := w.state(w.round(), "r1/db"); got != StateDown {
		t.Fatalf("after 1 success: %s, want still down", got)
	}
	if got := w.state(w.round(down...), "r1/db"); got != StateDown {
		t.Fatalf("after a relapse: %s, want down", got)
	}
	if got := w.state(w.round(), "r1/db"); got != StateDown {
		t.Fatalf("after 1 success since the relapse: %s, want still down", got)
	}
	// Two successes at only one vantage point are not a quorum either.
	if got := w.state(w.round("a:r1/db", "b:r1/db"), "r1/db"); got != StateDown {
		t.Fatalf("with a and b failing again: %s, want down", got)
	}
	w.round("a:r1/db", "b:r1/db")
	if got := w.state(w.round("a:r1/db"), "r1/db"); got != StateDown {
		t.Fatalf("b and c up, a failing — after b's first success: %s, want down", got)
	}
	rep := w.round("a:r1/db")
	if got := w.state(rep, "r1/db"); got != StateUp {
		t.Fatalf("b and c have 2 successes in a row: %s, want up", got)
	}
	if got := w.verdict(rep, "r1"); got != VerdictHealthy {
		t.Errorf("region r1: %s, want healthy", got)
	}
	var changed []string
	for _, c := range rep.Changes {
		changed = append(changed, c.Kind+" "+c.Name+" "+c.From+"->"+c.To)
	}
	if diff := cmp.Diff([]string{"target r1/db down->up", "region r1 down->healthy"}, changed); diff != "" {
		t.Errorf("changes (-want +got):\n%s", diff)
	}
}

func TestFlappingTargetNeverGoesDown(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		pattern func(round int) []string
	}{
		{"everyone alternates", func(i int) []string {
			if i%2 == 0 {
				return []string{"a:r1/db", "b:r1/db", "c:r1/db"}
			}
			return nil
		}},
		{"two failures then one success", func(i int) []string {
			if i%3 != 2 {
				return []string{"a:r1/db", "b:r1/db", "c:r1/db"}
			}
			return nil
		}},
		{"vantage points out of step", func(i int) []string {
			// Each vantage point has failureThreshold in a row at some
			// time, but never two of them at once.
			switch i % 6 {
			case 0, 1, 2:
				return []string{"a:r1/db"}
			default:
				return []string{"b:r1/db"}
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, testPolicy)
			w.round()
			w.round()
			for i := range 200 {
				rep := w.round(tc.pattern(i)...)
				if got := w.state(rep, "r1/db"); got == StateDown {
					t.Fatalf("round %d: r1/db went down", i)
				}
				if got := w.verdict(rep, "r1"); got == VerdictDown {
					t.Fatalf("round %d: region went down", i)
				}
			}
		})
	}
}

func TestSelfSuspicion(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testPolicy)
	w.round()
	w.round()
	all := func(v string) []string {
		return []string{v + ":r1/db", v + ":r1/cache", v + ":r2/db"}
	}
	// Vantage point a sees everything fail for a long time: it suspects
	// itself, nothing goes down, and it says so once.
	for i := range 10 {
		rep := w.round(all("a")...)
		va, _ := rep.Vantage("a")
		if !va.Suspect || va.Failed != 3 || va.Checked != 3 {
			t.Fatalf("round %d: vantage a = %+v, want suspect with 3 of 3 failed", i, va)
		}
		if i == 0 {
			if len(rep.Changes) != 1 || rep.Changes[0].Kind != "vantage" || rep.Changes[0].To != "suspect" {
				t.Fatalf("first round: changes %v, want vantage a suspect", rep.Changes)
			}
		} else if len(rep.Changes) != 0 {
			t.Fatalf("round %d: changes %v, want none", i, rep.Changes)
		}
		for _, tr := range rep.Targets {
			if tr.State != StateUp || tr.Voters != 2 {
				t.Fatalf("round %d: %s %s with %d voters, want up with 2", i, tr.Name, tr.State, tr.Voters)
			}
			if !tr.Views[0].Discarded || tr.Views[0].Last.OK {
				t.Fatalf("round %d: a's view of %s = %+v, want discarded failure", i, tr.Name, tr.Views[0])
			}
		}
	}
	// With a discarded, one more vantage point failing a target is one of
	// two: no quorum.
	for range 5 {
		rep := w.round(append(all("a"), "b:r1/db")...)
		if got := w.state(rep, "r1/db"); got != StateUp {
			t.Fatalf("a suspect, b failing r1/db: %s, want up (1 of 2)", got)
		}
	}
	// A region really down: a, which sees only failures, is not counted,
	// and b and c, which see r2 fine, take r1 down on their own.
	var rep Report
	for range 3 {
		rep = w.round(append(all("a"), "b:r1/db", "c:r1/db", "b:r1/cache", "c:r1/cache")...)
	}
	if got := w.verdict(rep, "r1"); got != VerdictDown {
		t.Fatalf("r1 dead at b and c: %s, want down", got)
	}
	if got := w.verdict(rep, "r2"); got != VerdictHealthy {
		t.Fatalf("r2: %s, want healthy", got)
	}
	// a recovers: trusted again, and its counts start from where they were
	// (it recorded nothing while suspect).
	rep = w.round("a:r1/db", "b:r1/db", "c:r1/db", "b:r1/cache", "c:r1/cache")
	va, _ := rep.Vantage("a")
	if va.Suspect {
		t.Fatalf("a sees r2 again but still suspects itself")
	}
	tr, _ := rep.Target("r1/db")
	if tr.Views[0].Failures != 1 {
		t.Errorf("a's failures on r1/db = %d, want 1 (none recorded while suspect)", tr.Views[0].Failures)
	}
}

func TestVantagePointWithOneTargetCannotSuspectItself(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	p := New(testPolicy, clock)
	targets := []Target{{Name: "r1/service", Region: "r1", Kind: "http", Critical: true}}
	ok := CheckFunc(func(context.Context) Result { return Result{OK: true} })
	if err := p.Configure(targets, []Vantage{{Name: "front", Checks: map[string]Check{"r1/service": ok}}}); err != nil {
		t.Fatal(err)
	}
	var rep Report
	for range 3 {
		rep = p.Observe([]Observation{{Vantage: "front", Target: "r1/service", Result: Result{Error: "503"}}})
	}
	if v, _ := rep.Vantage("front"); v.Suspect {
		t.Fatal("a vantage point with one target suspected itself")
	}
	if tr, _ := rep.Target("r1/service"); tr.State != StateDown {
		t.Fatalf("r1/service = %s, want down (1 of 1 voters)", tr.State)
	}
}

func TestEveryoneSuspectLeavesTheRegionUnknown(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testPolicy)
	w.round()
	w.round()
	var everything []string
	for _, v := range []string{"a", "b", "c"} {
		for _, tg := range []string{"r1/db", "r1/cache", "r2/db"} {
			everything = append(everything, v+":"+tg)
		}
	}
	rep := w.round(everything...)
	for _, r := range rep.Regions {
		if r.Verdict != VerdictUnknown || !strings.Contains(strings.Join(r.Reasons, ";"), "no vantage point that counts") {
			t.Errorf("region %s = %s %v, want unknown: nobody counts", r.Region, r.Verdict, r.Reasons)
		}
	}
	for _, tr := range rep.Targets {
		if tr.State != StateUp {
			t.Errorf("%s = %s; with no voters the state is held", tr.Name, tr.State)
		}
	}
}

func TestRegionVerdicts(t *testing.T) {
	t.Parallel()
	yes, no := true, false
	tests := []struct {
		name    string
		db      Result
		cache   Result
		want    Verdict
		because string
	}{
		{"healthy", Result{OK: true, Role: "replica", Lag: time.Second, Replicating: &yes}, Result{OK: true}, VerdictHealthy, ""},
		{"cache down degrades", Result{OK: true}, Result{Error: "refused"}, VerdictDegraded, "r1/cache down"},
		{"database down is down", Result{Error: "refused"}, Result{OK: true}, VerdictDown, "r1/db down"},
		{"replica behind degrades", Result{OK: true, Role: "replica", Lag: 30 * time.Second, Replicating: &yes}, Result{OK: true}, VerdictDegraded, "30s behind"},
		{"replica not replicating degrades", Result{OK: true, Role: "replica", Replicating: &no}, Result{OK: true}, VerdictDegraded, "not replicating"},
		{"slow answers degrade", Result{OK: true, Latency: 900 * time.Millisecond}, Result{OK: true}, VerdictDegraded, "slow"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			policy := testPolicy
			policy.MaxReplicaLag = 10 * time.Second
			policy.Slow = 500 * time.Millisecond
			w := newWorld(t, policy)
			var rep Report
			for range 3 {
				var obs []Observation
				for _, v := range []string{"a", "b", "c"} {
					obs = append(obs,
						Observation{Vantage: v, Target: "r1/db", Result: tc.db},
						Observation{Vantage: v, Target: "r1/cache", Result: tc.cache},
						Observation{Vantage: v, Target: "r2/db", Result: Result{OK: true}})
				}
				rep = w.p.Observe(obs)
			}
			rr, _ := rep.Region("r1")
			if rr.Verdict != tc.want {
				t.Fatalf("verdict %s %v, want %s", rr.Verdict, rr.Reasons, tc.want)
			}
			if tc.because != "" && !strings.Contains(strings.Join(rr.Reasons, "; "), tc.because) {
				t.Errorf("reasons %v do not say %q", rr.Reasons, tc.because)
			}
		})
	}
}

func TestConfigureKeepsEvidenceAndRejectsNonsense(t *testing.T) {
	t.Parallel()
	w := newWorld(t, testPolicy)
	w.round()
	w.round()
	ok := CheckFunc(func(context.Context) Result { return Result{OK: true} })
	// The front door moves: r2/db stays, r1's targets go, a new one comes.
	targets := []Target{
		{Name: "r2/db", Region: "r2", Kind: "postgres", Critical: true},
		{Name: "r2/service", Region: "r2", Kind: "http", Critical: true},
	}
	vantages := []Vantage{
		{Name: "a", Checks: map[string]Check{"r2/db": ok, "r2/service": ok}},
		{Name: "b", Checks: map[string]Check{"r2/db": ok, "r2/service": ok}},
	}
	if err := w.p.Configure(targets, vantages); err != nil {
		t.Fatal(err)
	}
	rep := w.p.Report()
	if len(rep.Targets) != 2 || len(rep.Regions) != 1 {
		t.Fatalf("after reconfigure: %d targets, %d regions; want 2, 1", len(rep.Targets), len(rep.Regions))
	}
	if tr, _ := rep.Target("r2/db"); tr.State != StateUp || len(tr.Views) != 2 {
		t.Errorf("r2/db = %s with %d views; want up, kept, with a and b", tr.State, len(tr.Views))
	}
	if tr, _ := rep.Target("r2/service"); tr.State != StateUnknown {
		t.Errorf("new target r2/service = %s, want unknown", tr.State)
	}

	bad := []struct {
		name     string
		targets  []Target
		vantages []Vantage
		want     string
	}{
		{"duplicate target", []Target{{Name: "x", Region: "r"}, {Name: "x", Region: "r"}}, nil, `target "x" is listed twice`},
		{"no region", []Target{{Name: "x"}}, nil, `target "x" has no region`},
		{"unknown target", []Target{{Name: "x", Region: "r"}}, []Vantage{{Name: "v", Checks: map[string]Check{"y": ok}}}, `checks unknown target "y"`},
		{"duplicate vantage", []Target{{Name: "x", Region: "r"}}, []Vantage{{Name: "v"}, {Name: "v"}}, `vantage point "v" is listed twice`},
		{"nil check", []Target{{Name: "x", Region: "r"}}, []Vantage{{Name: "v", Checks: map[string]Check{"x": nil}}}, "nil check"},
	}
	for _, tc := range bad {
		err := w.p.Configure(tc.targets, tc.vantages)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
	if len(w.p.Report().Targets) != 2 {
		t.Error("a rejected configuration changed the prober")
	}
}

func TestRoundRunsChecksWithTimeoutAndIgnoresCancellation(t *testing.T) {
	t.Parallel()
	policy := testPolicy
	policy.Timeout = 20 * time.Millisecond
	p := New(policy, nil)
	hang := CheckFunc(func(ctx context.Context) Result { <-ctx.Done(); return Result{Error: ctx.Err().Error()} })
	stuck := make(chan struct{})
	defer close(stuck)
	ignoresContext := CheckFunc(func(context.Context) Result { <-stuck; return Result{OK: true} })
	ok := CheckFunc(func(context.Context) Result { return Result{OK: true, Role: "primary"} })
	targets := []Target{{Name: "t1", Region: "r", Kind: "tcp"}, {Name: "t2", Region: "r", Kind: "tcp"}, {Name: "t3", Region: "r", Kind: "tcp"}}
	if err := p.Configure(targets, []Vantage{{Name: "v", Checks: map[string]Check{"t1": hang, "t2": ignoresContext, "t3": ok}}}); err != nil {
		t.Fatal(err)
	}
	rep, err := p.Round(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tr, _ := rep.Target("t1"); tr.Views[0].Last.OK || tr.Views[0].Last.Error == "" {
		t.Errorf("t1 (times out): last = %+v, want a failure", tr.Views[0].Last)
	}
	if tr, _ := rep.Target("t2"); tr.Views[0].Last.OK || tr.Views[0].Last.Error != "no answer within 20ms" {
		t.Errorf("t2 (ignores its context): last = %+v, want abandoned at the deadline", tr.Views[0].Last)
	}
	if tr, _ := rep.Target("t3"); !tr.Views[0].Last.OK || tr.Views[0].Last.Role != "primary" {
		t.Errorf("t3: last = %+v", tr.Views[0].Last)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Round(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled round: err = %v", err)
	}
	if got := p.Report().Round; got != 1 {
		t.Errorf("a cancelled round was recorded: round = %d, want 1", got)
	}
}

func TestRunProbesEveryIntervalOnTheClock(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	p := New(testPolicy, clock)
	var mu sync.Mutex
	calls := 0
	failing := false
	check := CheckFunc(func(context.Context) Result {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if failing {
			return Result{Error: "refused"}
		}
		return Result{OK: true}
	})
	if err := p.Configure([]Target{{Name: "t", Region: "r", Kind: "tcp", Critical: true}},
		[]Vantage{{Name: "v", Checks: map[string]Check{"t": check}}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	reports := make(chan Report)
	done := make(chan error)
	go func() {
		done <- p.Run(ctx, func(r Report) { reports <- r })
	}()
	next := func() Report {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-time.After(10 * time.Second):
			t.Fatal("no report")
		}
		return Report{}
	}
	waitTimer := func() {
		for clock.Waiting() == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	if r := next(); r.Round != 1 {
		t.Fatalf("first report is round %d", r.Round)
	}
	// Nothing happens until the interval has passed on the clock.
	waitTimer()
	clock.Advance(999 * time.Millisecond)
	select {
	case r := <-reports:
		t.Fatalf("round %d ran before the interval", r.Round)
	case <-time.After(20 * time.Millisecond):
	}
	clock.Advance(time.Millisecond)
	if r := next(); r.Round != 2 || r.Regions[0].Verdict != VerdictHealthy {
		t.Fatalf("second report: round %d, verdict %s", r.Round, r.Regions[0].Verdict)
	}
	mu.Lock()
	failing = true
	mu.Unlock()
	var r Report
	for range 3 {
		waitTimer()
		clock.Advance(time.Second)
		r = next()
	}
	if r.Round != 5 || r.Regions[0].Verdict != VerdictDown {
		t.Fatalf("after 3 failing rounds: round %d, verdict %s", r.Round, r.Regions[0].Verdict)
	}
	if now := clock.Now(); !r.Regions[0].Since.Equal(now) || !r.Targets[0].Since.Equal(now) {
		t.Errorf("since = %s / %s, want the clock's time of the change, %s", r.Regions[0].Since, r.Targets[0].Since, now)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run ended with %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls != 5 {
		t.Errorf("check ran %d times, want 5", calls)
	}
}

func TestPolicyFromTheStack(t *testing.T) {
	t.Parallel()
	got := PolicyFor(stacks.FailoverPolicy{ProbeInterval: stacks.D(500 * time.Millisecond), FailureThreshold: 4, SuccessThreshold: 3, MaxReplicaLag: stacks.D(10 * time.Second)})
	want := Policy{Interval: 500 * time.Millisecond, Timeout: 2 * time.Second, FailureThreshold: 4, SuccessThreshold: 3, MaxReplicaLag: 10 * time.Second, Slow: 500 * time.Millisecond}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	if got := PolicyFor(stacks.FailoverPolicy{}); got.FailureThreshold != 3 || got.SuccessThreshold != 2 || got.Interval != time.Second {
		t.Errorf("defaults: %+v", got)
	}
}

// BenchmarkObserve measures the decision cost of one round: three vantage
// points, seven targets (the local platform's shape).
func BenchmarkObserve(b *testing.B) {
	p := New(testPolicy, newFakeClock())
	ok := CheckFunc(func(context.Context) Result { return Result{OK: true} })
	var targets []Target
	checks := map[string]Check{}
	for _, r := range []string{"r1", "r2"} {
		for _, k := range []string{"service", "proxy", "database", "cache"} {
			if r == "r2" && k == "service" {
				continue
			}
			name := r + "/" + k
			targets = append(targets, Target{Name: name, Region: r, Kind: k, Critical: k != "cache"})
			checks[name] = ok
		}
	}
	vantages := []Vantage{{Name: "a", Checks: checks}, {Name: "b", Checks: checks}, {Name: "c", Checks: checks}}
	if err := p.Configure(targets, vantages); err != nil {
		b.Fatal(err)
	}
	var obs []Observation
	for _, v := range vantages {
		for _, t := range targets {
			obs = append(obs, Observation{Vantage: v.Name, Target: t.Name, Result: Result{OK: true, Latency: time.Millisecond}})
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		p.Observe(obs)
	}
}
