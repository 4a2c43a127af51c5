package local

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/redisproc"
)

// In-region high availability, the local counterpart of RDS Multi-AZ and
// ElastiCache automatic failover. With database.multiAZ a region's
// database is a pair of servers in two zones: in the region holding the
// primary, every commit waits until the standby has flushed it
// (synchronous replication); elsewhere the standby is a cascading replica
// of the region's replica. With cache.replicas a region's redis has an
// in-region replica.
//
// A watcher in the platform checks every region's servers. When the
// server behind a region's endpoint fails — its process exits, or it
// stops answering three checks in a row — and the region is not fenced,
// the standby takes over: promoted in the primary region, re-pointed at the
// primary region otherwise. The endpoint moves to it and clients
// reconnect, as they do when RDS flips its DNS name. Replicas in other
// regions are re-pointed at the new server, and the failed server is
// rebuilt as the new standby (pg_rewind, else a base backup). A standby
// that fails is rebuilt too; while it is missing, commits stop waiting for
// it, and the database does not fail over in-region (its standby would not
// have every commit). When the standby cannot take over (down too, or not
// in sync), the failed server is restarted in place on its own data, as a
// cloud restarts an instance: crash recovery keeps every commit.
//
// The watcher never acts on a fenced region (a cross-region failover owns
// it) or on a killed one (no zone is left), and every change of where data
// lives — fence, promote, reprotect, in-region failover — holds the
// region's dataMu (only that region's: a slow reprotect of one region never
// holds up a failover in another).

const (
	// zoneCheckInterval is how often the watcher looks at each server: a
	// server whose process exited is noticed at the next look.
	zoneCheckInterval = 200 * time.Millisecond
	// zoneDeepCheckEvery: every this many looks the watcher also
	// connects to each server, so that a hung server is noticed too.
	zoneDeepCheckEvery = 5
	// zoneFailureThreshold deep checks in a row must fail before a
	// running but unresponsive server is failed over.
	zoneFailureThreshold = 3
	// zoneRebuildBackoff is the wait before a failed standby rebuild is
	// tried again.
	zoneRebuildBackoff = 10 * time.Second
)

// zoneChecks is the watcher's count of failed deep checks per server.
type zoneChecks struct {
	ticks                      int
	pg, pgStandby, rd, rdStd   int
	pgRetryAt, rdRetryAt       time.Time
	pgFailoverAt, rdFailoverAt time.Time
	// notStreamingSince is when a replica region's server was first seen
	// not streaming while a primary ran and nothing was partitioned.
	notStreamingSince time.Time
}

// startZoneWatcher starts the in-region watcher; Down stops it.
func (p *Platform) startZoneWatcher() {
	if !p.cfg.Spec.Database.MultiAZ && p.cfg.Spec.Cache.Replicas == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.haCtx, p.haStop, p.haDone = ctx, cancel, make(chan struct{})
	checks := map[string]*zoneChecks{}
	for _, name := range p.order {
		checks[name] = &zoneChecks{}
	}
	go func() {
		defer close(p.haDone)
		t := time.NewTicker(zoneCheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				p.haWG.Wait()
				return
			case <-t.C:
			}
			for _, name := range p.order {
				p.checkZones(ctx, p.regions[name], checks[name])
			}
		}
	}()
}

// stopZoneWatcher stops the watcher and waits for rebuilds in flight.
func (p *Platform) stopZoneWatcher() {
	if p.haStop == nil {
		return
	}
	p.haStop()
	<-p.haDone
}

func (p *Platform) regionKilled(r *region) bool {
	b := p.faults()
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.region(r.name).killed(p, r)
}

func pgAnswers(ctx context.Context, s *pgproc.Server) error {
	if s.Stopped() {
		return errors.New("its process exited")
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := s.Connect(cctx, "postgres")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(cctx, "SELECT 1")
	return err
}

func redisAnswers(ctx context.Context, s *redisproc.Server) error {
	if s.Stopped() {
		return errors.New("its process exited")
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c := s.Client(0)
	defer c.Close()
	return c.Ping(cctx).Err()
}

// failing updates a server's count of failed checks and says whether the
// server counts as failed, and why.
func failing(stopped bool, deep bool, check func() error, count *int) (bool, string) {
	if stopped {
		*count = 0
		return true, "its process exited"
	}
	if !deep {
		return false, ""
	}
	if err := check(); err != nil {
		*count++
		if *count >= zoneFailureThreshold {
			*count = 0
			return true, fmt.Sprintf("it did not answer %d checks in a row (%s)", zoneFailureThreshold, firstLine(err.Error()))
		}
		return false, ""
	}
	*count = 0
	return false, ""
}

func (p *Platform) checkZones(ctx context.Context, r *region, c *zoneChecks) {
	c.ticks++
	deep := c.ticks%zoneDeepCheckEvery == 0
	if p.regionKilled(r) {
		return
	}
	p.checkDatabaseZone(ctx, r, c, deep)
	p.checkCacheZone(ctx, r, c, deep)
}

func (p *Platform) checkDatabaseZone(ctx context.Context, r *region, c *zoneChecks, deep bool) {
	p.mu.Lock()
	pg, pgRole, pgSb, pgRebuilding := r.pg, r.pgRole, r.pgStandby, r.pgRebuilding
	p.mu.Unlock()
	if deep && pgRole == RoleReplica && pg != nil && !pg.Stopped() && !pgRebuilding {
		p.checkReplicaFollows(ctx, r, pg, c)
	}
	if pg != nil && pgSb != nil && pgRole != RoleFenced {
		if down, why := failing(pg.Stopped(), deep, func() error { return pgAnswers(ctx, pg) }, &c.pg); down && !pgRebuilding {
			if time.Now().Before(c.pgFailoverAt) {
				return // a failover that could not be made is tried again later
			}
			err := p.failoverDatabaseZone(ctx, r, pg, why)
			if err != nil {
				c.pgFailoverAt = time.Now().Add(zoneRebuildBackoff)
			}
			switch {
			case errors.Is(err, errNotInSync) || errors.Is(err, errNoStandby):
				p.log.Warn("database server failed and its standby cannot take over; restarting the server in place", "region", r.name, "server", pg.Name(), "reason", why, "standby", err)
				if rerr := p.restartDatabaseInPlace(ctx, r, pg); rerr != nil {
					p.log.Error("restart the failed database server in place", "region", r.name, "server", pg.Name(), "err", rerr)
				} else {
					// Its standby is rebuilt at the next look.
					c.pgFailoverAt, c.pgRetryAt = time.Time{}, time.Time{}
				}
			case err != nil:
				p.log.Error("in-region database failover failed", "region", r.name, "err", err)
			}
		} else if !down && !pgRebuilding && time.Now().After(c.pgRetryAt) {
			if sbDown, why := failing(pgSb.Stopped(), deep, func() error { return pgAnswers(ctx, pgSb) }, &c.pgStandby); sbDown {
				c.pgRetryAt = time.Now().Add(zoneRebuildBackoff)
				p.log.Warn("database standby failed; rebuilding it", "region", r.name, "server", pgSb.Name(), "reason", why)
				p.startRebuild(&r.pgRebuilding, func() { p.rebuildDatabaseStandby(ctx, r, false) })
			}
		}
	}
}

func (p *Platform) checkCacheZone(ctx context.Context, r *region, c *zoneChecks, deep bool) {
	p.mu.Lock()
	rd, rdRole, rdSb, rdRebuilding := r.redis, r.rdRole, r.rdStandby, r.rdRebuilding
	p.mu.Unlock()
	if rd != nil && rdSb != nil && rdRole != RoleFenced {
		if down, why := failing(rd.Stopped(), deep, func() error { return redisAnswers(ctx, rd) }, &c.rd); down && !rdRebuilding {
			if time.Now().Before(c.rdFailoverAt) {
				return
			}
			switch err := p.failoverCacheZone(ctx, r, rd, why); {
			case errors.Is(err, errNoStandby):
				p.log.Warn("cache server failed and its replica is down too; restarting the server in place", "region", r.name, "server", rd.Name(), "reason", why)
				if rerr := p.restartCacheInPlace(ctx, r, rd); rerr != nil {
					c.rdFailoverAt = time.Now().Add(zoneRebuildBackoff)
					p.log.Error("restart the failed cache server in place", "region", r.name, "server", rd.Name(), "err", rerr)
				}
			case err != nil:
				c.rdFailoverAt = time.Now().Add(zoneRebuildBackoff)
				p.log.Error("in-region cache failover failed", "region", r.name, "err", err)
			}
		} else if !down && !rdRebuilding && time.Now().After(c.rdRetryAt) {
			if sbDown, why := failing(rdSb.Stopped(), deep, func() error { return redisAnswers(ctx, rdSb) }, &c.rdStd); sbDown {
				c.rdRetryAt = time.Now().Add(zoneRebuildBackoff)
				p.log.Warn("cache replica failed; rebuilding it", "region", r.name, "server", rdSb.Name(), "reason", why)
				p.startRebuild(&r.rdRebuilding, func() { p.rebuildCacheStandby(ctx, r) })
			}
		}
	}
}

// errNotInSync refuses an in-region failover to a standby that may miss
// commits; errNoStandby says the standby is down too. Either way the failed
// server is restarted in place instead, as a cloud restarts an instance.
var (
	errNotInSync = errors.New("the standby is not synchronous")
	errNoStandby = errors.New("no standby to take over")
)

// failoverDatabaseZone moves the region's database to its standby after
// the server failed failed.
func (p *Platform) failoverDatabaseZone(ctx context.Context, r *region, failed *pgproc.Server, why string) error {
	noticed := time.Now()
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	cur, sb, role, sync := r.pg, r.pgStandby, r.pgRole, r.pgSync
	p.mu.Unlock()
	switch {
	case cur != failed || role == RoleFenced || sb == nil || p.regionKilled(r):
		return nil // someone else changed the region meanwhile
	case sb.Stopped():
		return fmt.Errorf("%s failed (%s) and its standby %s is down too: %w", failed.Name(), why, sb.Name(), errNoStandby)
	case !failed.Stopped() && pgAnswers(ctx, failed) == nil:
		return nil // it recovered
	case role == RolePrimary && !sync:
		return errNotInSync
	}
	// A hung server must not come back as a second writer.
	failed.Kill()
	switch role {
	case RolePrimary:
		cctx, cancel := context.WithTimeout(ctx, 70*time.Second)
		defer cancel()
		conn, err := sb.Connect(cctx, "postgres")
		if err != nil {
			return fmt.Errorf("promote standby %s: %w", sb.Name(), err)
		}
		// Promotion is asked only of a standby still in recovery: a retry
		// after a failed attempt finds it promoted already.
		ok := true
		var recovering bool
		err = conn.QueryRow(cctx, "SELECT pg_is_in_recovery()").Scan(&recovering)
		if err == nil && recovering {
			err = conn.QueryRow(cctx, "SELECT pg_promote(true, 60)").Scan(&ok)
		}
		conn.Close(ctx)
		if err != nil || !ok {
			return fmt.Errorf("promote standby %s: not promoted (%v)", sb.Name(), err)
		}
	default:
		// A replica region's standby takes over as the region's replica.
		// With no primary running (the primary region is fenced in the
		// middle of a failover, or lost) it keeps what it has and takes
		// over all the same: it may be the one left to promote.
		if writer := p.primaryServer(); writer != nil {
			if err := sb.Repoint(ctx, writer.Addr(), p.secrets.Postgres); err != nil {
				return err
			}
		} else {
			p.log.Warn("no primary database runs: the standby takes over the region's endpoint without an upstream", "region", r.name, "standby", sb.Name())
		}
	}
	r.dbEnd.SetTarget(sb.Addr())
	r.dbEnd.Disconnect()
	took := time.Since(noticed)
	p.mu.Lock()
	r.pg, r.pgStandby, r.pgSync, r.pgRebuilding = sb, failed, false, true
	r.pgFailovers = append(r.pgFailovers, ZoneFailover{At: noticed, From: failed.Name(), To: sb.Name(), Reason: why, TookMs: took.Milliseconds()})
	p.mu.Unlock()
	p.log.Warn("in-region database failover", "region", r.name, "from", failed.Name(), "to", sb.Name(), "reason", why, "took", took)
	if role == RolePrimary {
		p.repointDatabaseReplicas(ctx, r, failed.Addr(), sb.Addr())
	}
	_ = p.writeTopology(ctx)
	p.runRebuild(&r.pgRebuilding, func() { p.rebuildDatabaseStandby(ctx, r, role == RolePrimary) })
	return nil
}

// repointDatabaseReplicas makes every other region's replica that streamed
// from the server at from stream from to. A partitioned replica (no
// upstream) is left to heal.
func (p *Platform) repointDatabaseReplicas(ctx context.Context, r *region, from, to string) {
	for _, name := range p.order {
		x := p.regions[name]
		p.mu.Lock()
		pg := x.pg
		p.mu.Unlock()
		if x == r || pg == nil || pg.Stopped() {
			continue
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := func() error {
			conn, err := pg.Connect(cctx, "postgres")
			if err != nil {
				return err
			}
			var conninfo string
			err = conn.QueryRow(cctx, "SELECT current_setting('primary_conninfo')").Scan(&conninfo)
			conn.Close(ctx)
			if err != nil || conninfoAddr(conninfo) != from {
				return err
			}
			return pg.Repoint(cctx, to, p.secrets.Postgres)
		}()
		cancel()
		if err != nil {
			p.log.Error("re-point database replica after in-region failover", "region", name, "err", err)
		}
	}
}

// startRebuild marks flag (pgRebuilding, rdRebuilding) and runs rebuild in
// the background, unless a rebuild is marked already.
func (p *Platform) startRebuild(flag *bool, rebuild func()) {
	p.mu.Lock()
	if *flag {
		p.mu.Unlock()
		return
	}
	*flag = true
	p.mu.Unlock()
	p.runRebuild(flag, rebuild)
}

// runRebuild runs rebuild in the background and clears flag, which the
// caller set, when it ends. Down waits for it.
func (p *Platform) runRebuild(flag *bool, rebuild func()) {
	p.haWG.Add(1)
	go func() {
		defer p.haWG.Done()
		defer func() {
			p.mu.Lock()
			*flag = false
			p.mu.Unlock()
		}()
		rebuild()
	}()
}

// rebuildDatabaseStandby rebuilds the region's standby from its current
// server and, in the primary region, makes commits wait for it again.
// wasPrimary says the server being rebuilt was the primary (the one an
// in-region failover replaced). It runs under runRebuild.
func (p *Platform) rebuildDatabaseStandby(ctx context.Context, r *region, wasPrimary bool) {
	p.mu.Lock()
	main, old, sync := r.pg, r.pgStandby, r.pgSync
	p.mu.Unlock()
	if sync {
		// Commits must not wait for a standby that is being rebuilt.
		p.mu.Lock()
		r.pgSync = false
		p.mu.Unlock()
		if err := main.SetSynchronousStandby(ctx, ""); err != nil {
			p.log.Error("stop waiting for the failed standby", "region", r.name, "err", err)
		}
	}
	if !old.Stopped() {
		old.Stop(10 * time.Second)
	}
	fresh, method, err := p.rejoinNode(ctx, old, main.Addr(), fixed(main.Addr()), wasPrimary)
	if err != nil {
		p.log.Error("rebuild database standby", "region", r.name, "server", old.Name(), "err", err)
		return
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	ok := r.pg == main && r.pgStandby == old && r.pgRole != RoleFenced
	if ok {
		r.pgStandby = fresh
	}
	role := r.pgRole
	p.mu.Unlock()
	if !ok {
		fresh.Stop(10 * time.Second)
		return
	}
	p.log.Info("database standby rebuilt", "region", r.name, "server", fresh.Name(), "method", method)
	if role == RolePrimary {
		if err := p.enableSync(ctx, r); err != nil {
			p.log.Error("make the rebuilt standby synchronous", "region", r.name, "err", err)
		}
	}
	_ = p.writeTopology(ctx)
}

// fixed is an upstream that does not move.
func fixed(addr string) func() string { return func() string { return addr } }

// rejoinNode rebuilds the stopped server node as a standby streaming from
// follow(), asked again for each attempt (the upstream may fail over
// meanwhile). A former primary is rewound (pg_rewind from src, which copies
// only what diverged); a former standby is started again as a standby,
// crash recovery and all. If that does not stream, a fresh base backup from
// src is taken. It returns the new server process, started and streaming,
// and how it was rebuilt. A rebuilt server that does not stream is an
// error.
func (p *Platform) rejoinNode(ctx context.Context, node *pgproc.Server, src string, follow func() string, wasPrimary bool) (*pgproc.Server, string, error) {
	// A recently promoted server records its new timeline only at its
	// next checkpoint, and pg_rewind reads the timeline from there.
	if conn, err := pgx.Connect(ctx, pgproc.DSN(src, p.secrets.Postgres, "postgres")); err == nil {
		_, _ = conn.Exec(ctx, "CHECKPOINT")
		conn.Close(ctx)
	}
	attempt := func(rebuild func() error, streamWithin time.Duration) (*pgproc.Server, error) {
		if err := rebuild(); err != nil {
			return nil, err
		}
		upstream := follow()
		if err := node.Follow(upstream, p.secrets.Postgres); err != nil {
			return nil, err
		}
		fresh, err := pgproc.New(node.Options())
		if err != nil {
			return nil, err
		}
		if err := fresh.Start(ctx); err != nil {
			return nil, fmt.Errorf("the rebuilt server did not start: %w", err)
		}
		p.track("postgres", fresh.Pid())
		if err := waitStreaming(ctx, fresh, streamWithin); err != nil {
			fresh.Stop(10 * time.Second)
			return nil, fmt.Errorf("the rebuilt server is not streaming from %s: %w", p.nodeName(upstream), err)
		}
		return fresh, nil
	}
	first, rebuild, within := "restart as a standby", func() error { return nil }, 15*time.Second
	if wasPrimary {
		first, rebuild, within = "pg_rewind", func() error { return node.Rewind(ctx, src, p.secrets.Postgres) }, 30*time.Second
	}
	fresh, rerr := attempt(rebuild, within)
	if rerr == nil {
		return fresh, first, nil
	}
	p.log.Warn("rejoin by "+first+" failed; taking a fresh base backup", "server", node.Name(), "err", rerr)
	fresh, berr := attempt(func() error { return node.BaseBackupFrom(ctx, src, p.secrets.Postgres) }, 30*time.Second)
	if berr != nil {
		return nil, "", fmt.Errorf("%s: %v; base backup: %v", first, gist(rerr), gist(berr))
	}
	return fresh, "base backup (" + first + ": " + gist(rerr) + ")", nil
}

// enableSync makes commits on the region's database wait for its standby,
// once the standby streams.
func (p *Platform) enableSync(ctx context.Context, r *region) error {
	p.mu.Lock()
	pg, sb := r.pg, r.pgStandby
	p.mu.Unlock()
	if sb == nil || sb.Stopped() {
		return nil
	}
	// Turning it on before the standby streams would hold every commit.
	if err := waitSyncState(ctx, pg, sb.Name(), func(s string) bool { return s != "" }); err != nil {
		return err
	}
	if err := pg.SetSynchronousStandby(ctx, sb.Name()); err != nil {
		return err
	}
	if err := waitSyncState(ctx, pg, sb.Name(), func(s string) bool { return s == "sync" }); err != nil {
		return err
	}
	p.mu.Lock()
	if r.pg == pg && r.pgStandby == sb {
		r.pgSync = true
	}
	p.mu.Unlock()
	return nil
}

func waitSyncState(ctx context.Context, pg *pgproc.Server, name string, ok func(string) bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		state, err := pg.SyncState(cctx, name)
		cancel()
		if err == nil && ok(state) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("standby %s as %s sees it: %q (%v)", name, pg.Name(), state, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// failoverCacheZone moves the region's cache to its in-region replica after
// the server failed failed.
func (p *Platform) failoverCacheZone(ctx context.Context, r *region, failed *redisproc.Server, why string) error {
	noticed := time.Now()
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	cur, sb, role := r.redis, r.rdStandby, r.rdRole
	p.mu.Unlock()
	switch {
	case cur != failed || role == RoleFenced || sb == nil || p.regionKilled(r):
		return nil
	case sb.Stopped():
		return fmt.Errorf("%s failed (%s) and its replica %s is down too: %w", failed.Name(), why, sb.Name(), errNoStandby)
	case !failed.Stopped() && redisAnswers(ctx, failed) == nil:
		return nil
	}
	failed.Kill()
	c := sb.Client(0)
	defer c.Close()
	switch role {
	case RolePrimary:
		if err := c.Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
			return fmt.Errorf("promote cache replica %s: %w", sb.Name(), err)
		}
	default:
		pr, err := p.cachePrimaryRegion()
		if err != nil {
			return err
		}
		host, port, _ := strings.Cut(pr.redis.Addr(), ":")
		if err := c.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
			return fmt.Errorf("re-point cache replica %s: %w", sb.Name(), err)
		}
	}
	r.cacheEnd.SetTarget(sb.Addr())
	r.cacheEnd.Disconnect()
	took := time.Since(noticed)
	p.mu.Lock()
	r.redis, r.rdStandby, r.rdRebuilding = sb, failed, true
	r.rdFailovers = append(r.rdFailovers, ZoneFailover{At: noticed, From: failed.Name(), To: sb.Name(), Reason: why, TookMs: took.Milliseconds()})
	p.mu.Unlock()
	p.log.Warn("in-region cache failover", "region", r.name, "from", failed.Name(), "to", sb.Name(), "reason", why, "took", took)
	if role == RolePrimary {
		host, port, _ := strings.Cut(sb.Addr(), ":")
		for _, name := range p.order {
			x := p.regions[name]
			p.mu.Lock()
			xr := x.redis
			p.mu.Unlock()
			if x == r || xr == nil || xr.Stopped() {
				continue
			}
			xc := xr.Client(0)
			info, err := xc.Info(ctx, "replication").Result()
			if err == nil && infoField(info, "master_host")+":"+infoField(info, "master_port") == failed.Addr() {
				err = xc.Do(ctx, "REPLICAOF", host, port).Err()
			}
			xc.Close()
			if err != nil {
				p.log.Error("re-point cache replica after in-region failover", "region", name, "err", err)
			}
		}
	}
	_ = p.writeTopology(ctx)
	p.runRebuild(&r.rdRebuilding, func() { p.rebuildCacheStandby(ctx, r) })
	return nil
}

// cachePrimaryRegion returns the region whose redis is the primary.
func (p *Platform) cachePrimaryRegion() (*region, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, name := range p.order {
		if r := p.regions[name]; r.rdRole == RolePrimary && r.redis != nil && !r.redis.Stopped() {
			return r, nil
		}
	}
	return nil, fmt.Errorf("no region has a running primary cache")
}

// rebuildCacheStandby starts the region's failed cache server again as a
// replica of the region's current one. It runs under runRebuild.
func (p *Platform) rebuildCacheStandby(ctx context.Context, r *region) {
	p.mu.Lock()
	main, old := r.redis, r.rdStandby
	p.mu.Unlock()
	fresh, err := p.startCacheReplica(ctx, old, main)
	if err != nil {
		p.log.Error("rebuild cache replica", "region", r.name, "server", old.Name(), "err", err)
		return
	}
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	ok := r.redis == main && r.rdStandby == old && r.rdRole != RoleFenced
	if ok {
		r.rdStandby = fresh
	}
	p.mu.Unlock()
	if !ok {
		fresh.Stop(5 * time.Second)
		return
	}
	p.log.Info("cache replica rebuilt", "region", r.name, "server", fresh.Name())
	_ = p.writeTopology(ctx)
}

// startCacheReplica starts old's server again (same directory and port)
// as a replica of main, and waits for its link to be up.
func (p *Platform) startCacheReplica(ctx context.Context, old, main *redisproc.Server) (*redisproc.Server, error) {
	if !old.Stopped() {
		old.Stop(5 * time.Second)
	}
	opts := old.Options()
	opts.ReplicaOf = main.Addr()
	fresh := redisproc.New(opts)
	if err := fresh.Start(ctx); err != nil {
		return nil, err
	}
	p.track("redis-server", fresh.Pid())
	if err := waitReplicating(ctx, fresh, 20*time.Second); err != nil {
		fresh.Stop(5 * time.Second)
		return nil, fmt.Errorf("%s is not replicating from %s: %w", fresh.Name(), main.Name(), err)
	}
	return fresh, nil
}

func waitReplicating(ctx context.Context, s *redisproc.Server, timeout time.Duration) error {
	c := s.Client(0)
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && infoField(info, "master_link_status") == "up" {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("link %q after %s (%v)", infoField(info, "master_link_status"), timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// standbyStreams says whether a database standby receives WAL right now.
func standbyStreams(ctx context.Context, s *pgproc.Server) bool {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := s.Connect(cctx, "postgres")
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	var streaming bool
	err = conn.QueryRow(cctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming')").Scan(&streaming)
	return err == nil && streaming
}

// replicaLinked says whether a redis replica's link to its primary is up.
func replicaLinked(ctx context.Context, s *redisproc.Server) bool {
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return waitReplicating(cctx, s, 0) == nil
}

// zoneStatus fills in the standby and in-region failovers of a region's
// database and cache status.
func (p *Platform) zoneStatus(ctx context.Context, r *region, rs *RegionStatus) {
	p.mu.Lock()
	pgSb, pgSync, pgRebuilding, pgFo := r.pgStandby, r.pgSync, r.pgRebuilding, append([]ZoneFailover(nil), r.pgFailovers...)
	rdSb, rdRebuilding, rdFo := r.rdStandby, r.rdRebuilding, append([]ZoneFailover(nil), r.rdFailovers...)
	pgRole, rdRole := r.pgRole, r.rdRole
	p.mu.Unlock()
	if pgSb != nil {
		st := &StandbyStatus{Name: pgSb.Name(), Server: pgSb.Addr(), PID: pgSb.Pid(), DataDir: pgSb.DataDir(), State: StandbyStreaming}
		switch {
		case pgRebuilding:
			st.State = StandbyRebuilding
		case pgSb.Stopped() && pgRole == RoleFenced:
			st.State = RoleFenced
		case pgSb.Stopped():
			st.State = RoleDown
		case pgSync:
			st.State = StandbySync
		}
		if (st.State == StandbyStreaming || st.State == StandbySync) && !standbyStreams(ctx, pgSb) {
			st.State = StandbyNotStreaming
		}
		rs.Database.Standby = st
	}
	rs.Database.Failovers = pgFo
	if rdSb != nil {
		st := &StandbyStatus{Name: rdSb.Name(), Server: rdSb.Addr(), PID: rdSb.Pid(), State: StandbyStreaming}
		switch {
		case rdRebuilding:
			st.State = StandbyRebuilding
		case rdSb.Stopped() && rdRole == RoleFenced:
			st.State = RoleFenced
		case rdSb.Stopped():
			st.State = RoleDown
		case !replicaLinked(ctx, rdSb):
			st.State = StandbyNotStreaming
		}
		rs.Cache.Standby = st
	}
	rs.Cache.Failovers = rdFo
}

// KillDatabase is a zone failure of a region's database: the server behind
// its endpoint gets SIGKILL. With database.multiAZ the standby in the
// other zone takes over; without it the database stays down until the
// region is failed over.
func (p *Platform) KillDatabase(ctx context.Context, regionName string) (FaultReport, error) {
	r, err := p.region(regionName)
	if err != nil {
		return FaultReport{}, err
	}
	rep := FaultReport{Fault: "kill-database", Region: regionName}
	p.mu.Lock()
	pg, role, sb, sync := r.pg, r.pgRole, r.pgStandby, r.pgSync
	p.mu.Unlock()
	switch {
	case p.regionKilled(r):
		rep.note("%s is killed: nothing in it runs", regionName)
		return rep, nil
	case pg == nil || pg.Stopped():
		rep.note("the database server of %s is not running; nothing to kill", regionName)
		return rep, nil
	}
	pid := pg.Pid()
	pg.Kill()
	rep.did("SIGKILL PostgreSQL %s (%s, pid %d) and its backends", pg.Name(), role, pid)
	switch {
	case role == RoleFenced:
		rep.note("%s is fenced: nothing takes over (reprotect rebuilds it)", regionName)
	case sb == nil:
		rep.note("%s has no in-region standby (database.multiAZ is off): its database stays down; fail the region over if it held the primary", regionName)
	case sb.Stopped():
		rep.note("its standby %s is down too: the server is restarted in place (crash recovery keeps every commit)", sb.Name())
	case role == RolePrimary && !sync:
		rep.note("its standby %s was not in sync: no in-region failover (it would lose commits); the server is restarted in place", sb.Name())
	default:
		rep.note("the standby %s takes over within about a second and the endpoint %s moves to it; `tandem status` shows the in-region failover", sb.Name(), r.dbEnd.Addr())
	}
	return rep, nil
}

// KillCache is a zone failure of a region's cache: the server behind its
// endpoint gets SIGKILL, and with cache.replicas its in-region replica
// takes over.
func (p *Platform) KillCache(ctx context.Context, regionName string) (FaultReport, error) {
	r, err := p.region(regionName)
	if err != nil {
		return FaultReport{}, err
	}
	rep := FaultReport{Fault: "kill-cache", Region: regionName}
	p.mu.Lock()
	rd, role, sb := r.redis, r.rdRole, r.rdStandby
	p.mu.Unlock()
	switch {
	case p.regionKilled(r):
		rep.note("%s is killed: nothing in it runs", regionName)
		return rep, nil
	case rd == nil || rd.Stopped():
		rep.note("the cache server of %s is not running; nothing to kill", regionName)
		return rep, nil
	}
	pid := rd.Pid()
	rd.Kill()
	rep.did("SIGKILL redis-server %s (%s, pid %d)", rd.Name(), role, pid)
	switch {
	case role == RoleFenced:
		rep.note("%s is fenced: nothing takes over (reprotect rebuilds it)", regionName)
	case sb == nil:
		rep.note("%s has no in-region cache replica (cache.replicas is 0): its cache stays down", regionName)
	case sb.Stopped():
		rep.note("its replica %s is down too: the server is restarted in place from its append-only file", sb.Name())
	default:
		rep.note("the replica %s takes over within about a second and the endpoint %s moves to it", sb.Name(), r.cacheEnd.Addr())
	}
	return rep, nil
}

// restartDatabaseInPlace starts the region's failed database server again
// on its own data directory (crash recovery keeps every commit), for when
// its standby cannot take over. A hung server is killed first.
func (p *Platform) restartDatabaseInPlace(ctx context.Context, r *region, failed *pgproc.Server) error {
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	cur, role := r.pg, r.pgRole
	p.mu.Unlock()
	if cur != failed || role == RoleFenced || p.regionKilled(r) {
		return nil
	}
	failed.Kill()
	fresh, err := pgproc.New(failed.Options())
	if err != nil {
		return err
	}
	if err := fresh.Start(ctx); err != nil {
		return err
	}
	p.track("postgres", fresh.Pid())
	// Commits must not wait for a standby that is down or behind; it is
	// made synchronous again once it streams (enableSync).
	if role == RolePrimary {
		if err := fresh.SetSynchronousStandby(ctx, ""); err != nil {
			p.log.Error("stop waiting for the standby after a restart in place", "region", r.name, "err", err)
		}
	}
	p.mu.Lock()
	r.pg, r.pgSync = fresh, false
	sb := r.pgStandby
	p.mu.Unlock()
	r.dbEnd.SetTarget(fresh.Addr())
	p.log.Warn("database server restarted in place", "region", r.name, "server", fresh.Name())
	if role == RolePrimary && sb != nil && !sb.Stopped() && p.haCtx != nil {
		p.haWG.Add(1)
		go func() {
			defer p.haWG.Done()
			if err := p.enableSync(p.haCtx, r); err != nil {
				p.log.Error("make the standby synchronous after a restart in place", "region", r.name, "err", err)
			}
		}()
	}
	_ = p.writeTopology(ctx)
	return nil
}

// restartCacheInPlace starts the region's failed redis-server again on its
// own directory (its append-only file) in the role the region's cache has,
// for when its replica cannot take over.
func (p *Platform) restartCacheInPlace(ctx context.Context, r *region, failed *redisproc.Server) error {
	r.dataMu.Lock()
	defer r.dataMu.Unlock()
	p.mu.Lock()
	cur, role := r.redis, r.rdRole
	p.mu.Unlock()
	if cur != failed || role == RoleFenced || p.regionKilled(r) {
		return nil
	}
	failed.Kill()
	opts := failed.Options()
	opts.ReplicaOf = ""
	if role != RolePrimary {
		// A replica comes back only as a replica.
		pr, err := p.cachePrimaryRegion()
		if err != nil {
			return fmt.Errorf("%s is a replica and %w to follow", failed.Name(), err)
		}
		opts.ReplicaOf = p.cacheServer(pr).Addr()
	}
	fresh := redisproc.New(opts)
	if err := fresh.Start(ctx); err != nil {
		return err
	}
	p.track("redis-server", fresh.Pid())
	p.mu.Lock()
	r.redis = fresh
	p.mu.Unlock()
	r.cacheEnd.SetTarget(fresh.Addr())
	p.log.Warn("cache server restarted in place", "region", r.name, "server", fresh.Name())
	_ = p.writeTopology(ctx)
	return nil
}

// replicaStuckAfter is how long a replica region's server may not stream,
// while a primary runs and nothing is partitioned, before it is rebuilt.
const replicaStuckAfter = 10 * time.Second

// checkReplicaFollows rebuilds a replica region's server that has stopped
// streaming although a primary runs and no partition is in force: after an
// in-region failover of the primary, a replica that had received WAL the
// promoted standby had not yet flushed cannot follow the new timeline. It
// is rewound onto the primary (its extra WAL was never acknowledged).
func (p *Platform) checkReplicaFollows(ctx context.Context, r *region, pg *pgproc.Server, c *zoneChecks) {
	if standbyStreams(ctx, pg) || p.primaryServer() == nil || p.anyPartitioned() {
		c.notStreamingSince = time.Time{}
		return
	}
	if c.notStreamingSince.IsZero() {
		c.notStreamingSince = time.Now()
		return
	}
	if time.Since(c.notStreamingSince) < replicaStuckAfter {
		return
	}
	c.notStreamingSince = time.Time{}
	p.log.Warn("database replica has not streamed for a while although the primary runs; rebuilding it", "region", r.name, "server", pg.Name(), "after", replicaStuckAfter)
	p.haWG.Add(1)
	go func() {
		defer p.haWG.Done()
		msg, err := p.reprotect(ctx, r.name, true)
		if err != nil {
			p.log.Error("rebuild the stuck replica", "region", r.name, "err", err)
			return
		}
		p.log.Warn("stuck replica rebuilt", "region", r.name, "result", msg)
		_ = p.writeTopology(ctx)
	}()
}

func (p *Platform) anyPartitioned() bool {
	b := p.faults()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, name := range p.order {
		if b.region(name).cut != nil {
			return true
		}
	}
	return false
}
