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

// startData brings up the primary region's PostgreSQL and Redis, then a
// streaming replica of each in every other region, each behind its
// region's endpoints.
func (p *Platform) startData(ctx context.Context, primary string) error {
	lay := StateLayout{p.cfg.StateDir}
	pgRoot, err := p.postgresRoot()
	if err != nil {
		return err
	}
	newPG := func(r *region) (*pgproc.Server, error) {
		port, err := procutil.FreePort()
		if err != nil {
			return nil, err
		}
		logf, err := p.logFile("postgres-" + r.name)
		if err != nil {
			return nil, err
		}
		_ = os.Chmod(logf.Name(), 0o600)
		return pgproc.New(pgproc.Options{Name: r.name, DataDir: filepath.Join(pgRoot, "postgres-"+r.name), Port: port,
			Password: p.secrets.Postgres, Log: logf, Durable: true})
	}
	newRedis := func(r *region, replicaOf string) (*redisproc.Server, error) {
		port, err := procutil.FreePort()
		if err != nil {
			return nil, err
		}
		logf, err := p.logFile("redis-" + r.name)
		if err != nil {
			return nil, err
		}
		return redisproc.New(redisproc.Options{Name: r.name, Dir: filepath.Join(lay.Data(), "redis-"+r.name), Port: port,
			Password: p.secrets.Redis, ReplicaOf: replicaOf, Durable: true, Log: logf}), nil
	}

	pr := p.regions[primary]
	p.progress("postgres %s: initdb and start (primary)", primary)
	pg, err := newPG(pr)
	if err != nil {
		return err
	}
	if err := pg.Init(ctx); err != nil {
		return err
	}
	if err := pg.Start(ctx); err != nil {
		return err
	}
	pr.pg, pr.pgRole = pg, RolePrimary
	p.track("postgres", pg.Pid())
	for _, svc := range p.cfg.Spec.Services {
		if svc.Database {
			if err := pg.CreateDatabase(ctx, svc.Name); err != nil {
				return err
			}
		}
	}
	p.progress("redis %s: start (primary)", primary)
	rd, err := newRedis(pr, "")
	if err != nil {
		return err
	}
	if err := rd.Start(ctx); err != nil {
		return err
	}
	pr.redis, pr.rdRole = rd, RolePrimary
	p.track("redis-server", rd.Pid())

	for _, name := range p.order {
		if name == primary {
			continue
		}
		r := p.regions[name]
		p.progress("postgres %s: base backup from %s and start (streaming replica)", name, primary)
		rpg, err := newPG(r)
		if err != nil {
			return err
		}
		if err := rpg.BaseBackup(ctx, pg); err != nil {
			return err
		}
		if err := rpg.Start(ctx); err != nil {
			return err
		}
		r.pg, r.pgRole = rpg, RoleReplica
		p.track("postgres", rpg.Pid())
		p.progress("redis %s: start (replica of %s)", name, primary)
		rrd, err := newRedis(r, rd.Addr())
		if err != nil {
			return err
		}
		if err := rrd.Start(ctx); err != nil {
			return err
		}
		r.redis, r.rdRole = rrd, RoleReplica
		p.track("redis-server", rrd.Pid())
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

// postgresRoot is where PostgreSQL data directories go: under the state
// directory when the unprivileged database user can reach it, otherwise
// (a state directory inside a private home directory, as root) in a
// directory of its own in the system temporary directory, named after the
// state directory.
func (p *Platform) postgresRoot() (string, error) {
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
	if r.pg == nil || r.pg.Stopped() {
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
	return nil
}

// FenceCache pauses writes on the region's redis (best effort: an
// unreachable server takes no writes anyway) and closes its endpoint.
func (p *Platform) FenceCache(ctx context.Context, regionName string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
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
		if o == r || o.redis == nil || o.redis.Stopped() {
			continue
		}
		oc := o.redis.Client(0)
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
		o := p.regions[name]
		if o.redis == nil || o.redis.Addr() != primaryAddr || o.redis.Stopped() {
			continue
		}
		oc := o.redis.Client(0)
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
	if r.pg == nil || r.pg.Stopped() {
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
	conn, err := r.pg.Connect(cctx, "postgres")
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
	if r.pg == nil {
		return "", fmt.Errorf("%s has no database server", regionName)
	}
	if !r.pg.Stopped() {
		r.pg.Stop(30 * time.Second)
	}
	// Rebuild from the primary region's endpoint, as a replica in another
	// region reaches RDS through its DNS name. A recently promoted
	// primary records its new timeline only at its next checkpoint, and
	// pg_rewind reads the timeline from there: checkpoint first.
	src := pr.dbEnd.Addr()
	if conn, err := pgx.Connect(ctx, pgproc.DSN(src, p.secrets.Postgres, "postgres")); err == nil {
		_, _ = conn.Exec(ctx, "CHECKPOINT")
		conn.Close(ctx)
	}
	p.mu.Lock()
	upstream := pr.pg.Addr()
	p.mu.Unlock()
	rejoin := func(rebuild func() error) (*pgproc.Server, error) {
		if err := rebuild(); err != nil {
			return nil, err
		}
		// Stream from the primary server itself, as the replicas made at
		// up do: a failover fences the primary's endpoint first and must
		// not cut its replicas off before they have the fence position.
		if err := r.pg.Follow(upstream, p.secrets.Postgres); err != nil {
			return nil, err
		}
		fresh, err := pgproc.New(r.pg.Options())
		if err != nil {
			return nil, err
		}
		if err := fresh.Start(ctx); err != nil {
			return nil, fmt.Errorf("the rebuilt replica did not start: %w", err)
		}
		p.track("postgres", fresh.Pid())
		if err := waitStreaming(ctx, fresh, 30*time.Second); err != nil {
			fresh.Stop(10 * time.Second)
			return nil, fmt.Errorf("the rebuilt replica is not streaming from %s: %w", pr.name, err)
		}
		return fresh, nil
	}
	method := "pg_rewind"
	fresh, rerr := rejoin(func() error { return r.pg.Rewind(ctx, src, p.secrets.Postgres) })
	if rerr != nil {
		p.log.Warn("rejoin by pg_rewind failed; taking a fresh base backup", "region", regionName, "err", rerr)
		method = "base backup (pg_rewind: " + firstLine(rerr.Error()) + ")"
		var berr error
		fresh, berr = rejoin(func() error { return r.pg.BaseBackupFrom(ctx, src, p.secrets.Postgres) })
		if berr != nil {
			return "", fmt.Errorf("reprotect %s failed: pg_rewind: %v; base backup: %v", regionName, firstLine(rerr.Error()), firstLine(berr.Error()))
		}
	}
	p.mu.Lock()
	r.pg = fresh
	p.mu.Unlock()
	r.dbEnd.SetTarget(fresh.Addr())
	p.mu.Lock()
	r.pgRole, r.fencePosition = RoleReplica, ""
	p.mu.Unlock()

	if err := p.reprotectCache(ctx, r, pr); err != nil {
		return "", fmt.Errorf("reprotect %s: database streams again (%s), but the cache does not: %w", regionName, method, err)
	}
	return fmt.Sprintf("database rebuilt by %s and streaming from %s; cache replicating from %s", method, pr.name, pr.name), nil
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
	if pr.redis == nil || pr.redis.Stopped() {
		return fmt.Errorf("the primary cache in %s is not running", pr.name)
	}
	if r.redis == nil || r.redis.Stopped() {
		// The region was killed: start its redis again as a replica.
		port, err := procutil.FreePort()
		if err != nil {
			return err
		}
		logf, err := p.logFile("redis-" + r.name)
		if err != nil {
			return err
		}
		rd := redisproc.New(redisproc.Options{Name: r.name, Dir: filepath.Join(StateLayout{p.cfg.StateDir}.Data(), "redis-"+r.name), Port: port,
			Password: p.secrets.Redis, ReplicaOf: pr.redis.Addr(), Durable: true, Log: logf})
		if err := rd.Start(ctx); err != nil {
			return err
		}
		p.mu.Lock()
		r.redis = rd
		p.mu.Unlock()
		p.track("redis-server", rd.Pid())
	} else {
		c := r.redis.Client(0)
		host, port, _ := strings.Cut(pr.redis.Addr(), ":")
		err := c.Do(ctx, "REPLICAOF", host, port).Err()
		_ = c.Do(ctx, "CLIENT", "UNPAUSE").Err()
		c.Close()
		if err != nil {
			return err
		}
	}
	c := r.redis.Client(0)
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && infoField(info, "master_link_status") == "up" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis in %s is not replicating from %s (link %q)", r.name, pr.name, infoField(info, "master_link_status"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.cacheEnd.SetTarget(r.redis.Addr())
	p.setCacheRole(r, RoleReplica)
	return nil
}
