package failover

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeRegions records the calls a failover makes, in order, and plays a
// replica that catches up after a few polls.
type fakeRegions struct {
	active      string
	calls       []string
	replayed    []string // positions returned by successive DatabasePosition calls on the target
	fenceAt     string
	failPromote bool
}

func (f *fakeRegions) log(s string) { f.calls = append(f.calls, s) }

func (f *fakeRegions) ActiveRegion(context.Context) (string, error) { return f.active, nil }
func (f *fakeRegions) FenceRouting(context.Context) error           { f.log("fence-routing"); return nil }
func (f *fakeRegions) Route(_ context.Context, r string) error {
	f.log("route " + r)
	f.active = r
	return nil
}
func (f *fakeRegions) StopFleets(_ context.Context, r string) error {
	f.log("stop-fleets " + r)
	return nil
}
func (f *fakeRegions) ActivateFleets(_ context.Context, r string) error {
	f.log("activate-fleets " + r)
	return nil
}
func (f *fakeRegions) FenceDatabase(_ context.Context, r string) (string, error) {
	f.log("fence-database " + r)
	return f.fenceAt, nil
}
func (f *fakeRegions) DatabasePosition(context.Context, string) (string, error) {
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
	if f.failPromote {
		return errors.New("promotion failed")
	}
	f.log("promote-database " + r)
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

func engine(f *fakeRegions) *Engine { return &Engine{Routing: f, Fleets: f, Database: f, Cache: f} }

func TestFailoverOrder(t *testing.T) {
	t.Parallel()
	f := &fakeRegions{active: "a", fenceAt: "0/3000100", replayed: []string{"0/0", "0/3000000", "0/3000100"}}
	res, err := engine(f).Run(context.Background(), Request{To: "b", Regions: []string{"a", "b"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"fence-routing", "stop-fleets a", "fence-database a", "promote-database b",
		"fence-cache a", "promote-cache b", "activate-fleets b", "route b"}
	if diff := cmp.Diff(want, f.calls); diff != "" {
		t.Errorf("calls (-want +got):\n%s", diff)
	}
	if res.FencePosition != "0/3000100" || res.From != "a" || res.To != "b" || res.Unavailable <= 0 {
		t.Errorf("result = %+v", res)
	}
}

func TestFailoverRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		to   string
		want string
	}{
		{"unknown region", "nowhere", `unknown region "nowhere"`},
		{"already active", "a", "already the active region"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeRegions{active: "a"}
			_, err := engine(f).Run(context.Background(), Request{To: tc.to, Regions: []string{"a", "b"}})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if len(f.calls) != 0 {
				t.Errorf("a refused failover acted: %v", f.calls)
			}
		})
	}
}

func TestFailoverNeverPromotesALaggingReplica(t *testing.T) {
	t.Parallel()
	f := &fakeRegions{active: "a", fenceAt: "1/0", replayed: []string{"0/FFFFFFFF"}}
	_, err := engine(f).Run(context.Background(), Request{To: "b", Regions: []string{"a", "b"}, CatchUpTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "did not reach the fence position") {
		t.Fatalf("err = %v", err)
	}
	for _, c := range f.calls {
		if strings.HasPrefix(c, "promote") || strings.HasPrefix(c, "route") {
			t.Errorf("lagging replica: %q happened", c)
		}
	}
}

func TestParsePosition(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want uint64
		ok   bool
	}{
		{"0/0", 0, true}, {"16/B374D848", 0x16<<32 | 0xB374D848, true}, {"1/0", 1 << 32, true},
		{"", 0, false}, {"12", 0, false}, {"x/1", 0, false},
	} {
		got, err := ParsePosition(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePosition(%q) = %d, %v", tc.in, got, err)
		}
	}
}
