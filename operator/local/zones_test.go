package local_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// claimWriter submits claims through the front door from a few workers
// and records what was acknowledged and when writes failed.
type claimWriter struct {
	url  string
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	acked    []string
	failures int
	reasons  map[string]int // failures by status and problem title
	lastOK   time.Time
	longest  time.Duration // longest gap between acknowledgements
}

func startClaimWriter(url string, workers int) *claimWriter {
	w := &claimWriter{url: url, stop: make(chan struct{}), lastOK: time.Now(), reasons: map[string]int{}}
	hc := &http.Client{Timeout: 10 * time.Second}
	body := `{"memberId":"M-7","state":"OH","householdSize":3,"monthlyIncomeCents":180000,"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":12500}`
	for i := range workers {
		w.wg.Add(1)
		go func() {
			defer w.wg.Done()
			for n := 0; ; n++ {
				select {
				case <-w.stop:
					return
				case <-time.After(10 * time.Millisecond):
				}
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/claims", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("zone-%d-%d-%d", i, n, time.Now().UnixNano()))
				resp, err := hc.Do(req)
				var out struct{ ID, Title, Detail string }
				ok := err == nil && resp.StatusCode == http.StatusCreated
				reason := fmt.Sprint(err)
				if err == nil {
					_ = json.NewDecoder(resp.Body).Decode(&out)
					resp.Body.Close()
					reason = fmt.Sprintf("%d %s", resp.StatusCode, out.Detail)
				}
				w.mu.Lock()
				if ok && out.ID != "" {
					w.acked = append(w.acked, out.ID)
					if gap := time.Since(w.lastOK); gap > w.longest {
						w.longest = gap
					}
					w.lastOK = time.Now()
				} else {
					w.failures++
					w.reasons[reason]++
				}
				w.mu.Unlock()
			}
		}()
	}
	return w
}

func (w *claimWriter) finish() (acked []string, failures int, longest time.Duration, reasons map[string]int) {
	close(w.stop)
	w.wg.Wait()
	return w.acked, w.failures, w.longest, w.reasons
}

// missingClaims counts the acknowledged claims the database does not have.
func missingClaims(t *testing.T, dsn string, ids []string) int {
	t.Helper()
	var n int
	q := fmt.Sprintf("SELECT count(*) FROM claims WHERE id = ANY('{%s}'::uuid[])", strings.Join(ids, ","))
	if err := pgQuery(context.Background(), dsn, q, &n); err != nil {
		t.Fatalf("count claims: %v", err)
	}
	return len(ids) - n
}

// TestInRegionFailover kills the servers behind the primary region's
// database and cache endpoints (a zone failure) under write load: the
// standbys in the other zone take over, the endpoints move, no
// acknowledged claim is lost, the failed servers come back as standbys,
// and the other region's replicas follow. A fenced region's standby is
// never promoted.
func TestInRegionFailover(t *testing.T) {
	spec, err := stacks.Load("../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !spec.Database.MultiAZ || spec.Cache.Replicas < 1 {
		t.Fatal("the local stack has no in-region standbys (database.multiAZ, cache.replicas)")
	}
	ctx := context.Background()
	tp := upPlatform(t, spec)
	p, c, secrets := tp.p, tp.c, tp.secrets
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := st.Regions[0]
	if a.Database.Standby == nil || a.Database.Standby.State != topology.StandbySync || a.Cache.Standby == nil {
		t.Fatalf("local-a standbys at up: database %+v, cache %+v; want a synchronous database standby and a cache replica", a.Database.Standby, a.Cache.Standby)
	}
	if b := st.Regions[1]; b.Database.Standby == nil || b.Database.Standby.State != topology.StandbyStreaming {
		t.Fatalf("local-b database standby at up: %+v; want a streaming cascading replica", b.Database.Standby)
	}
	claimsDSN := pgproc.DSN(a.Database.Endpoint, secrets.Postgres, "claims")
	region := func(name string) topology.RegionStatus { t.Helper(); return regionStatus(t, c, name) }

	t.Run("database server killed under write load", func(t *testing.T) {
		w := startClaimWriter(st.FrontDoor.URL, 4)
		time.Sleep(2 * time.Second)
		before := region("local-a").Database
		rep, err := c.KillDatabase(ctx, "local-a")
		if err != nil || len(rep.Actions) != 1 || !strings.Contains(strings.Join(rep.Notes, " "), "takes over") {
			t.Fatalf("kill-db: %+v, %v", rep, err)
		}
		eventually(t, 15*time.Second, "database failover to the standby", func() error {
			d := region("local-a").Database
			if d.Name != before.Standby.Name || d.Role != topology.RolePrimary || len(d.Failovers) != 1 {
				return fmt.Errorf("database %s %s, %d failovers", d.Name, d.Role, len(d.Failovers))
			}
			return nil
		})
		time.Sleep(3 * time.Second)
		acked, failures, longest, reasons := w.finish()
		d := region("local-a").Database
		missing := missingClaims(t, claimsDSN, acked)
		t.Logf("in-region database failover %s -> %s took %dms after the kill was noticed; %d claims acknowledged, %d missing, %d writes failed, longest gap between acknowledgements %s",
			d.Failovers[0].From, d.Failovers[0].To, d.Failovers[0].TookMs, len(acked), missing, failures, longest.Round(time.Millisecond))
		if failures > 0 {
			t.Logf("failed writes: %v", reasons)
		}
		if missing != 0 || len(acked) < 100 {
			t.Errorf("%d claims acknowledged, %d missing", len(acked), missing)
		}
		if d.Endpoint != before.Endpoint {
			t.Errorf("the endpoint changed: %s -> %s; clients keep one name", before.Endpoint, d.Endpoint)
		}
		eventually(t, 60*time.Second, "the failed server rebuilt as the synchronous standby", func() error {
			sb := region("local-a").Database.Standby
			if sb == nil || sb.Name != before.Name || sb.State != topology.StandbySync {
				return fmt.Errorf("standby %+v", sb)
			}
			return nil
		})
		// A replica that had WAL the promoted standby lacked is rewound
		// by the watcher after it has not streamed for 10s.
		eventually(t, 60*time.Second, "the replica in local-b streams from the new primary", func() error {
			lag, err := p.ReplicaLag(ctx, "local-b")
			if err != nil {
				return err
			}
			if !lag.Streaming || lag.Bytes != 0 {
				return fmt.Errorf("lag %+v", lag)
			}
			return nil
		})
	})

	t.Run("cache server killed", func(t *testing.T) {
		before := region("local-a").Cache
		rc := redis.NewClient(&redis.Options{Addr: before.Endpoint, Password: secrets.Redis})
		defer rc.Close()
		if err := rc.Set(ctx, "zone-test", "before", 0).Err(); err != nil {
			t.Fatal(err)
		}
		// The write must reach the replica before the kill (replication is
		// asynchronous, as in ElastiCache).
		if err := rc.Do(ctx, "WAIT", 1, 2000).Err(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.KillCache(ctx, "local-a"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "cache failover to the replica", func() error {
			cs := region("local-a").Cache
			if cs.Name != before.Standby.Name || cs.Role != topology.RolePrimary || len(cs.Failovers) != 1 {
				return fmt.Errorf("cache %s %s, %d failovers", cs.Name, cs.Role, len(cs.Failovers))
			}
			return nil
		})
		fo := region("local-a").Cache.Failovers[0]
		t.Logf("in-region cache failover %s -> %s took %dms after the kill was noticed", fo.From, fo.To, fo.TookMs)
		eventually(t, 10*time.Second, "a write through the same endpoint", func() error {
			if v, err := rc.Get(ctx, "zone-test").Result(); err != nil || v != "before" {
				return fmt.Errorf("read %q, %v", v, err)
			}
			return rc.Set(ctx, "zone-test", "after", 0).Err()
		})
		eventually(t, 30*time.Second, "the failed cache server back as a replica, and local-b following", func() error {
			cs := region("local-a").Cache
			if cs.Standby == nil || cs.Standby.Name != before.Name || cs.Standby.State != topology.StandbyStreaming {
				return fmt.Errorf("replica %+v", cs.Standby)
			}
			link, err := redisLink(ctx, region("local-b").Cache.Server, secrets.Redis)
			if err != nil || link != "up" {
				return fmt.Errorf("local-b link %q, %v", link, err)
			}
			return nil
		})
	})

	t.Run("a failed standby is rebuilt and commits do not wait for it meanwhile", func(t *testing.T) {
		sb := region("local-a").Database.Standby
		if err := killPID(sb.PID); err != nil {
			t.Fatal(err)
		}
		// Writes go on: commits stop waiting for the dead standby.
		eventually(t, 10*time.Second, "a commit with the standby dead", func() error {
			return pgQuery(ctx, pgproc.DSN(region("local-a").Database.Endpoint, secrets.Postgres, "postgres"), "CREATE TABLE IF NOT EXISTS zone_probe (at timestamptz DEFAULT now()); INSERT INTO zone_probe DEFAULT VALUES")
		})
		eventually(t, 60*time.Second, "the standby rebuilt and synchronous again", func() error {
			s := region("local-a").Database.Standby
			if s == nil || s.PID == sb.PID || s.State != topology.StandbySync {
				return fmt.Errorf("standby %+v", s)
			}
			return nil
		})
	})

	t.Run("the standby of a fenced region is never promoted", func(t *testing.T) {
		eng := &failover.Engine{Routing: c, Fleets: c, Database: c, Cache: c, Store: c, Holder: "test"}
		if _, err := eng.Start(ctx, failover.FromPolicy(failover.Request{To: "local-b"}, spec)); err != nil {
			t.Fatal(err)
		}
		if _, err := eng.Run(ctx); err != nil {
			t.Fatalf("failover: %v", err)
		}
		time.Sleep(2 * time.Second)
		fa := region("local-a")
		if fa.Database.Role != topology.RoleFenced || fa.Database.Standby == nil || fa.Database.Standby.State != topology.RoleFenced {
			t.Errorf("local-a after failover: database %s, standby %+v; want both fenced", fa.Database.Role, fa.Database.Standby)
		}
		if len(fa.Database.Failovers) != 1 {
			t.Errorf("local-a had %d in-region failovers; the fence must not cause one", len(fa.Database.Failovers))
		}
		for _, addr := range []string{fa.Database.Server, fa.Database.Standby.Server} {
			if err := pgQuery(ctx, pgproc.DSN(addr, secrets.Postgres, "postgres"), "SELECT 1"); err == nil {
				t.Errorf("%s of fenced local-a still answers", addr)
			}
		}
		fb := region("local-b")
		if fb.Database.Role != topology.RolePrimary {
			t.Fatalf("local-b database %s", fb.Database.Role)
		}
		eventually(t, 60*time.Second, "local-b's standby synchronous after promotion", func() error {
			if s := region("local-b").Database.Standby; s == nil || s.State != topology.StandbySync {
				return fmt.Errorf("standby %+v", s)
			}
			return nil
		})

		msg, err := c.Reprotect(ctx, "local-a")
		if err != nil {
			t.Fatalf("reprotect: %v", err)
		}
		ra := region("local-a")
		if ra.Database.Role != topology.RoleReplica || ra.Database.Standby == nil || ra.Database.Standby.State != topology.StandbyStreaming {
			t.Errorf("local-a after reprotect (%s): database %s, standby %+v", msg, ra.Database.Role, ra.Database.Standby)
		}
	})
}

func killPID(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("no pid")
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}

// TestZoneFailuresWithNoStandbyToTakeOver: when a server fails and its
// standby cannot take over (it is down too), the server is restarted in
// place and keeps its data; a replica region's standby takes over even
// while no primary runs (a cross-region failover between fence and
// promote), and a reprotect of one region does not hold up an in-region
// failover in another.
func TestZoneFailuresWithNoStandbyToTakeOver(t *testing.T) {
	spec, err := stacks.Load("../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tp := upPlatform(t, spec)
	c, secrets := tp.c, tp.secrets
	region := func(name string) topology.RegionStatus { t.Helper(); return regionStatus(t, c, name) }
	eventually(t, 30*time.Second, "standbys streaming", func() error {
		if s := region("local-a").Database.Standby; s == nil || s.State != topology.StandbySync {
			return fmt.Errorf("local-a standby %+v", s)
		}
		return nil
	})
	write := func(addr string) error {
		return pgQuery(ctx, pgproc.DSN(addr, secrets.Postgres, "postgres"), "CREATE TABLE IF NOT EXISTS zone_marks (n int); INSERT INTO zone_marks VALUES (1)")
	}
	marks := func(addr string) (int, error) {
		var n int
		err := pgQuery(ctx, pgproc.DSN(addr, secrets.Postgres, "postgres"), "SELECT count(*) FROM zone_marks", &n)
		return n, err
	}

	t.Run("database and its standby both killed: restarted in place", func(t *testing.T) {
		a := region("local-a")
		if err := write(a.Database.Endpoint); err != nil {
			t.Fatal(err)
		}
		if err := killPID(a.Database.Standby.PID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.KillDatabase(ctx, "local-a"); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		eventually(t, 30*time.Second, "a write through the endpoint again", func() error { return write(a.Database.Endpoint) })
		t.Logf("restarted in place: a write went through %s after the kill", time.Since(killed).Round(time.Millisecond))
		if n, err := marks(a.Database.Endpoint); err != nil || n != 2 {
			t.Errorf("marks after the restart: %d, %v; want both", n, err)
		}
		if d := region("local-a").Database; d.Name != a.Database.Name || len(d.Failovers) != 0 {
			t.Errorf("database after the restart: %s with %d in-region failovers; want %s restarted in place", d.Name, len(d.Failovers), a.Database.Name)
		}
		eventually(t, 60*time.Second, "the standby rebuilt and synchronous", func() error {
			if s := region("local-a").Database.Standby; s == nil || s.State != topology.StandbySync {
				return fmt.Errorf("standby %+v", s)
			}
			return nil
		})
	})

	t.Run("cache and its replica both killed: restarted in place", func(t *testing.T) {
		a := region("local-a")
		if err := killPID(a.Cache.Standby.PID); err != nil {
			t.Fatal(err)
		}
		if _, err := c.KillCache(ctx, "local-a"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the cache answers through its endpoint again", func() error {
			rc := redis.NewClient(&redis.Options{Addr: a.Cache.Endpoint, Password: secrets.Redis, MaxRetries: -1})
			defer rc.Close()
			return rc.Set(ctx, "zone-restart", "ok", 0).Err()
		})
		eventually(t, 30*time.Second, "the cache replica rebuilt", func() error {
			if s := region("local-a").Cache.Standby; s == nil || s.State != topology.StandbyStreaming {
				return fmt.Errorf("replica %+v", s)
			}
			return nil
		})
	})

	t.Run("replica region's standby takes over with no primary running", func(t *testing.T) {
		// A cross-region failover between its fence and its promotion
		// (which waits for the replica to have everything first).
		eventually(t, 30*time.Second, "local-b caught up", func() error {
			lag, err := tp.p.ReplicaLag(ctx, "local-b")
			if err != nil || !lag.Streaming || lag.Bytes != 0 {
				return fmt.Errorf("lag %+v, %v", lag, err)
			}
			return nil
		})
		if _, err := c.FenceDatabase(ctx, "local-a"); err != nil {
			t.Fatal(err)
		}
		b := region("local-b")
		if _, err := c.KillDatabase(ctx, "local-b"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 15*time.Second, "local-b's standby behind its endpoint", func() error {
			d := region("local-b").Database
			if d.Name != b.Database.Standby.Name || len(d.Failovers) != 1 {
				return fmt.Errorf("local-b database %s, %d failovers", d.Name, len(d.Failovers))
			}
			return nil
		})
		if err := c.PromoteDatabase(ctx, "local-b"); err != nil {
			t.Fatal(err)
		}
		if n, err := marks(b.Database.Endpoint); err != nil || n != 2 {
			t.Errorf("marks in local-b after promotion: %d, %v; want both", n, err)
		}
		if err := write(b.Database.Endpoint); err != nil {
			t.Errorf("write in local-b: %v", err)
		}
	})

	t.Run("a reprotect does not hold up an in-region failover elsewhere", func(t *testing.T) {
		eventually(t, 60*time.Second, "local-b's standby synchronous", func() error {
			if s := region("local-b").Database.Standby; s == nil || s.State != topology.StandbySync {
				return fmt.Errorf("standby %+v", s)
			}
			return nil
		})
		done := make(chan error, 1)
		go func() { _, err := c.Reprotect(ctx, "local-a"); done <- err }()
		time.Sleep(500 * time.Millisecond)
		killed := time.Now()
		if _, err := c.KillDatabase(ctx, "local-b"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "local-b failed over in-region", func() error {
			if n := len(region("local-b").Database.Failovers); n != 2 {
				return fmt.Errorf("%d in-region failovers", n)
			}
			return nil
		})
		took := time.Since(killed)
		t.Logf("in-region failover of local-b during a reprotect of local-a: noticed by the test %s after the kill", took.Round(time.Millisecond))
		err := <-done
		t.Logf("the reprotect running meanwhile: %v", err)
	})

	t.Run("a replica that stops following the primary is rebuilt", func(t *testing.T) {
		a := region("local-a")
		if a.Database.Role != topology.RoleReplica {
			t.Fatalf("local-a database %s; want the replica", a.Database.Role)
		}
		// As a replica that diverged would: it streams from nothing.
		if err := pgQuery(ctx, pgproc.DSN(a.Database.Server, secrets.Postgres, "postgres"), "ALTER SYSTEM SET primary_conninfo = ''"); err != nil {
			t.Fatal(err)
		}
		if err := pgQuery(ctx, pgproc.DSN(a.Database.Server, secrets.Postgres, "postgres"), "SELECT pg_reload_conf()"); err != nil {
			t.Fatal(err)
		}
		b := region("local-b")
		if err := write(b.Database.Endpoint); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "local-a streaming again with every mark", func() error {
			lag, err := tp.p.ReplicaLag(ctx, "local-a")
			if err != nil || !lag.Streaming || lag.Bytes != 0 {
				return fmt.Errorf("lag %+v, %v", lag, err)
			}
			return nil
		})
		if n, err := marks(region("local-a").Database.Server); err != nil || n != 4 {
			t.Errorf("marks in local-a after the rebuild: %d, %v; want 4", n, err)
		}
	})
}

// regionStatus is one region of the platform's status.
func regionStatus(t *testing.T, c *local.Client, name string) topology.RegionStatus {
	t.Helper()
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range st.Regions {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no region %s", name)
	return topology.RegionStatus{}
}
