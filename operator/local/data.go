package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/procutil"
	"github.com/tandemhq/tandem/internal/redisproc"
	"github.com/tandemhq/tandem/operator/local/proxy"
	"github.com/tandemhq/tandem/operator/topology"
)

func (p *Platform) logFile(name string) (*os.File, error) {
	return os.OpenFile(filepath.Join(StateLayout{p.cfg.StateDir}.Logs(), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
}

// Zones of a region: the first server of a database or cache runs in the
// first, its in-region standby in the second (locally a zone is only a
// name: both run on loopback).
const (
	zone1 = "az1"
	zone2 = "az2"
)

// newPGNode describes the region's PostgreSQL server in zone.
func (p *Platform) newPGNode(r *region, zone string) (*pgproc.Server, error) {
	pgRoot, err := p.postgresRoot()
	if err != nil {
		return nil, err
	}
	port, err := procutil.FreePort()
	if err != nil {
		return nil, err
	}
	name := r.name + "-" + zone
	logf, err := p.logFile("postgres-" + name)
	if err != nil {
		return nil, err
	}
	_ = os.Chmod(logf.Name(), 0o600)
	return pgproc.New(pgproc.Options{Name: name, DataDir: filepath.Join(pgRoot, "postgres-"+name), Port: port,
		Password: p.secrets.Postgres, Log: logf, Durable: true})
}

// newRedisNode describes the region's redis-server in zone, a replica of
// replicaOf unless that is "".
func (p *Platform) newRedisNode(r *region, zone, replicaOf string) (*redisproc.Server, error) {
	port, err := procutil.FreePort()
	if err != nil {
		return nil, err
	}
	name := r.name + "-" + zone
	logf, err := p.logFile("redis-" + name)
	if err != nil {
		return nil, err
	}
	return redisproc.New(redisproc.Options{Name: name, Dir: filepath.Join(StateLayout{p.cfg.StateDir}.Data(), "redis-"+name), Port: port,
		Password: p.secrets.Redis, ReplicaOf: replicaOf, Durable: true, Log: logf}), nil
}

// startData brings up the primary region's PostgreSQL and Redis, then a
// streaming replica of each in every other region, each behind its
// region's endpoints. With database.multiAZ every region's database also
// has a standby in its second zone — synchronous in the primary region, a
// cascading replica elsewhere — and with cache.replicas every region's
// redis has an in-region replica.
func (p *Platform) startData(ctx context.Context, primary string) error {
	multiAZ := p.cfg.Spec.Database.MultiAZ
	cacheReplica := p.cfg.Spec.Cache.Replicas > 0
	if p.cfg.Spec.Cache.Replicas > 1 {
		p.progress("cache.replicas is %d: the local platform runs one in-region replica per region", p.cfg.Spec.Cache.Replicas)
	}
	startPG := func(r *region, zone, from string) (*pgproc.Server, error) {
		pg, err := p.newPGNode(r, zone)
		if err != nil {
			return nil, err
		}
		if from == "" {
			p.progress("postgres %s: initdb and start (primary)", pg.Name())
			if err := pg.Init(ctx); err != nil {
				return nil, err
			}
		} else {
			p.progress("postgres %s: base backup from %s and start (streaming replica)", pg.Name(), p.nodeName(from))
			if err := pg.BaseBackupFrom(ctx, from, p.secrets.Postgres); err != nil {
				return nil, err
			}
		}
		if err := pg.Start(ctx); err != nil {
			return nil, err
		}
		p.track("postgres", pg.Pid())
		return pg, nil
	}
	startRedis := func(r *region, zone, replicaOf string) (*redisproc.Server, error) {
		rd, err := p.newRedisNode(r, zone, replicaOf)
		if err != nil {
			return nil, err
		}
		if replicaOf == "" {
			p.progress("redis %s: start (primary)", rd.Name())
		} else {
			p.progress("redis %s: start (replica of %s)", rd.Name(), p.nodeName(replicaOf))
		}
		if err := rd.Start(ctx); err != nil {
			return nil, err
		}
		p.track("redis-server", rd.Pid())
		return rd, nil
	}

	pr := p.regions[primary]
	pg, err := startPG(pr, zone1, "")
	if err != nil {
		return err
	}
	pr.pg, pr.pgRole = pg, RolePrimary
	for _, svc := range p.cfg.Spec.Services {
		if svc.Database {
			if err := pg.CreateDatabase(ctx, svc.Name); err != nil {
				return err
			}
		}
	}
	rd, err := startRedis(pr, zone1, "")
	if err != nil {
		return err
	}
	pr.redis, pr.rdRole = rd, RolePrimary
	for _, name := range p.order {
		if name == primary {
			continue
		}
		r := p.regions[name]
		if r.pg, err = startPG(r, zone1, pg.Addr()); err != nil {
			return err
		}
		r.pgRole = RoleReplica
		if r.redis, err = startRedis(r, zone1, rd.Addr()); err != nil {
			return err
		}
		r.rdRole = RoleReplica
	}
	for _, name := range p.order {
		r := p.regions[name]
		if multiAZ {
			if r.pgStandby, err = startPG(r, zone2, r.pg.Addr()); err != nil {
				return err
			}
		}
		if cacheReplica {
			if r.rdStandby, err = startRedis(r, zone2, r.redis.Addr()); err != nil {
				return err
			}
		}
	}
	if multiAZ {
		if err := p.enableSync(ctx, pr); err != nil {
			return err
		}
		p.progress("postgres %s: commits wait for the synchronous standby %s", pg.Name(), pr.pgStandby.Name())
	}
	for _, name := range p.order {
		r := p.regions[name]
		if r.dbEnd, err = proxy.ListenTCPEndpoint("db-"+name, "127.0.0.1:0", r.pg.Addr()); err != nil {
			return err
		}
		if r.cacheEnd, err = proxy.ListenTCPEndpoint("cache-"+name, "127.0.0.1:0", r.redis.Addr()); err != nil {
			return err
		}
	}
	return nil
}

// nodeName names the server listening at addr ("local-a-az1"), or returns
// addr.
func (p *Platform) nodeName(addr string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range p.order {
		r := p.regions[name]
		for _, pg := range []*pgproc.Server{r.pg, r.pgStandby} {
			if pg != nil && pg.Addr() == addr {
				return pg.Name()
			}
		}
		for _, rd := range []*redisproc.Server{r.redis, r.rdStandby} {
			if rd != nil && rd.Addr() == addr {
				return rd.Name()
			}
		}
	}
	return addr
}

// postgresRoot is where PostgreSQL data directories go: under the state
// directory when the unprivileged database user can reach it, otherwise
// (a state directory inside a private home directory, as root) in a
// directory of its own in the system temporary directory, named after the
// state directory.
func (p *Platform) postgresRoot() (string, error) {
	p.pgRootOnce.Do(func() { p.pgRoot, p.pgRootErr = p.choosePostgresRoot() })
	return p.pgRoot, p.pgRootErr
}

func (p *Platform) choosePostgresRoot() (string, error) {
	lay := StateLayout{p.cfg.StateDir}
	acct, err := procutil.Unprivileged()
	if err != nil {
		return "", err
	}
	if acct.Reachable(filepath.Join(lay.Data(), "postgres")) {
		return lay.Data(), nil
	}
	sum := sha256.Sum256([]byte(p.cfg.StateDir))
	dir := filepath.Join(os.TempDir(), "tandem-pg-"+hex.EncodeToString(sum[:6]))
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", fmt.Errorf("create PostgreSQL data root %s: %w", dir, err)
	}
	if !acct.Reachable(filepath.Join(dir, "postgres")) {
		return "", fmt.Errorf("PostgreSQL runs as user %q, which can reach neither %s nor %s; use a --state-dir it can reach", acct.Name, lay.Data(), dir)
	}
	if err := os.WriteFile(filepath.Join(lay.Dir, "postgres-data-root"), []byte(dir+"\n"), 0o600); err != nil {
		return "", err
	}
	return dir, nil
}

func (p *Platform) walPosition(ctx context.Context, r *region) (string, error) {
	p.mu.Lock()
	pg := r.pg
	p.mu.Unlock()
	return serverPosition(ctx, pg)
}

func serverPosition(ctx context.Context, pg *pgproc.Server) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pg.Connect(ctx, "postgres")
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var pos string
	err = conn.QueryRow(ctx, `SELECT CASE WHEN pg_is_in_recovery()
		THEN coalesce(pg_last_wal_replay_lsn()::text, '0/0') ELSE pg_current_wal_lsn()::text END`).Scan(&pos)
	return pos, err
}

// DatabasePosition returns the region's WAL position: the current write
// position of a primary, the replayed position of a replica.
func (p *Platform) DatabasePosition(ctx context.Context, regionName string) (string, error) {
	r, err := p.region(regionName)
	if err != nil {
		return "", err
	}
	if pg := p.zonePrimary(r); pg == nil || pg.Stopped() {
		return "", fmt.Errorf("database of %s is not running", regionName)
	}
	return p.walPosition(ctx, r)
}

// FenceDatabase stops the region's database taking writes: new
// transactions are read-only, client sessions are ended, the endpoint stops
// accepting connections and the server is shut down. It returns the WAL
// position at the fence, which a replica must reach before promotion for a
// zero-loss switchover.
func (p *Platform) FenceDatabase(ctx context.Context, regionName string) (string, error) {
	r, err := p.region(regionName)
	if err != nil {
		return "", err
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	defer p.fenceStandby(r)
	r.dbEnd.SetTarget("")
	r.dbEnd.Disconnect()
	p.mu.Lock()
	already := r.pgRole == RoleFenced
	pos := r.fencePosition
	p.mu.Unlock()
	if already && pos != "" {
		// Fenced before (an operator resuming a failover asks again).
		return pos, nil
	}
	if r.pg == nil || r.pg.Stopped() {
		// Unreachable or dead: the endpoint fence holds; mark the data
		// directory too, so a server started again by hand comes up in
		// recovery and takes no writes.
		if r.pg != nil {
			_ = r.pg.Fence()
		}
		p.setPGRole(r, RoleFenced)
		return "", nil
	}
	conn, err := r.pg.Connect(ctx, "postgres")
	if err != nil {
		return "", fmt.Errorf("fence database in %s: %w", regionName, err)
	}
	defer conn.Close(ctx)
	for _, q := range []string{
		"ALTER SYSTEM SET default_transaction_read_only = on",
		"SELECT pg_reload_conf()",
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
	} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return "", fmt.Errorf("fence database in %s: %s: %w", regionName, q, err)
		}
	}
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&pos); err != nil {
		return "", fmt.Errorf("read fence position in %s: %w", regionName, err)
	}
	conn.Close(ctx)
	r.pg.Stop(30 * time.Second)
	if err := r.pg.Fence(); err != nil {
		return pos, err
	}
	p.mu.Lock()
	r.pgRole, r.fencePosition = RoleFenced, pos
	p.mu.Unlock()
	return pos, nil
}

// fenceStandby stops the in-region standby of a fenced region's database:
// nothing of a fenced region may become writable. Its data directory is a
// standby's already; reprotect rebuilds it.
func (p *Platform) fenceStandby(r *region) {
	p.mu.Lock()
	sb := r.pgStandby
	fenced := r.pgRole == RoleFenced
	if fenced {
		r.pgSync = false
	}
	p.mu.Unlock()
	if fenced && sb != nil && !sb.Stopped() {
		sb.Stop(15 * time.Second)
	}
}

func (p *Platform) setPGRole(r *region, role string) {
	p.mu.Lock()
	r.pgRole = role
	p.mu.Unlock()
}

func (p *Platform) setCacheRole(r *region, role string) {
	p.mu.Lock()
	r.rdRole = role
	p.mu.Unlock()
}

// PromoteDatabase promotes the region's replica to primary and waits until
// it accepts writes.
func (p *Platform) PromoteDatabase(ctx context.Context, regionName string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	if r.pg == nil || r.pg.Stopped() {
		return fmt.Errorf("database of %s is not running; nothing to promote", regionName)
	}
	conn, err := r.pg.Connect(ctx, "postgres")
	if err != nil {
		return fmt.Errorf("promote database in %s: %w", regionName, err)
	}
	defer conn.Close(ctx)
	var inRecovery bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("promote database in %s: %w", regionName, err)
	}
	if inRecovery {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil {
			return fmt.Errorf("promote database in %s: %w", regionName, err)
		}
		if !ok {
			return fmt.Errorf("promote database in %s: not promoted within 60s", regionName)
		}
	}
	r.dbEnd.SetTarget(r.pg.Addr())
	p.setPGRole(r, RolePrimary)
	// The region's standby cascaded from the replica and follows it onto
	// the new timeline; once it streams, commits wait for it. Until then
	// the database runs without in-region failover.
	if p.zoneStandby(r) != nil && p.haCtx != nil {
		p.haWG.Add(1)
		go func() {
			defer p.haWG.Done()
			sctx, cancel := context.WithTimeout(p.haCtx, time.Minute)
			defer cancel()
			if err := p.enableSync(sctx, r); err != nil {
				p.log.Error("make the standby synchronous after promotion", "region", r.name, "err", err)
			}
		}()
	}
	return nil
}

// zonePrimary is the database server behind the region's endpoint.
func (p *Platform) zonePrimary(r *region) *pgproc.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.pg
}

func (p *Platform) zoneStandby(r *region) *pgproc.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.pgStandby
}

// FenceCache pauses writes on the region's redis (best effort: an
// unreachable server takes no writes anyway) and closes its endpoint.
func (p *Platform) FenceCache(ctx context.Context, regionName string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	r.cacheEnd.SetTarget("")
	r.cacheEnd.Disconnect()
	if r.redis != nil && !r.redis.Stopped() {
		c := r.redis.Client(0)
		defer c.Close()
		if err := c.Do(ctx, "CLIENT", "PAUSE", "60000", "WRITE").Err(); err != nil {
			return fmt.Errorf("pause cache writes in %s: %w", regionName, err)
		}
	}
	p.setCacheRole(r, RoleFenced)
	return nil
}

// PromoteCache makes the region's redis the primary once it has caught up
// with the old primary's replication offset (bounded wait), and turns every
// other running redis into its replica.
func (p *Platform) PromoteCache(ctx context.Context, regionName string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	if r.redis == nil || r.redis.Stopped() {
		return fmt.Errorf("cache of %s is not running; nothing to promote", regionName)
	}
	c := r.redis.Client(0)
	defer c.Close()
	// Wait for the replica to apply what its primary had.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		info, err := c.Info(ctx, "replication").Result()
		if err != nil {
			return fmt.Errorf("promote cache in %s: %w", regionName, err)
		}
		if infoField(info, "role") == "master" {
			break
		}
		primary := infoField(info, "master_host") + ":" + infoField(info, "master_port")
		if caughtUp(ctx, p, primary, info) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		return fmt.Errorf("promote cache in %s: %w", regionName, err)
	}
	r.cacheEnd.SetTarget(r.redis.Addr())
	p.setCacheRole(r, RolePrimary)
	host, port, _ := strings.Cut(r.redis.Addr(), ":")
	for _, name := range p.order {
		o := p.regions[name]
		ord := p.cacheServer(o)
		if o == r || ord == nil || ord.Stopped() {
			continue
		}
		oc := ord.Client(0)
		err := oc.Do(ctx, "REPLICAOF", host, port).Err()
		if err == nil {
			_ = oc.Do(ctx, "CLIENT", "UNPAUSE").Err()
			p.setCacheRole(o, RoleReplica)
		}
		oc.Close()
	}
	return nil
}

func caughtUp(ctx context.Context, p *Platform, primaryAddr, replicaInfo string) bool {
	for _, name := range p.order {
		ord := p.cacheServer(p.regions[name])
		if ord == nil || ord.Addr() != primaryAddr || ord.Stopped() {
			continue
		}
		oc := ord.Client(0)
		defer oc.Close()
		info, err := oc.Info(ctx, "replication").Result()
		if err != nil {
			return true // the old primary is gone: nothing more will arrive
		}
		want, _ := strconv.ParseInt(infoField(info, "master_repl_offset"), 10, 64)
		got, _ := strconv.ParseInt(infoField(replicaInfo, "slave_repl_offset"), 10, 64)
		return got >= want
	}
	return true
}

func infoField(info, key string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+":"); ok {
			return v
		}
	}
	return ""
}

// cacheServer is the redis-server behind the region's cache endpoint.
func (p *Platform) cacheServer(r *region) *redisproc.Server {
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.redis
}

// primaryServer is the running primary database server, or nil.
func (p *Platform) primaryServer() *pgproc.Server {
	r, err := p.primaryRegion()
	if err != nil {
		return nil
	}
	return p.zonePrimary(r)
}

// primaryRegion returns the region whose database is the writable primary.
func (p *Platform) primaryRegion() (*region, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range p.order {
		if r := p.regions[name]; r.pgRole == RolePrimary && r.pg != nil && !r.pg.Stopped() {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no region has a running primary database")
}

// ReplicaLag reports how far the region's database replica is behind the
// primary: WAL bytes not yet replayed, seconds since it last replayed a
// transaction while behind, and whether it is streaming.
func (p *Platform) ReplicaLag(ctx context.Context, regionName string) (topology.Lag, error) {
	r, err := p.region(regionName)
	if err != nil {
		return topology.Lag{}, err
	}
	lag := topology.Lag{Region: regionName}
	pg := p.zonePrimary(r)
	if pg == nil || pg.Stopped() {
		return lag, fmt.Errorf("database of %s is not running", regionName)
	}
	pr, err := p.primaryRegion()
	if err != nil {
		return lag, err
	}
	if lag.Primary, err = p.walPosition(ctx, pr); err != nil {
		return lag, fmt.Errorf("read the primary's position in %s: %w", pr.name, err)
	}
	cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pg.Connect(cctx, "postgres")
	if err != nil {
		return lag, err
	}
	defer conn.Close(ctx)
	var since *float64
	err = conn.QueryRow(cctx, `SELECT coalesce(pg_last_wal_replay_lsn()::text, '0/0'),
		extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8,
		EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')`).Scan(&lag.Replayed, &since, &lag.Streaming)
	if err != nil {
		return lag, err
	}
	pp, err1 := topology.ParsePosition(lag.Primary)
	rp, err2 := topology.ParsePosition(lag.Replayed)
	if err1 != nil || err2 != nil {
		return lag, fmt.Errorf("bad positions %s / %s", lag.Primary, lag.Replayed)
	}
	if pp > rp {
		lag.Bytes = int64(pp - rp)
		if since != nil {
			lag.Seconds = *since
		}
	}
	return lag, nil
}

// VerifyWrite proves the region's database endpoint takes writes: it
// records the failover epoch in a table of its own and reads it back.
func (p *Platform) VerifyWrite(ctx context.Context, regionName string, epoch int64) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, pgproc.DSN(r.dbEnd.Addr(), p.secrets.Postgres, "postgres"))
	if err != nil {
		return fmt.Errorf("synthetic write in %s: %w", regionName, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(cctx, "CREATE TABLE IF NOT EXISTS tandem_epochs (epoch bigint NOT NULL, region text NOT NULL, at timestamptz NOT NULL DEFAULT now())"); err != nil {
		return fmt.Errorf("synthetic write in %s: %w", regionName, err)
	}
	var got int64
	if err := conn.QueryRow(cctx, "INSERT INTO tandem_epochs (epoch, region) VALUES ($1, $2) RETURNING epoch", epoch, regionName).Scan(&got); err != nil {
		return fmt.Errorf("synthetic write in %s: %w", regionName, err)
	}
	if got != epoch {
		return fmt.Errorf("synthetic write in %s: read back epoch %d, wrote %d", regionName, got, epoch)
	}
	return nil
}

// Reprotect rebuilds a region's former primary database as a streaming
// replica of the current primary — pg_rewind first, a fresh base backup if
// that fails — and its redis as a replica, then checks that both really
// stream. A rejoin that does not stream is an error, never reported healthy.
func (p *Platform) Reprotect(ctx context.Context, regionName string) (string, error) {
	return p.reprotect(ctx, regionName, false)
}

// reprotect is Reprotect; diverged says the region's server took WAL the
// primary does not have (a replica that was ahead of the synchronous standby
// an in-region failover promoted), so it is rewound even if it was a
// replica.
func (p *Platform) reprotect(ctx context.Context, regionName string, diverged bool) (string, error) {
	r, err := p.region(regionName)
	if err != nil {
		return "", err
	}
	pr, err := p.primaryRegion()
	if err != nil {
		return "", err
	}
	if pr == r {
		return "", fmt.Errorf("%s holds the primary database; reprotect rebuilds a former primary as a replica of another region", regionName)
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	if r.pgRebuilding || r.rdRebuilding {
		p.mu.Unlock()
		return "", fmt.Errorf("an in-region standby of %s is being rebuilt; try again in a moment", regionName)
	}
	// The watcher leaves the region's standbys alone while this runs.
	r.pgRebuilding, r.rdRebuilding = true, true
	old, sb := r.pg, r.pgStandby
	upstream := pr.pg.Addr()
	// A replica being rebuilt never took writes of its own; anything else
	// (a fenced or failed primary) may have diverged.
	wasPrimary := r.pgRole != RoleReplica || diverged
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		r.pgRebuilding, r.rdRebuilding = false, false
		p.mu.Unlock()
	}()
	// The region's standby stops first: it streams from the server about
	// to be rebuilt.
	if sb != nil && !sb.Stopped() {
		sb.Stop(15 * time.Second)
	}
	if !old.Stopped() {
		old.Stop(30 * time.Second)
	}
	// Rebuild from the primary region's endpoint, as a replica in another
	// region reaches RDS through its DNS name, and stream from the primary
	// server itself, as the replicas made at up do: a failover fences the
	// primary's endpoint first and must not cut its replicas off before
	// they have the fence position.
	follow := func() string {
		if w := p.primaryServer(); w != nil {
			return w.Addr()
		}
		return upstream
	}
	fresh, method, err := p.rejoinNode(ctx, old, pr.dbEnd.Addr(), follow, wasPrimary)
	if err != nil {
		return "", fmt.Errorf("reprotect %s failed: %w", regionName, err)
	}
	p.mu.Lock()
	r.pg, r.pgRole, r.fencePosition, r.pgSync = fresh, RoleReplica, "", false
	p.mu.Unlock()
	r.dbEnd.SetTarget(fresh.Addr())
	standby := ""
	if sb != nil {
		fsb, sbMethod, err := p.rejoinNode(ctx, sb, fresh.Addr(), fixed(fresh.Addr()), diverged)
		if err != nil {
			return "", fmt.Errorf("reprotect %s: the database streams again (%s), but its in-region standby %s does not: %w", regionName, method, sb.Name(), err)
		}
		p.mu.Lock()
		r.pgStandby = fsb
		p.mu.Unlock()
		standby = fmt.Sprintf("; standby %s rebuilt by %s", fsb.Name(), sbMethod)
	}

	if err := p.reprotectCache(ctx, r, pr); err != nil {
		return "", fmt.Errorf("reprotect %s: database streams again (%s), but the cache does not: %w", regionName, method, err)
	}
	return fmt.Sprintf("database rebuilt by %s and streaming from %s%s; cache replicating from %s", method, pr.name, standby, pr.name), nil
}

// gist is the line of a tool's output that says what went wrong: the last
// one naming an error or a fatal condition, else the first.
func gist(err error) string {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		l := strings.ToLower(lines[i])
		if strings.Contains(l, "error") || strings.Contains(l, "fatal") {
			return strings.TrimSpace(lines[i])
		}
	}
	return firstLine(err.Error())
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func waitStreaming(ctx context.Context, s *pgproc.Server, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := s.Connect(cctx, "postgres")
		if err == nil {
			var recovering, streaming bool
			err = conn.QueryRow(cctx, `SELECT pg_is_in_recovery(),
				EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')`).Scan(&recovering, &streaming)
			conn.Close(ctx)
			switch {
			case err != nil:
			case !recovering:
				cancel()
				return errors.New("the server is not in recovery: it would take writes as a second primary")
			case streaming:
				cancel()
				return nil
			default:
				err = errors.New("in recovery but not streaming")
			}
		}
		cancel()
		last = err
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not streaming after %s: %v", timeout, last)
}

func (p *Platform) reprotectCache(ctx context.Context, r, pr *region) error {
	p.mu.Lock()
	main, sb, prMain := r.redis, r.rdStandby, pr.redis
	p.mu.Unlock()
	if prMain == nil || prMain.Stopped() {
		return fmt.Errorf("the primary cache in %s is not running", pr.name)
	}
	if main == nil || main.Stopped() {
		// The region was killed: start its redis again as a replica.
		fresh, err := p.startCacheReplica(ctx, main, prMain)
		if err != nil {
			return err
		}
		main = fresh
	} else {
		c := main.Client(0)
		host, port, _ := strings.Cut(prMain.Addr(), ":")
		err := c.Do(ctx, "REPLICAOF", host, port).Err()
		_ = c.Do(ctx, "CLIENT", "UNPAUSE").Err()
		c.Close()
		if err != nil {
			return err
		}
		if err := waitReplicating(ctx, main, 20*time.Second); err != nil {
			return fmt.Errorf("redis in %s is not replicating from %s: %w", r.name, pr.name, err)
		}
	}
	p.mu.Lock()
	r.redis = main
	p.mu.Unlock()
	r.cacheEnd.SetTarget(main.Addr())
	p.setCacheRole(r, RoleReplica)
	if sb != nil && (sb.Stopped() || waitReplicating(ctx, sb, time.Second) != nil) {
		fresh, err := p.startCacheReplica(ctx, sb, main)
		if err != nil {
			return fmt.Errorf("in-region replica: %w", err)
		}
		p.mu.Lock()
		r.rdStandby = fresh
		p.mu.Unlock()
	}
	return nil
}
