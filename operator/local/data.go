package local

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/procutil"
	"github.com/tandemhq/tandem/internal/redisproc"
	"github.com/tandemhq/tandem/operator/local/proxy"
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
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := r.pg.Connect(ctx, "postgres")
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
	if r.pg == nil || r.pg.Stopped() {
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
	var pos string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&pos); err != nil {
		return "", fmt.Errorf("read fence position in %s: %w", regionName, err)
	}
	conn.Close(ctx)
	r.pg.Stop(30 * time.Second)
	p.setPGRole(r, RoleFenced)
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
