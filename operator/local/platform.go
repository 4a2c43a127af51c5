// Package local is tandem's embedded local platform: a small real cloud on
// loopback that the operator drives the same way it drives AWS. Per region it
// runs an L7 proxy with blue and green target groups per service (the ALB),
// supervised service processes (ECS tasks), a PostgreSQL server and a
// redis-server behind TCP endpoints that move on failover (the RDS and
// ElastiCache DNS names), and in front of the regions a front door that
// routes to the active one (Route 53 failover). Everything lives under one
// state directory.
package local

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/redisproc"
	"github.com/tandemhq/tandem/operator/local/proxy"
	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/stacks"
)

// ErrAlreadyUp is returned by Up when another platform holds the state
// directory.
var ErrAlreadyUp = errors.New("a platform is already up")

// Config says which stack to run and where.
type Config struct {
	Stack    string
	Spec     *stacks.Spec
	StateDir string
	// BinDir holds the service binaries (eligibility, claims, ...).
	BinDir string
	Logger *slog.Logger
	// Progress receives one human line per step of Up and Down; may be nil.
	Progress io.Writer
}

// Platform is a running local platform.
type Platform struct {
	cfg      Config
	log      *slog.Logger
	lock     *os.File
	secrets  secrets
	started  time.Time
	regions  map[string]*region
	order    []string
	front    *proxy.FrontDoor
	frontURL string
	servers  []*http.Server

	store *state.Bolt

	pgRootOnce sync.Once
	pgRoot     string
	pgRootErr  error

	// haStop ends the in-region watcher; haDone is closed when it has.
	haCtx  context.Context
	haStop context.CancelFunc
	haDone chan struct{}
	haWG   sync.WaitGroup

	mu       sync.Mutex // guards release and region data roles and servers
	release  map[string]FleetSpec
	shutdown chan struct{}
	downOnce sync.Once
}

type secrets struct {
	Postgres string `json:"postgres"`
	Redis    string `json:"redis"`
}

type region struct {
	name   string
	role   string
	router *proxy.Router
	url    string

	pg     *pgproc.Server
	pgRole string
	// fencePosition is the WAL position at which the database was fenced.
	fencePosition string
	dbEnd         *proxy.TCPEndpoint
	redis         *redisproc.Server
	rdRole        string
	cacheEnd      *proxy.TCPEndpoint

	// pgStandby is the database's standby in the region's second zone
	// (database.multiAZ): synchronous while the region holds the primary,
	// a cascading replica of pg otherwise; nil without multiAZ. pgSync
	// says commits on pg wait for it.
	pgStandby *pgproc.Server
	pgSync    bool
	// rdStandby is the cache's in-region replica (cache.replicas).
	rdStandby *redisproc.Server
	// pgRebuilding and rdRebuilding mark a standby being rebuilt.
	pgRebuilding, rdRebuilding bool
	// pgFailovers and rdFailovers are the in-region failovers so far.
	pgFailovers, rdFailovers []ZoneFailover

	// dataMu serializes changes to where the region's data lives:
	// fencing, promotion, reprotection, in-region failover and faults.
	// Lock order: regions in stack order, then the fault book.
	dataMu sync.Mutex

	fleetMu sync.Mutex
	fleets  map[string]map[string]*fleet // service -> color -> fleet
}

// StateLayout names the files of a state directory.
type StateLayout struct{ Dir string }

// Lock is the flock held by the running platform.
func (l StateLayout) Lock() string { return filepath.Join(l.Dir, "platform.lock") }

// Socket is the control API's unix socket (owner-only).
func (l StateLayout) Socket() string { return filepath.Join(l.Dir, "control.sock") }

// Topology is the topology document (the SSM parameter, locally).
func (l StateLayout) Topology() string { return filepath.Join(l.Dir, "topology.json") }

// Pids lists every process the platform started, for cleanup after a crash.
func (l StateLayout) Pids() string { return filepath.Join(l.Dir, "pids.json") }

// Store is the operator state store (the DynamoDB table, locally).
func (l StateLayout) Store() string { return filepath.Join(l.Dir, "operator.db") }

// Logs is the directory of process logs.
func (l StateLayout) Logs() string { return filepath.Join(l.Dir, "logs") }

// Data is the directory of database and cache data.
func (l StateLayout) Data() string { return filepath.Join(l.Dir, "data") }

func (p *Platform) progress(format string, args ...any) {
	if p.cfg.Progress != nil {
		fmt.Fprintf(p.cfg.Progress, format+"\n", args...)
	}
}

func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Up starts the whole platform and returns once every service is healthy
// behind its region's proxy and the front door routes to the primary
// region. On error nothing is left running.
func Up(ctx context.Context, cfg Config) (_ *Platform, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	cfg.StateDir = abs
	lay := StateLayout{abs}
	if err := checkBinaries(cfg); err != nil {
		return nil, err
	}
	if err := CheckStateDir(abs); err != nil {
		return nil, err
	}
	// The directory is searchable by others so that PostgreSQL, running as
	// an unprivileged user, reaches its data; secrets inside are owner-only.
	if err := os.MkdirAll(abs, 0o711); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	_ = os.Chmod(abs, 0o711)
	lock, err := acquireLock(lay)
	if err != nil {
		return nil, err
	}
	p := &Platform{cfg: cfg, log: cfg.Logger, lock: lock, started: time.Now(), regions: map[string]*region{},
		release: map[string]FleetSpec{}, shutdown: make(chan struct{})}
	defer func() {
		if err != nil {
			p.Down(context.WithoutCancel(ctx))
		}
	}()
	killLeftovers(lay)
	for _, d := range []string{lay.Data(), lay.Logs()} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("clear %s: %w", d, err)
		}
	}
	_ = os.Remove(lay.Topology())
	_ = os.Remove(lay.Store())
	if p.store, err = state.OpenBolt(lay.Store()); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(lay.Data(), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(lay.Logs(), 0o700); err != nil {
		return nil, err
	}
	p.secrets = secrets{Postgres: token(16), Redis: token(16)}
	if err := writeJSON(filepath.Join(abs, "secrets.json"), p.secrets, 0o600); err != nil {
		return nil, err
	}

	spec := cfg.Spec
	primary := spec.Primary().Name
	for _, r := range spec.Regions {
		p.order = append(p.order, r.Name)
		p.regions[r.Name] = &region{name: r.Name, role: r.Role, fleets: map[string]map[string]*fleet{}}
	}
	if err := p.startData(ctx, primary); err != nil {
		return nil, err
	}
	if err := p.startRouters(); err != nil {
		return nil, err
	}
	for _, svc := range spec.Services {
		p.release[svc.Name] = FleetSpec{Version: "v1", Count: min(svc.Count, spec.Local.MaxTasks)}
	}
	p.progress("starting services in %s", primary)
	if err := p.ActivateFleets(ctx, primary); err != nil {
		return nil, err
	}
	urls := map[string]string{}
	for _, name := range p.order {
		urls[name] = p.regions[name].url
	}
	p.front = proxy.NewFrontDoor(proxy.FrontDoorOptions{Regions: urls, Active: primary, DNSTTL: spec.Routing.DNSTTL.Duration, Logger: p.log})
	if p.frontURL, err = p.serve("front-door", p.front); err != nil {
		return nil, err
	}
	p.progress("front door %s -> %s", p.frontURL, primary)
	if err := p.writeTopology(ctx); err != nil {
		return nil, err
	}
	p.startZoneWatcher()
	return p, nil
}

func checkBinaries(cfg Config) error {
	for _, svc := range cfg.Spec.Services {
		path := filepath.Join(cfg.BinDir, svc.Name)
		if fi, err := os.Stat(path); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("service binary %s not found or not executable; build the services first (make build) or point --bin-dir at them", path)
		}
	}
	if _, err := pgproc.BinDir(); err != nil {
		return err
	}
	if _, err := redisproc.Binary(); err != nil {
		return err
	}
	return nil
}

func acquireLock(lay StateLayout) (*os.File, error) {
	f, err := os.OpenFile(lay.Lock(), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", lay.Lock(), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := os.ReadFile(lay.Lock())
		f.Close()
		return nil, fmt.Errorf("%w in %s (pid %s); run `tandem down` first, or use another --state-dir", ErrAlreadyUp, lay.Dir, string(pid))
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(fmt.Sprint(os.Getpid())), 0)
	return f, nil
}

// Running reports whether a platform holds the state directory's lock.
func Running(stateDir string) bool {
	f, err := os.OpenFile(StateLayout{stateDir}.Lock(), os.O_RDWR, 0)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		return true
	}
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}

// serve runs h on a fresh loopback port and returns its URL.
func (p *Platform) serve(name string, h http.Handler) (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen for %s: %w", name, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	p.servers = append(p.servers, srv)
	go func() { _ = srv.Serve(l) }()
	return "http://" + l.Addr().String(), nil
}

func (p *Platform) startRouters() error {
	var routes []proxy.ServiceRoute
	for _, svc := range p.cfg.Spec.Services {
		routes = append(routes, proxy.ServiceRoute{Name: svc.Name, PathPrefixes: []string{svc.PathPrefix}, HealthPath: svc.HealthPath})
	}
	for _, name := range p.order {
		r := p.regions[name]
		r.router = proxy.NewRouter(name, routes, proxy.Options{Logger: p.log.With("region", name)})
		r.router.Start(context.Background())
		url, err := p.serve("proxy "+name, r.router)
		if err != nil {
			return err
		}
		r.url = url
		p.progress("proxy %s at %s", name, url)
	}
	return nil
}

// Done is closed when the platform has been asked to shut down (through the
// control API).
func (p *Platform) Done() <-chan struct{} { return p.shutdown }

// RequestShutdown asks the owner of the platform to take it down.
func (p *Platform) RequestShutdown() {
	select {
	case <-p.shutdown:
	default:
		close(p.shutdown)
	}
}

// Down stops everything the platform started: front door, proxies, service
// processes, caches and databases, in that order. It is safe to call twice.
func (p *Platform) Down(ctx context.Context) {
	p.downOnce.Do(func() {
		p.progress("stopping platform")
		// Servers stopping now are not failing: the in-region watcher goes
		// first.
		p.stopZoneWatcher()
		for _, srv := range p.servers {
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			_ = srv.Shutdown(sctx)
			cancel()
			_ = srv.Close()
		}
		var wg sync.WaitGroup
		for _, name := range p.order {
			r := p.regions[name]
			r.fleetMu.Lock()
			for _, colors := range r.fleets {
				for _, f := range colors {
					wg.Add(1)
					go func() { defer wg.Done(); f.stop(10 * time.Second) }()
				}
			}
			r.fleets = map[string]map[string]*fleet{}
			r.fleetMu.Unlock()
		}
		wg.Wait()
		for _, name := range p.order {
			r := p.regions[name]
			if r.router != nil {
				r.router.Close()
			}
			for _, rd := range []*redisproc.Server{r.rdStandby, r.redis} {
				if rd != nil {
					rd.Stop(5 * time.Second)
				}
			}
			// The primary first: a synchronous standby stopped before it
			// would hold its last commits.
			for _, pg := range []*pgproc.Server{r.pg, r.pgStandby} {
				if pg != nil {
					pg.Stop(15 * time.Second)
				}
			}
			for _, e := range []*proxy.TCPEndpoint{r.dbEnd, r.cacheEnd} {
				if e != nil {
					_ = e.Close()
				}
			}
		}
		lay := StateLayout{p.cfg.StateDir}
		killLeftovers(lay)
		removeDataRoot(lay)
		_ = os.Remove(lay.Pids())
		_ = os.Remove(lay.Topology())
		_ = os.Remove(lay.Socket())
		if p.store != nil {
			_ = p.store.Close()
		}
		if p.lock != nil {
			_ = p.lock.Close()
		}
		p.progress("platform stopped")
	})
}

func writeJSON(path string, v any, mode os.FileMode) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// writeTopology records what exists where: the topology document the
// operator reads (SSM on AWS).
func (p *Platform) writeTopology(ctx context.Context) error {
	st, err := p.Status(ctx)
	if err != nil {
		return err
	}
	return writeJSON(StateLayout{p.cfg.StateDir}.Topology(), st, 0o600)
}

// Status reports the platform's state.
func (p *Platform) Status(ctx context.Context) (Status, error) {
	st := Status{Stack: p.cfg.Stack, StateDir: p.cfg.StateDir, PID: os.Getpid(), StartedAt: p.started}
	if p.front != nil {
		active, fenced := p.front.Active()
		st.ActiveRegion = active
		st.FrontDoor = FrontDoor{URL: p.frontURL, ActiveRegion: active, Fenced: fenced}
	}
	for _, name := range p.order {
		r := p.regions[name]
		// Role fields are read under p.mu; servers are asked without it, so
		// a slow database never blocks the platform's other calls.
		p.mu.Lock()
		pg, pgRole, rd, rdRole := r.pg, r.pgRole, r.redis, r.rdRole
		p.mu.Unlock()
		// The region the front door routes to is the primary; the spec's
		// roles are only where the platform starts.
		role := r.role
		if st.ActiveRegion != "" {
			role = stacks.RoleSecondary
			if name == st.ActiveRegion {
				role = stacks.RolePrimary
			}
		}
		rs := RegionStatus{Name: name, Role: role, ProxyURL: r.url}
		if pg != nil {
			rs.Database = DataStatus{Role: pgRole, Endpoint: r.dbEnd.Addr(), Name: pg.Name(), Server: pg.Addr(), PID: pg.Pid(), DataDir: pg.DataDir()}
			if pg.Stopped() && pgRole != RoleFenced {
				rs.Database.Role = RoleDown
			}
			if !pg.Stopped() {
				if pos, err := serverPosition(ctx, pg); err == nil {
					rs.Database.Position = pos
				}
			}
		}
		if rd != nil {
			rs.Cache = DataStatus{Role: rdRole, Endpoint: r.cacheEnd.Addr(), Name: rd.Name(), Server: rd.Addr(), PID: rd.Pid()}
			if rd.Stopped() {
				rs.Cache.Role = RoleDown
			}
		}
		p.zoneStatus(ctx, r, &rs)
		for _, svc := range p.cfg.Spec.Services {
			ss := ServiceStatus{Name: svc.Name, Colors: map[string]ColorStatus{}}
			if r.router != nil {
				w, err := r.router.Weights(svc.Name)
				if err == nil {
					ss.Weights = Weights{Blue: w.Blue, Green: w.Green}
				}
			}
			r.fleetMu.Lock()
			for color, f := range r.fleets[svc.Name] {
				h := r.router.Health(svc.Name, proxy.Color(color))
				ss.Colors[color] = ColorStatus{Version: f.spec.Version, Tasks: len(f.tasks), Healthy: h.Healthy}
			}
			r.fleetMu.Unlock()
			rs.Services = append(rs.Services, ss)
		}
		st.Regions = append(st.Regions, rs)
	}
	return st, nil
}

func (p *Platform) region(name string) (*region, error) {
	r, ok := p.regions[name]
	if !ok {
		return nil, fmt.Errorf("unknown region %q; this stack has %v", name, p.order)
	}
	return r, nil
}

func (p *Platform) service(name string) (stacks.Service, error) {
	svc, ok := p.cfg.Spec.Service(name)
	if !ok {
		return stacks.Service{}, fmt.Errorf("unknown service %q; this stack has %v", name, p.cfg.Spec.ServiceNames())
	}
	return svc, nil
}

// Cleanup kills processes recorded by a platform of stateDir that is no
// longer running (it was killed before it could stop them) and returns how
// many it killed. It does nothing while a platform holds the directory.
func Cleanup(stateDir string) int {
	if Running(stateDir) {
		return 0
	}
	lay := StateLayout{stateDir}
	n := killLeftovers(lay)
	_ = os.Remove(lay.Socket())
	removeDataRoot(lay)
	return n
}

// removeDataRoot removes PostgreSQL data kept outside the state directory
// (see postgresRoot); data under the state directory stays for a
// post-mortem until the next up.
func removeDataRoot(lay StateLayout) {
	if root, err := os.ReadFile(filepath.Join(lay.Dir, "postgres-data-root")); err == nil {
		_ = os.RemoveAll(strings.TrimSpace(string(root)))
		_ = os.Remove(filepath.Join(lay.Dir, "postgres-data-root"))
	}
}

// CheckStateDir says whether dir can hold a platform: its control socket
// path must fit the 107 bytes unix sockets allow.
func CheckStateDir(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if dir == "" {
		return errors.New("the state directory is empty; pass --state-dir DIR")
	}
	if n := len(StateLayout{abs}.Socket()); n > 107 {
		return fmt.Errorf("state directory %s is too deep: its control socket path would be %d bytes, over the 107 that unix sockets allow; use a shorter --state-dir", abs, n)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return fmt.Errorf("state directory %s is a file, not a directory; pass another --state-dir", abs)
	}
	return nil
}

// Get reads an item of the operator state store the platform hosts.
func (p *Platform) Get(ctx context.Context, table, key string) (state.Item, error) {
	return p.store.Get(ctx, table, key)
}

// Put writes an item of the state store (compare-and-swap on version).
func (p *Platform) Put(ctx context.Context, table, key string, value []byte, expect int64) (int64, error) {
	return p.store.Put(ctx, table, key, value, expect)
}

// List lists items of the state store by key prefix.
func (p *Platform) List(ctx context.Context, table, prefix string) ([]state.Item, error) {
	return p.store.List(ctx, table, prefix)
}
