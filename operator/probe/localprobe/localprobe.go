// Package localprobe wires the prober to the embedded local platform. It
// builds the targets and vantage points from the platform's topology (the
// front door, each region's proxy, database endpoint and cache endpoint)
// with the credentials the platform keeps in its state directory, and
// rebuilds them before every round, so a failover that moves the front
// door moves the probes with it.
//
// Vantage points: "front-door" probes the active region's service path
// through the front door, as a client would; "from-<region>" is a prober
// placed in that region that probes every region directly. All of them
// share the loopback network, so a region's injected partition is applied
// to the prober placed in it as well: it reaches nothing outside its
// region (and its own region's endpoints refuse everyone), sees every
// check fail and suspects itself.
package localprobe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/local/proxy"
	"github.com/tandemhq/tandem/operator/probe"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// FrontDoor is the vantage point of a client coming through the front door.
const FrontDoor = "front-door"

// VantageIn names the vantage point placed in a region.
func VantageIn(region string) string { return "from-" + region }

// ServiceTarget names a region's service path (through its proxy); only
// regions that run a fleet have one.
func ServiceTarget(region string) string { return region + "/service" }

// ProxyTarget names a region's load balancer (its proxy's listener).
func ProxyTarget(region string) string { return region + "/proxy" }

// DatabaseTarget names a region's database (through its endpoint).
func DatabaseTarget(region string) string { return region + "/database" }

// CacheTarget names a region's cache (through its endpoint).
func CacheTarget(region string) string { return region + "/cache" }

// Platform is what the wiring reads from the local platform; both
// *local.Platform and *local.Client satisfy it.
type Platform interface {
	Status(ctx context.Context) (topology.Status, error)
	Faults(ctx context.Context) (local.Faults, error)
}

// Secrets are the database and cache passwords of the platform's user
// "tandem", from secrets.json in its state directory.
type Secrets struct {
	Postgres string `json:"postgres"`
	Redis    string `json:"redis"`
}

// ReadSecrets reads the platform's secrets.json (owner-only).
func ReadSecrets(stateDir string) (Secrets, error) {
	path := filepath.Join(stateDir, "secrets.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Secrets{}, fmt.Errorf("read the platform's credentials: %w; run as the user that started the platform", err)
	}
	var s Secrets
	if err := json.Unmarshal(b, &s); err != nil {
		return Secrets{}, fmt.Errorf("read the platform's credentials from %s: %w", path, err)
	}
	if s.Postgres == "" || s.Redis == "" {
		return Secrets{}, fmt.Errorf("%s lacks the database or cache password", path)
	}
	return s, nil
}

// Request is the routed request that proves a region serves: a GET of
// Path through a proxy, answered with Status. It must be cheap and change
// nothing.
type Request struct {
	Path   string `json:"path"`
	Status int    `json:"status"`
}

// DefaultRequest reads notifications for a claim that does not exist: it
// crosses the proxy, a service and its database, and answers 200.
var DefaultRequest = Request{Path: "/v1/notifications?claimId=00000000-0000-0000-0000-000000000000", Status: 200}

// RequestFor picks the stack's first smoke request that is a GET answered
// with a 2xx status, or DefaultRequest.
func RequestFor(spec *stacks.Spec) Request {
	if spec != nil {
		for _, svc := range spec.Services {
			if s := svc.Smoke; s != nil && s.Method == "GET" && s.Status >= 200 && s.Status < 300 {
				return Request{Path: s.Path, Status: s.Status}
			}
		}
	}
	return DefaultRequest
}

// Plan builds the targets and vantage points for a topology, with the
// region faults applied to the vantage points placed in those regions.
func Plan(st topology.Status, faults local.Faults, secrets Secrets, req Request) ([]probe.Target, []probe.Vantage) {
	owner := map[string]string{} // host:port -> region
	for _, r := range st.Regions {
		for _, a := range []string{hostPort(r.ProxyURL), r.Database.Endpoint, r.Database.Server, r.Cache.Endpoint, r.Cache.Server} {
			if a != "" {
				owner[a] = r.Name
			}
		}
	}
	var targets []probe.Target
	direct := map[string]func(probe.DialFunc) probe.Check{}
	for _, r := range st.Regions {
		if hasFleet(r) && r.ProxyURL != "" {
			targets = append(targets, probe.Target{Name: ServiceTarget(r.Name), Region: r.Name, Kind: "http", Critical: true})
			u := r.ProxyURL + req.Path
			direct[ServiceTarget(r.Name)] = func(d probe.DialFunc) probe.Check {
				return probe.HTTP{URL: u, Status: req.Status, Dial: d}
			}
		}
		if a := hostPort(r.ProxyURL); a != "" {
			targets = append(targets, probe.Target{Name: ProxyTarget(r.Name), Region: r.Name, Kind: "tcp", Critical: true})
			direct[ProxyTarget(r.Name)] = func(d probe.DialFunc) probe.Check { return probe.TCP{Addr: a, Dial: d} }
		}
		if a := r.Database.Endpoint; a != "" {
			targets = append(targets, probe.Target{Name: DatabaseTarget(r.Name), Region: r.Name, Kind: "postgres", Critical: true})
			dsn := pgproc.DSN(a, secrets.Postgres, "postgres")
			direct[DatabaseTarget(r.Name)] = func(d probe.DialFunc) probe.Check { return probe.Postgres{DSN: dsn, Dial: d} }
		}
		if a := r.Cache.Endpoint; a != "" {
			targets = append(targets, probe.Target{Name: CacheTarget(r.Name), Region: r.Name, Kind: "redis"})
			direct[CacheTarget(r.Name)] = func(d probe.DialFunc) probe.Check {
				return probe.Redis{Addr: a, Password: secrets.Redis, Dial: d}
			}
		}
	}

	var vantages []probe.Vantage
	active := st.FrontDoor.ActiveRegion
	if active == "" {
		active = st.ActiveRegion
	}
	if _, ok := direct[ServiceTarget(active)]; ok && st.FrontDoor.URL != "" {
		vantages = append(vantages, probe.Vantage{Name: FrontDoor, Checks: map[string]probe.Check{
			ServiceTarget(active): probe.HTTP{URL: st.FrontDoor.URL + req.Path, Status: req.Status,
				Header: map[string]string{proxy.HeaderFrontDoorRegion: active}},
		}})
	}
	for _, r := range st.Regions {
		dial := placedIn(r.Name, faults.Region(r.Name), owner)
		checks := map[string]probe.Check{}
		for _, t := range targets {
			checks[t.Name] = direct[t.Name](dial)
		}
		vantages = append(vantages, probe.Vantage{Name: VantageIn(r.Name), Checks: checks})
	}
	return targets, vantages
}

func hasFleet(r topology.RegionStatus) bool {
	for _, s := range r.Services {
		for _, c := range s.Colors {
			if c.Tasks > 0 {
				return true
			}
		}
	}
	return false
}

func hostPort(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Host
}

// placedIn is the network of a prober in region: while the region is
// partitioned it reaches nothing that belongs to another region.
func placedIn(region string, f local.RegionFaults, owner map[string]string) probe.DialFunc {
	var d net.Dialer
	if !f.Partitioned {
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if o, ok := owner[addr]; ok && o != region {
			return nil, fmt.Errorf("dial %s: %s is partitioned from %s", addr, region, o)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// Prober probes the local platform, re-reading its topology and faults
// before every round.
type Prober struct {
	plat    Platform
	secrets Secrets
	req     Request
	probe   *probe.Prober
	clock   probe.Clock

	mu         sync.Mutex
	configured bool
}

// New returns a prober of plat with the policy and clock (nil: the system
// clock).
func New(plat Platform, secrets Secrets, req Request, policy probe.Policy, clock probe.Clock) *Prober {
	if clock == nil {
		clock = probe.SystemClock{}
	}
	return &Prober{plat: plat, secrets: secrets, req: req, probe: probe.New(policy, clock), clock: clock}
}

// Policy returns the policy in force.
func (lp *Prober) Policy() probe.Policy { return lp.probe.Policy() }

// Round reads the topology, reconfigures and runs one round. When the
// topology cannot be read, the round runs on the last one read: the probes
// themselves say what is reachable.
func (lp *Prober) Round(ctx context.Context) (probe.Report, error) {
	if err := lp.refresh(ctx); err != nil {
		return probe.Report{}, err
	}
	return lp.probe.Round(ctx)
}

func (lp *Prober) refresh(ctx context.Context) error {
	lp.mu.Lock()
	defer lp.mu.Unlock()
	st, err := lp.plat.Status(ctx)
	if err != nil {
		if lp.configured && ctx.Err() == nil {
			return nil
		}
		return fmt.Errorf("read the platform's topology: %w", err)
	}
	faults, err := lp.plat.Faults(ctx)
	if err != nil && ctx.Err() != nil {
		return err
	}
	targets, vantages := Plan(st, faults, lp.secrets, lp.req)
	if len(targets) == 0 {
		return errors.New("the platform's topology has no regions to probe")
	}
	if err := lp.probe.Configure(targets, vantages); err != nil {
		return err
	}
	lp.configured = true
	return nil
}

// Run probes every policy interval until ctx ends, handing each report to
// each.
func (lp *Prober) Run(ctx context.Context, each func(probe.Report)) error {
	return probe.Every(ctx, lp.clock, lp.Policy().Interval, func(ctx context.Context) error {
		rep, err := lp.Round(ctx)
		if err != nil {
			return err
		}
		each(rep)
		return nil
	})
}
