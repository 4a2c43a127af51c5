package local

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/redisproc"
)

// Fault injection, for rehearsing outages on the local platform: a region
// killed outright, a region cut off from the others, a slow database. Each
// fault acts on the real processes and endpoints, so the prober, the
// services and a failover meet the same symptoms as they would in a cloud
// region: refused and dropped connections, dead servers, stopped
// replication, latency.

// MaxDatabaseDelay bounds the latency slow-db adds.
const MaxDatabaseDelay = time.Minute

// RegionFaults is the injected fault state of one region.
type RegionFaults struct {
	Region string `json:"region"`
	// Killed is set by kill-region and stays set (heal does not clear it)
	// until the region's database server is rebuilt, e.g. by reprotect.
	Killed bool `json:"killed,omitempty"`
	// Partitioned is set by partition until heal.
	Partitioned bool `json:"partitioned,omitempty"`
	// DatabaseDelay is the latency slow-db added to the database endpoint.
	DatabaseDelay time.Duration `json:"databaseDelay,omitempty"`
	// ProxyDelay is the latency slow-proxy added in front of the proxy.
	ProxyDelay time.Duration `json:"proxyDelay,omitempty"`
}

// Faults is the platform's injected faults, one entry per region.
type Faults struct {
	Regions []RegionFaults `json:"regions"`
}

// Region returns the faults of one region (none for an unknown one).
func (f Faults) Region(name string) RegionFaults {
	for _, r := range f.Regions {
		if r.Region == name {
			return r
		}
	}
	return RegionFaults{Region: name}
}

// FaultReport says what a fault call did.
type FaultReport struct {
	Fault   string   `json:"fault"`
	Region  string   `json:"region,omitempty"`
	Actions []string `json:"actions"`
	Notes   []string `json:"notes,omitempty"`
}

func (r *FaultReport) did(format string, args ...any) {
	r.Actions = append(r.Actions, fmt.Sprintf(format, args...))
}

func (r *FaultReport) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// faultBooks holds each platform's fault state. It is kept beside the
// platform rather than in it so that fault injection stays out of the
// platform's normal paths; the task supervisor needs no flag of its own
// either, since a killed task is marked as stopping (see task.kill).
var faultBooks sync.Map // *Platform -> *faultBook

type faultBook struct {
	mu      sync.Mutex // serializes fault calls
	regions map[string]*regionFaultState
}

type regionFaultState struct {
	// killedDB is the database server kill-region ended; the region counts
	// as killed while it is still the region's server.
	killedDB *pgproc.Server
	cut      *partitionCut
}

// partitionCut remembers what partition changed, for heal to put back.
type partitionCut struct {
	dbTarget, cacheTarget string
	dbRole, cacheRole     string
	proxyAddr             string
	pg                    []pgCut
	redis                 []redisCut
}

// pgCut is a replica whose upstream connection string partition emptied.
type pgCut struct {
	region   string
	server   *pgproc.Server
	conninfo string
}

// redisCut is a replica whose primary password partition spoiled.
type redisCut struct {
	region string
	server *redisproc.Server
}

func (p *Platform) faults() *faultBook {
	b, _ := faultBooks.LoadOrStore(p, &faultBook{regions: map[string]*regionFaultState{}})
	return b.(*faultBook)
}

func (b *faultBook) region(name string) *regionFaultState {
	s := b.regions[name]
	if s == nil {
		s = &regionFaultState{}
		b.regions[name] = s
	}
	return s
}

// lockRegions takes every region's dataMu, in stack order, and returns
// the function that releases them.
func (p *Platform) lockRegions() func() {
	for _, name := range p.order {
		p.regions[name].dataMu.Lock()
	}
	return func() {
		for i := len(p.order) - 1; i >= 0; i-- {
			p.regions[p.order[i]].dataMu.Unlock()
		}
	}
}

func (s *regionFaultState) killed(p *Platform, r *region) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return s.killedDB != nil && r.pg == s.killedDB
}

// Faults reports the injected faults of every region.
func (p *Platform) Faults(ctx context.Context) (Faults, error) {
	b := p.faults()
	b.mu.Lock()
	defer b.mu.Unlock()
	var f Faults
	for _, name := range p.order {
		s := b.region(name)
		f.Regions = append(f.Regions, RegionFaults{Region: name, Killed: s.killed(p, p.regions[name]), Partitioned: s.cut != nil,
			DatabaseDelay: p.regions[name].dbEnd.Delay(), ProxyDelay: p.regions[name].router.Delay()})
	}
	return f, nil
}

// KillRegion is a region outage: every process of the region — its service
// tasks, its PostgreSQL and its redis-server — gets SIGKILL, and none is
// restarted (the task supervisor treats the tasks as stopped: a region
// outage is not a task crash). Its proxy keeps listening with no live
// target, so it answers 503; its endpoints lead to dead servers. Heal does
// not undo it.
func (p *Platform) KillRegion(ctx context.Context, regionName string) (FaultReport, error) {
	r, err := p.region(regionName)
	if err != nil {
		return FaultReport{}, err
	}
	b := p.faults()
	// Lock order: the region's dataMu, then the fault book.
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.region(regionName)
	rep := FaultReport{Fault: "kill-region", Region: regionName}
	if s.killed(p, r) {
		rep.note("%s was killed already; nothing left to kill", regionName)
		return rep, nil
	}
	p.mu.Lock()
	s.killedDB = r.pg
	p.mu.Unlock()

	r.fleetMu.Lock()
	var tasks []*task
	var fleets []string
	for _, svc := range sortedKeys(r.fleets) {
		for _, color := range sortedKeys(r.fleets[svc]) {
			f := r.fleets[svc][color]
			tasks = append(tasks, f.tasks...)
			fleets = append(fleets, fmt.Sprintf("%s %s ×%d", svc, color, len(f.tasks)))
		}
	}
	r.fleetMu.Unlock()
	var pids []string
	for _, t := range tasks {
		if pid := t.kill(); pid > 0 {
			pids = append(pids, fmt.Sprint(pid))
		}
	}
	for _, t := range tasks {
		select {
		case <-t.done:
		case <-time.After(10 * time.Second):
			rep.note("task %s: its supervisor had not noticed the kill after 10s", t.name)
		}
	}
	if len(tasks) == 0 {
		rep.did("no service tasks to kill (%s runs no fleet)", regionName)
	} else {
		rep.did("SIGKILL %d service tasks (%s; pids %s); the supervisor leaves them dead", len(pids), strings.Join(fleets, ", "), strings.Join(pids, " "))
	}

	p.mu.Lock()
	pgRole, rdRole := r.pgRole, r.rdRole
	pgSb, rdSb := r.pgStandby, r.rdStandby
	p.mu.Unlock()
	// Standbys first: the region's in-region watcher must find nothing to
	// fail over to (it also ignores a killed region).
	if pgSb != nil && !pgSb.Stopped() {
		pid := pgSb.Pid()
		pgSb.Kill()
		rep.did("SIGKILL PostgreSQL standby %s (pid %d)", pgSb.Name(), pid)
	}
	if rdSb != nil && !rdSb.Stopped() {
		pid := rdSb.Pid()
		rdSb.Kill()
		rep.did("SIGKILL redis-server replica %s (pid %d)", rdSb.Name(), pid)
	}
	if r.pg != nil && !r.pg.Stopped() {
		pid := r.pg.Pid()
		r.pg.Kill()
		rep.did("SIGKILL PostgreSQL (%s, pid %d) and its backends", pgRole, pid)
	} else {
		rep.did("PostgreSQL was not running")
	}
	if r.redis != nil && !r.redis.Stopped() {
		pid := r.redis.Pid()
		r.redis.Kill()
		rep.did("SIGKILL redis-server (%s, pid %d)", rdRole, pid)
	} else {
		rep.did("redis-server was not running")
	}
	rep.did("proxy %s has no live target left: it answers 503; endpoints %s (database) and %s (cache) lead to dead servers",
		r.url, r.dbEnd.Addr(), r.cacheEnd.Addr())
	rep.note("a killed region stays killed: heal does not restart it; rebuild it with `tandem reprotect %s` (after failing over, if it held the primary)", regionName)
	return rep, nil
}

// kill ends the task with SIGKILL and ends its supervision, which sees the
// task as stopping and so does not restart it. It returns the pid killed
// (0 when there was no process).
func (t *task) kill() int {
	t.mu.Lock()
	t.stopping = true
	proc := t.proc
	t.mu.Unlock()
	if proc == nil || proc.Process == nil {
		return 0
	}
	// Signal knows whether the process was reaped already (its pid may be
	// someone else's by now); only a live one's group is killed.
	if err := proc.Process.Signal(syscall.SIGKILL); err != nil {
		return 0
	}
	pid := proc.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	return pid
}

// Partition cuts a region off from the others and from the front door
// while its processes keep running: its proxy stops listening (the front
// door's connections are refused), its database and cache endpoints refuse
// connections and drop the ones they carry, and replication between it and
// the other regions stops (a replica's upstream connection string is
// emptied, a redis replica's primary password spoiled). Heal undoes it.
func (p *Platform) Partition(ctx context.Context, regionName string) (FaultReport, error) {
	r, err := p.region(regionName)
	if err != nil {
		return FaultReport{}, err
	}
	b := p.faults()
	// Lock order: every region's dataMu, then the fault book.
	defer p.lockRegions()()
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.region(regionName)
	rep := FaultReport{Fault: "partition", Region: regionName}
	switch {
	case s.cut != nil:
		rep.note("%s is partitioned already", regionName)
		return rep, nil
	case s.killed(p, r):
		rep.note("%s is killed: nothing in it answers anyway, so a partition changes nothing", regionName)
		return rep, nil
	}
	cut := &partitionCut{}
	p.mu.Lock()
	cut.dbRole, cut.cacheRole = r.pgRole, r.rdRole
	p.mu.Unlock()

	// Replication first, while the endpoints still lead where the replicas
	// say they follow.
	var errs []error
	pgCuts, err := p.cutPostgres(ctx, r, &rep)
	cut.pg = pgCuts
	errs = append(errs, err)
	redisCuts, err := p.cutRedis(ctx, r, &rep)
	cut.redis = redisCuts
	errs = append(errs, err)

	cut.dbTarget, cut.cacheTarget = r.dbEnd.Target(), r.cacheEnd.Target()
	r.dbEnd.SetTarget("")
	r.dbEnd.Disconnect()
	r.cacheEnd.SetTarget("")
	r.cacheEnd.Disconnect()
	rep.did("database endpoint %s and cache endpoint %s refuse connections; the ones they carried are dropped", r.dbEnd.Addr(), r.cacheEnd.Addr())

	cut.proxyAddr = strings.TrimPrefix(r.url, "http://")
	if srv := p.proxyServer(r); srv != nil {
		_ = srv.Close()
		rep.did("proxy %s stopped listening: the front door's connections to %s are refused", r.url, regionName)
	}
	s.cut = cut
	rep.note("processes in %s keep running; `tandem fault heal` reconnects it", regionName)
	return rep, errors.Join(errs...)
}

// proxyServer finds the HTTP server in front of the region's router.
func (p *Platform) proxyServer(r *region) *http.Server {
	for i := len(p.servers) - 1; i >= 0; i-- {
		if p.servers[i].Handler == http.Handler(r.router) {
			return p.servers[i]
		}
	}
	return nil
}

// cutPostgres stops every PostgreSQL replica that streams from the region,
// or that is in the region, from streaming.
func (p *Platform) cutPostgres(ctx context.Context, r *region, rep *FaultReport) ([]pgCut, error) {
	var cuts []pgCut
	var errs []error
	for _, name := range p.order {
		x := p.regions[name]
		if x.pg == nil || x.pg.Stopped() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := func() error {
			conn, err := x.pg.Connect(cctx, "postgres")
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			var recovering bool
			var conninfo string
			if err := conn.QueryRow(cctx, "SELECT pg_is_in_recovery(), current_setting('primary_conninfo')").Scan(&recovering, &conninfo); err != nil {
				return err
			}
			upstream := conninfoAddr(conninfo)
			if !recovering || upstream == "" || (x != r && upstream != r.pg.Addr() && upstream != r.dbEnd.Addr()) {
				return nil
			}
			for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = ''", "SELECT pg_reload_conf()"} {
				if _, err := conn.Exec(cctx, q); err != nil {
					return err
				}
			}
			cuts = append(cuts, pgCut{region: name, server: x.pg, conninfo: conninfo})
			// The startup process ends the WAL receiver on reload; wait for
			// it, so that the partition is in force when this returns.
			for {
				var receiving bool
				if err := conn.QueryRow(cctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver)").Scan(&receiving); err != nil {
					return err
				}
				if !receiving {
					break
				}
				select {
				case <-cctx.Done():
					return fmt.Errorf("its WAL receiver still runs: %w", cctx.Err())
				case <-time.After(50 * time.Millisecond):
				}
			}
			rep.did("PostgreSQL replica in %s stopped streaming from %s", name, p.regionOfAddr(upstream))
			return nil
		}()
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("cut PostgreSQL replication of %s: %w", name, err))
		}
	}
	return cuts, errors.Join(errs...)
}

// cutRedis stops every redis replica that follows the region, or that is
// in the region, from replicating: its primary password is spoiled and its
// link dropped, so it keeps retrying and failing, and its role stays
// replica.
func (p *Platform) cutRedis(ctx context.Context, r *region, rep *FaultReport) ([]redisCut, error) {
	var cuts []redisCut
	var errs []error
	for _, name := range p.order {
		x := p.regions[name]
		if x.redis == nil || x.redis.Stopped() {
			continue
		}
		err := func() error {
			c := x.redis.Client(0)
			defer c.Close()
			info, err := c.Info(ctx, "replication").Result()
			if err != nil {
				return err
			}
			if infoField(info, "role") != "slave" {
				return nil
			}
			upstream := infoField(info, "master_host") + ":" + infoField(info, "master_port")
			if x != r && upstream != r.redis.Addr() && upstream != r.cacheEnd.Addr() {
				return nil
			}
			if err := c.ConfigSet(ctx, "masterauth", "partitioned-"+token(8)).Err(); err != nil {
				return err
			}
			if err := c.Do(ctx, "CLIENT", "KILL", "TYPE", "master").Err(); err != nil {
				return err
			}
			cuts = append(cuts, redisCut{region: name, server: x.redis})
			rep.did("redis replica in %s stopped replicating from %s", name, p.regionOfAddr(upstream))
			return nil
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("cut redis replication of %s: %w", name, err))
		}
	}
	return cuts, errors.Join(errs...)
}

// regionOfAddr names the region whose server or endpoint listens at addr.
func (p *Platform) regionOfAddr(addr string) string {
	for _, name := range p.order {
		x := p.regions[name]
		for _, a := range []string{x.dbEnd.Addr(), x.cacheEnd.Addr()} {
			if a == addr {
				return name
			}
		}
		for _, pg := range []*pgproc.Server{x.pg, x.pgStandby} {
			if pg != nil && pg.Addr() == addr {
				return name
			}
		}
		for _, rd := range []*redisproc.Server{x.redis, x.rdStandby} {
			if rd != nil && rd.Addr() == addr {
				return name
			}
		}
	}
	return addr
}

// conninfoAddr returns host:port of a libpq key=value connection string.
func conninfoAddr(conninfo string) string {
	fields := map[string]string{}
	rest := strings.TrimSpace(conninfo)
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		key = strings.TrimSpace(key)
		after = strings.TrimLeft(after, " ")
		var val string
		if strings.HasPrefix(after, "'") {
			var b strings.Builder
			i := 1
			for ; i < len(after); i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
					b.WriteByte(after[i])
					continue
				}
				if after[i] == '\'' {
					break
				}
				b.WriteByte(after[i])
			}
			val, rest = b.String(), after[min(i+1, len(after)):]
		} else {
			val, rest, _ = strings.Cut(after, " ")
		}
		fields[key] = val
		rest = strings.TrimSpace(rest)
	}
	if fields["host"] == "" || fields["port"] == "" {
		return ""
	}
	return net.JoinHostPort(fields["host"], fields["port"])
}

// SlowDatabase adds latency to every answer the region's database endpoint
// passes on, on current connections too (a slow network between the
// services and the database). Zero removes it; heal removes it too.
func (p *Platform) SlowDatabase(ctx context.Context, regionName string, delay time.Duration) (FaultReport, error) {
	return p.slow(regionName, "slow-db", delay, func(r *region) {
		r.dbEnd.SetDelay(delay)
	}, func(r *region) string {
		if delay == 0 {
			return fmt.Sprintf("database endpoint %s of %s passes answers on without delay again", r.dbEnd.Addr(), regionName)
		}
		return fmt.Sprintf("database endpoint %s of %s holds every answer back by %s, on open connections too", r.dbEnd.Addr(), regionName, delay)
	})
}

// SlowProxy holds every request to the region's proxy back before it is
// routed (a slow network in front of the load balancer): the front door
// and anyone calling the region directly wait, while the services, their
// health checks and the database are untouched. Zero removes it; heal
// removes it too.
func (p *Platform) SlowProxy(ctx context.Context, regionName string, delay time.Duration) (FaultReport, error) {
	return p.slow(regionName, "slow-proxy", delay, func(r *region) {
		r.router.SetDelay(delay)
	}, func(r *region) string {
		if delay == 0 {
			return fmt.Sprintf("proxy %s of %s routes requests without delay again", r.url, regionName)
		}
		return fmt.Sprintf("proxy %s of %s holds every request back by %s before routing it", r.url, regionName, delay)
	})
}

func (p *Platform) slow(regionName, fault string, delay time.Duration, apply func(*region), say func(*region) string) (FaultReport, error) {
	r, err := p.region(regionName)
	if err != nil {
		return FaultReport{}, err
	}
	if delay < 0 || delay > MaxDatabaseDelay {
		return FaultReport{}, fmt.Errorf("%s delay %s is out of range; use 0 (none) to %s", fault, delay, MaxDatabaseDelay)
	}
	b := p.faults()
	b.mu.Lock()
	defer b.mu.Unlock()
	apply(r)
	rep := FaultReport{Fault: fault, Region: regionName}
	rep.did("%s", say(r))
	return rep, nil
}

// Heal undoes every partition and every database and proxy delay. A killed region stays
// killed, and heal says so.
func (p *Platform) Heal(ctx context.Context) (FaultReport, error) {
	b := p.faults()
	// Lock order: every region's dataMu, then the fault book.
	defer p.lockRegions()()
	b.mu.Lock()
	defer b.mu.Unlock()
	rep := FaultReport{Fault: "heal"}
	var errs []error
	for _, name := range p.order {
		r := p.regions[name]
		s := b.region(name)
		if s.cut != nil {
			if err := p.healPartition(ctx, r, s, &rep); err != nil {
				errs = append(errs, err)
			} else {
				s.cut = nil
			}
		}
		if r.dbEnd.Delay() > 0 {
			rep.did("database endpoint of %s no longer delays answers (was %s)", name, r.dbEnd.Delay())
			r.dbEnd.SetDelay(0)
		}
		if r.router.Delay() > 0 {
			rep.did("proxy of %s no longer delays requests (was %s)", name, r.router.Delay())
			r.router.SetDelay(0)
		}
		if s.killed(p, r) {
			rep.note("%s stays killed: heal does not restart its processes; rebuild it with `tandem reprotect %s` (after failing over, if it held the primary)", name, name)
		}
	}
	if len(rep.Actions) == 0 && len(errs) == 0 {
		rep.note("no partition or delay to heal")
	}
	return rep, errors.Join(errs...)
}

// healPartition restores replication, endpoints and the proxy of a
// partitioned region — each only where nothing has changed it since (a
// failover during the partition fences and promotes on its own terms).
func (p *Platform) healPartition(ctx context.Context, r *region, s *regionFaultState, rep *FaultReport) error {
	cut := s.cut
	var errs []error
	var pgLeft []pgCut
	for _, c := range cut.pg {
		x := p.regions[c.region]
		if x.pg != c.server || c.server.Stopped() {
			rep.note("PostgreSQL in %s was replaced or stopped during the partition; its replication was left as it is", c.region)
			continue
		}
		err := func() error {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			conn, err := c.server.Connect(cctx, "postgres")
			if err != nil {
				return err
			}
			defer conn.Close(ctx)
			for _, q := range []string{"ALTER SYSTEM SET primary_conninfo = " + quoteLiteral(c.conninfo), "SELECT pg_reload_conf()"} {
				if _, err := conn.Exec(cctx, q); err != nil {
					return err
				}
			}
			return nil
		}()
		if err != nil {
			errs = append(errs, fmt.Errorf("restore PostgreSQL replication of %s: %w", c.region, err))
			pgLeft = append(pgLeft, c)
			continue
		}
		rep.did("PostgreSQL replica in %s streams from %s again", c.region, p.regionOfAddr(conninfoAddr(c.conninfo)))
	}
	cut.pg = pgLeft
	var redisLeft []redisCut
	for _, c := range cut.redis {
		x := p.regions[c.region]
		if x.redis != c.server || c.server.Stopped() {
			rep.note("redis in %s was replaced or stopped during the partition; its replication was left as it is", c.region)
			continue
		}
		rc := c.server.Client(0)
		err := rc.ConfigSet(ctx, "masterauth", p.secrets.Redis).Err()
		rc.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("restore redis replication of %s: %w", c.region, err))
			redisLeft = append(redisLeft, c)
			continue
		}
		rep.did("redis replica in %s replicates again", c.region)
	}
	cut.redis = redisLeft

	if s.killed(p, r) {
		rep.note("%s was killed while partitioned: its endpoints and proxy were left as they are", r.name)
		return errors.Join(errs...)
	}
	p.mu.Lock()
	pgRole, rdRole := r.pgRole, r.rdRole
	p.mu.Unlock()
	switch {
	case cut.dbTarget == "" || r.dbEnd.Target() != "":
		// Fenced before the partition, or someone pointed it somewhere since.
	case pgRole != cut.dbRole || r.pg == nil || r.pg.Addr() != cut.dbTarget || r.pg.Stopped():
		rep.note("database endpoint of %s left refusing: its database changed during the partition (%s, was %s)", r.name, pgRole, cut.dbRole)
	default:
		r.dbEnd.SetTarget(cut.dbTarget)
		rep.did("database endpoint %s of %s accepts connections again", r.dbEnd.Addr(), r.name)
	}
	switch {
	case cut.cacheTarget == "" || r.cacheEnd.Target() != "":
	case rdRole != cut.cacheRole || r.redis == nil || r.redis.Addr() != cut.cacheTarget || r.redis.Stopped():
		rep.note("cache endpoint of %s left refusing: its cache changed during the partition (%s, was %s)", r.name, rdRole, cut.cacheRole)
	default:
		r.cacheEnd.SetTarget(cut.cacheTarget)
		rep.did("cache endpoint %s of %s accepts connections again", r.cacheEnd.Addr(), r.name)
	}
	if cut.proxyAddr != "" {
		l, err := net.Listen("tcp", cut.proxyAddr)
		if err != nil {
			errs = append(errs, fmt.Errorf("reopen the proxy of %s on %s: %w", r.name, cut.proxyAddr, err))
		} else {
			srv := &http.Server{Handler: r.router, ReadHeaderTimeout: 10 * time.Second}
			p.servers = append(p.servers, srv)
			go func() { _ = srv.Serve(l) }()
			cut.proxyAddr = ""
			rep.did("proxy %s listens again", r.url)
		}
	}
	return errors.Join(errs...)
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
