package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/procutil"
	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// eventually retries check every 100ms until it returns nil or timeout
// passes, and fails the test with its last error.
func eventually(t *testing.T, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func frontDoorGet(url string) (int, string, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	resp, err := hc.Get(url + "/v1/notifications?claimId=00000000-0000-0000-0000-000000000000")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func pgQuery(ctx context.Context, dsn, q string, out ...any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if len(out) == 0 {
		_, err = conn.Exec(ctx, q)
		return err
	}
	return conn.QueryRow(ctx, q).Scan(out...)
}

func redisLink(ctx context.Context, addr, password string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, MaxRetries: -1})
	defer c.Close()
	info, err := c.Info(ctx, "replication").Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "master_link_status:"); ok {
			return v, nil
		}
	}
	return "", fmt.Errorf("no replication link in %q", info)
}

// testPlatform is a real platform for one test, served on its control
// socket, with its secrets.
type testPlatform struct {
	p       *local.Platform
	c       *local.Client
	dir     string
	secrets struct{ Postgres, Redis string }
}

// upPlatform brings up spec's platform; it goes down when the test ends.
func upPlatform(t *testing.T, spec *stacks.Spec) *testPlatform {
	t.Helper()
	tp := &testPlatform{dir: stateDir(t)}
	ctx := context.Background()
	var progress bytes.Buffer
	p, err := local.Up(ctx, local.Config{Stack: "local", Spec: spec, StateDir: tp.dir, BinDir: testinfra.ServiceBinaries(t), Progress: &progress})
	if err != nil {
		t.Fatalf("Up: %v\n%s", err, progress.String())
	}
	tp.p = p
	t.Cleanup(func() { p.Down(context.Background()) })
	if err := p.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if tp.c, err = local.Dial(tp.dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(tp.dir, "secrets.json"))
	if err != nil || json.Unmarshal(raw, &tp.secrets) != nil {
		t.Fatalf("secrets.json: %v", err)
	}
	return tp
}

// liveServiceProcesses lists the platform's service processes that still
// run, from its pid registry.
func liveServiceProcesses(t *testing.T, dir string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "pids.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pids []struct {
		PID  int    `json:"pid"`
		Comm string `json:"comm"`
	}
	if err := json.Unmarshal(raw, &pids); err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, e := range pids {
		switch e.Comm {
		case "eligibility", "claims", "notifications":
			comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", e.PID))
			if err == nil && procutil.Alive(e.PID) && strings.TrimSpace(string(comm)) == e.Comm {
				live = append(live, fmt.Sprintf("%s %d", e.Comm, e.PID))
			}
		}
	}
	return live
}

// TestFaults injects every fault into a real platform through the control
// socket and checks each on the processes, endpoints and replication
// themselves, then heals.
func TestFaults(t *testing.T) {
	spec, err := stacks.Load("../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tp := upPlatform(t, spec)
	c, dir, secrets := tp.c, tp.dir, tp.secrets
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a, b := st.Regions[0], st.Regions[1]
	dsn := func(addr string) string { return pgproc.DSN(addr, secrets.Postgres, "postgres") }

	t.Run("bad calls are refused", func(t *testing.T) {
		if _, err := c.KillRegion(ctx, "nowhere"); err == nil || !strings.Contains(err.Error(), `unknown region "nowhere"`) {
			t.Errorf("kill of an unknown region: %v", err)
		}
		if _, err := c.Partition(ctx, "nowhere"); err == nil {
			t.Error("partition of an unknown region accepted")
		}
		if _, err := c.SlowDatabase(ctx, "local-a", -time.Second); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("negative delay: %v", err)
		}
		f, err := c.Faults(ctx)
		if err != nil || len(f.Regions) != 2 || f.Region("local-a") != (local.RegionFaults{Region: "local-a"}) {
			t.Errorf("faults after bad calls: %+v, %v; want none", f, err)
		}
	})

	t.Run("slow-db delays answers on open connections", func(t *testing.T) {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(cctx, dsn(a.Database.Endpoint))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		const delay = 200 * time.Millisecond
		rep, err := c.SlowDatabase(ctx, "local-a", delay)
		if err != nil || rep.Fault != "slow-db" || len(rep.Actions) != 1 || !strings.Contains(rep.Actions[0], "200ms") {
			t.Fatalf("slow-db: %+v, %v", rep, err)
		}
		start := time.Now()
		if _, err := conn.Exec(cctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		// Only the lower bound is certain.
		if took := time.Since(start); took < delay {
			t.Errorf("a query on an open connection took %s with %s of delay", took, delay)
		}
		if f, _ := c.Faults(ctx); f.Region("local-a").DatabaseDelay != delay {
			t.Errorf("faults: %+v", f)
		}
		rep, err = c.Heal(ctx)
		if err != nil || len(rep.Actions) != 1 || !strings.Contains(rep.Actions[0], "no longer delays") {
			t.Fatalf("heal: %+v, %v", rep, err)
		}
		if f, _ := c.Faults(ctx); f.Region("local-a").DatabaseDelay != 0 {
			t.Errorf("delay after heal: %+v", f)
		}
	})

	t.Run("partition cuts the standby off and heal reconnects it", func(t *testing.T) {
		rep, err := c.Partition(ctx, "local-b")
		if err != nil {
			t.Fatalf("partition: %v (%+v)", err, rep)
		}
		for _, want := range []string{"PostgreSQL replica in local-b stopped streaming from local-a", "redis replica in local-b stopped replicating from local-a", "refuse connections", "stopped listening"} {
			if !strings.Contains(strings.Join(rep.Actions, "\n"), want) {
				t.Errorf("partition did not say %q: %v", want, rep.Actions)
			}
		}
		if err := pgQuery(ctx, dsn(b.Database.Endpoint), "SELECT 1"); err == nil {
			t.Error("local-b's database endpoint still answers")
		}
		if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(b.ProxyURL, "http://"), time.Second); err == nil {
			conn.Close()
			t.Error("local-b's proxy still accepts connections")
		}
		var receivers int
		if err := pgQuery(ctx, dsn(b.Database.Server), "SELECT count(*) FROM pg_stat_wal_receiver", &receivers); err != nil || receivers != 0 {
			t.Errorf("local-b's replica: %d WAL receivers, %v; want none", receivers, err)
		}
		eventually(t, 10*time.Second, "local-b's redis link down", func() error {
			if link, err := redisLink(ctx, b.Cache.Server, secrets.Redis); err != nil || link != "down" {
				return fmt.Errorf("link %q, %v", link, err)
			}
			return nil
		})
		if f, _ := c.Faults(ctx); !f.Region("local-b").Partitioned || f.Region("local-a").Partitioned {
			t.Errorf("faults: %+v", f)
		}
		// The active region does not notice: the front door serves, and
		// writes go on (without reaching local-b).
		if code, body, err := frontDoorGet(st.FrontDoor.URL); err != nil || code != http.StatusOK {
			t.Errorf("front door during the standby's partition: %d %s %v", code, body, err)
		}
		if err := pgQuery(ctx, dsn(a.Database.Endpoint), "CREATE TABLE partition_probe AS SELECT 42 AS answer"); err != nil {
			t.Fatal(err)
		}
		if rep, err := c.Partition(ctx, "local-b"); err != nil || len(rep.Actions) != 0 || !strings.Contains(strings.Join(rep.Notes, ""), "already") {
			t.Errorf("second partition: %+v, %v", rep, err)
		}

		rep, err = c.Heal(ctx)
		if err != nil {
			t.Fatalf("heal: %v (%+v)", err, rep)
		}
		for _, want := range []string{"streams from local-a again", "replicates again", "accepts connections again", "listens again"} {
			if !strings.Contains(strings.Join(rep.Actions, "\n"), want) {
				t.Errorf("heal did not say %q: %v", want, rep.Actions)
			}
		}
		eventually(t, 30*time.Second, "the write made during the partition reaches local-b", func() error {
			var answer int
			return pgQuery(ctx, dsn(b.Database.Endpoint), "SELECT answer FROM partition_probe", &answer)
		})
		eventually(t, 30*time.Second, "local-b's redis link up", func() error {
			if link, err := redisLink(ctx, b.Cache.Server, secrets.Redis); err != nil || link != "up" {
				return fmt.Errorf("link %q, %v", link, err)
			}
			return nil
		})
		if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(b.ProxyURL, "http://"), time.Second); err != nil {
			t.Errorf("local-b's proxy after heal: %v", err)
		} else {
			conn.Close()
		}
	})

	t.Run("partition of the active region stops the front door reaching it", func(t *testing.T) {
		if _, err := c.Partition(ctx, "local-a"); err != nil {
			t.Fatal(err)
		}
		code, body, err := frontDoorGet(st.FrontDoor.URL)
		if err != nil || code != http.StatusBadGateway || !strings.Contains(body, "connection refused") {
			t.Errorf("front door during the partition: %d %s %v; want 502, refused", code, body, err)
		}
		if _, err := c.Heal(ctx); err != nil {
			t.Fatal(err)
		}
		eventually(t, 30*time.Second, "the front door serves after heal", func() error {
			code, body, err := frontDoorGet(st.FrontDoor.URL)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("%d %s %v", code, body, err)
			}
			return nil
		})
	})

	t.Run("kill-region ends every process for good", func(t *testing.T) {
		rep, err := c.KillRegion(ctx, "local-b")
		if err != nil || !strings.Contains(strings.Join(rep.Actions, "\n"), "SIGKILL PostgreSQL (replica") {
			t.Fatalf("kill local-b: %+v, %v", rep, err)
		}
		if len(liveServiceProcesses(t, dir)) == 0 {
			t.Fatal("no service process runs before local-a is killed")
		}
		rep, err = c.KillRegion(ctx, "local-a")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(rep.Actions[0], "SIGKILL 5 service tasks") || !strings.Contains(strings.Join(rep.Notes, ""), "stays killed") {
			t.Errorf("kill local-a said %+v", rep)
		}
		// Give the supervisor time to restart a crashed task (its first
		// backoff is 200ms): nothing may come back.
		time.Sleep(time.Second)
		if live := liveServiceProcesses(t, dir); len(live) > 0 {
			t.Errorf("service processes run after the region kill: %v", live)
		}
		st, err := c.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range st.Regions {
			if r.Database.Role != topology.RoleDown || r.Cache.Role != topology.RoleDown {
				t.Errorf("status of %s: database %s, cache %s; want down", r.Name, r.Database.Role, r.Cache.Role)
			}
		}
		if code, _, _ := frontDoorGet(st.FrontDoor.URL); code == http.StatusOK {
			t.Error("the front door still serves from a killed region")
		}
		rep, err = c.Heal(ctx)
		if err != nil || len(rep.Actions) != 0 || strings.Count(strings.Join(rep.Notes, "\n"), "stays killed") != 2 {
			t.Errorf("heal after kills: %+v, %v", rep, err)
		}
		if rep, err := c.Partition(ctx, "local-a"); err != nil || len(rep.Actions) != 0 {
			t.Errorf("partition of a killed region: %+v, %v; want a note and nothing done", rep, err)
		}
		f, _ := c.Faults(ctx)
		if !f.Region("local-a").Killed || !f.Region("local-b").Killed || f.Region("local-a").Partitioned {
			t.Errorf("faults after kills: %+v", f)
		}
	})
}
