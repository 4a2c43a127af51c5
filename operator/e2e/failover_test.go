package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/gameday"
	"github.com/tandemhq/tandem/stacks"
)

func (h *harness) pgPassword() string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, "secrets.json"))
	if err != nil {
		h.t.Fatal(err)
	}
	var s struct{ Postgres string }
	if err := json.Unmarshal(b, &s); err != nil {
		h.t.Fatal(err)
	}
	return s.Postgres
}

// writablePrimaries counts the database servers that would take a write
// right now (not in recovery, not read-only).
func (h *harness) writablePrimaries(ctx context.Context, password string) (int, []string) {
	st, err := h.c.Status(ctx)
	if err != nil {
		return 0, nil
	}
	n := 0
	var who []string
	for _, r := range st.Regions {
		servers := map[string]string{r.Database.Name: r.Database.Server}
		if sb := r.Database.Standby; sb != nil {
			servers[sb.Name] = sb.Server
		}
		for name, addr := range servers {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			conn, err := pgx.Connect(cctx, pgproc.DSN(addr, password, "postgres"))
			if err == nil {
				var writable bool
				if conn.QueryRow(cctx, "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'").Scan(&writable) == nil && writable {
					n++
					who = append(who, name)
				}
				conn.Close(ctx)
			}
			cancel()
		}
	}
	return n, who
}

// TestSwitchoverKilledAtEachStepAndFailback fails the platform back and
// forth between the regions under write load, killing the operator with
// SIGKILL at a different step of each failover and finishing it with
// `tandem failover resume`, reprotecting the old region after each. At
// every sampled moment at most one database takes writes; at the end every
// acknowledged claim is there.
func TestSwitchoverKilledAtEachStepAndFailback(t *testing.T) {
	h := newHarness(t, fastDeploys)
	ctx := context.Background()
	pw := h.pgPassword()
	load := gameday.NewTraffic(h.front, 300)
	load.Start()
	defer load.Stop()

	var mu sync.Mutex
	var samples int
	var split []string
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			n, who := h.writablePrimaries(ctx, pw)
			mu.Lock()
			samples++
			if n > 1 {
				split = append(split, strings.Join(who, "+"))
			}
			mu.Unlock()
		}
	}()

	eng := &failover.Engine{Store: h.c}
	regions := h.spec.RegionNames()
	active := h.primary
	for step := range 10 {
		to := regions[0]
		if to == active {
			to = regions[1]
		}
		cmd := h.command("failover", "--to", to, "--planned", "--yes")
		var cliOut strings.Builder
		cmd.Stdout, cmd.Stderr = &cliOut, &cliOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		killedAt := -1
		deadline := time.Now().Add(90 * time.Second)
		for killedAt < 0 {
			f, err := eng.Current(ctx)
			fresh := err == nil && f.To == to && f.Started.After(time.Now().Add(-2*time.Minute))
			if fresh && (f.Next >= step || f.Status != failover.StatusRunning) {
				_ = cmd.Process.Signal(syscall.SIGKILL)
				killedAt = f.Next
				break
			}
			select {
			case <-exited:
				// The operator ended on its own before the step was
				// reached (it finished, or failed): resume takes over.
				if fresh {
					killedAt = f.Next
				} else {
					t.Fatalf("failover to %s never started:\n%s", to, cliOut.String())
				}
			default:
			}
			if time.Now().After(deadline) {
				_ = cmd.Process.Kill()
				t.Fatalf("failover to %s never reached step %d:\n%s", to, step, cliOut.String())
			}
			time.Sleep(2 * time.Millisecond)
		}
		<-exited
		if code, out := h.run("failover", "resume"); code != 0 && !strings.Contains(out, "is completed") {
			st, _ := eng.Current(ctx)
			t.Fatalf("resume after a kill at step %d: exit %d\n%s\njournal: %+v", killedAt, code, out, st)
		}
		f, _ := eng.Current(ctx)
		if f.Status != failover.StatusCompleted || f.To != to || f.LostBytes != 0 {
			t.Fatalf("failover to %s: %s, lost %d bytes", to, f.Status, f.LostBytes)
		}
		t.Logf("failover %s -> %s: killed before step %d, resumed at epoch %d; writes unavailable %s", f.From, f.To, killedAt+1, f.Epoch, f.Unavailable.Round(time.Millisecond))
		if code, out := h.run("reprotect", active); code != 0 {
			t.Fatalf("reprotect %s: exit %d\n%s", active, code, out)
		}
		active = to
	}
	load.Stop()
	close(stop)
	<-sampled
	n, missing, changed, err := load.ReadBack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 || len(changed) != 0 || n < 100 {
		t.Errorf("claims: %d acknowledged, %d missing, %d changed", n, len(missing), len(changed))
	}
	mu.Lock()
	defer mu.Unlock()
	if len(split) > 0 {
		t.Errorf("%d of %d samples saw two writable primaries: %v", len(split), samples, split[:min(5, len(split))])
	}
	if samples < 100 {
		t.Errorf("only %d samples", samples)
	}
}

// TestSwitchoverUnderWriteLoad: a planned switchover under 200 writes/s
// loses no acknowledged write and reports its write unavailability; the old
// primary, started again by hand, takes no write.
func TestSwitchoverUnderWriteLoad(t *testing.T) {
	h := newHarness(t, fastDeploys)
	ctx := context.Background()
	load := gameday.NewTraffic(h.front, 600) // a third are claim submissions: 200 writes/s
	load.Start()
	defer load.Stop()
	time.Sleep(3 * time.Second)
	load.Phase("switchover")
	code, out := h.run("failover", "--to", "local-b", "--yes", "-o", "json")
	if code != 0 {
		t.Fatalf("switchover: exit %d\n%s", code, out)
	}
	var f failover.Failover
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		t.Fatalf("failover -o json: %v\n%s", err, out)
	}
	load.Phase("after")
	time.Sleep(3 * time.Second)
	load.Stop()
	n, missing, changed, err := load.ReadBack(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sent, failedN := failed(load.Phases(), "switchover")
	t.Logf("switchover: mode %s, writes unavailable %s, %d of %d requests failed during it; %d claims acknowledged, %d missing",
		f.Mode, f.Unavailable.Round(time.Millisecond), failedN, sent, n, len(missing))
	if f.Mode != failover.Planned || f.Unavailable <= 0 || f.LostBytes != 0 {
		t.Errorf("failover = %+v", f)
	}
	if len(missing) != 0 || len(changed) != 0 || n < 500 {
		t.Errorf("claims: %d acknowledged, %d missing, %d changed", n, len(missing), len(changed))
	}

	// Someone starts the old primary again by hand.
	st, err := h.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	assertFencedOnRestart(t, h, st.Regions[0].Database.DataDir, st.Regions[0].Database.Server)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// TestFailoverRefusedOnReplicaLag: a replica that applies WAL late is
// refused with a clear message (exit 4), and --force proceeds.
func TestFailoverRefusedOnReplicaLag(t *testing.T) {
	h := newHarness(t, func(s *stacks.Spec) {
		fastDeploys(s)
		s.Failover.MaxReplicaLag = stacks.D(2 * time.Second)
		s.Failover.CatchUpTimeout = stacks.D(60 * time.Second)
	})
	ctx := context.Background()
	st, _ := h.c.Status(ctx)
	conn, err := pgx.Connect(ctx, pgproc.DSN(st.Regions[1].Database.Server, h.pgPassword(), "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"ALTER SYSTEM SET recovery_min_apply_delay = '6s'", "SELECT pg_reload_conf()"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close(ctx)
	load := gameday.NewTraffic(h.front, 150)
	load.Start()
	defer load.Stop()
	var lagged bool
	for range 40 {
		time.Sleep(250 * time.Millisecond)
		if l, err := h.c.ReplicaLag(ctx, "local-b"); err == nil && l.Seconds > 3 {
			lagged = true
			break
		}
	}
	if !lagged {
		t.Fatal("the delayed replica never lagged")
	}
	code, out := h.run("failover", "--to", "local-b", "--yes")
	if code != 4 || !strings.Contains(out, "replica lag in local-b is") || !strings.Contains(out, "above the limit 2s") || !strings.Contains(out, "--force") {
		t.Fatalf("lagging replica: exit %d, want 4 with a clear refusal:\n%s", code, out)
	}
	if st2, _ := h.c.Status(ctx); st2.ActiveRegion != "local-a" {
		t.Fatalf("a refused failover moved routing to %s", st2.ActiveRegion)
	}
	code, out = h.run("failover", "--to", "local-b", "--yes", "--force")
	if code != 0 {
		t.Fatalf("--force: exit %d\n%s", code, out)
	}
	load.Stop()
	n, missing, _, err := load.ReadBack(ctx)
	if err != nil || len(missing) != 0 {
		t.Errorf("after a forced planned switchover: %d acknowledged, %d missing (%v)", n, len(missing), err)
	}
}

// TestReprotectThatCannotRejoinFails: with the new primary's region
// partitioned away, neither pg_rewind nor a base backup can reach it; the
// reprotect exits non-zero and says both failed, and the region is not
// reported as a healthy replica.
func TestReprotectThatCannotRejoinFails(t *testing.T) {
	h := newHarness(t, fastDeploys)
	ctx := context.Background()
	if code, out := h.run("failover", "--to", "local-b", "--yes"); code != 0 {
		t.Fatalf("failover: exit %d\n%s", code, out)
	}
	if _, err := h.c.Partition(ctx, "local-b"); err != nil {
		t.Fatal(err)
	}
	code, out := h.run("reprotect", "local-a")
	if code == 0 || !strings.Contains(out, "reprotect local-a failed: pg_rewind:") || !strings.Contains(out, "base backup:") {
		t.Fatalf("reprotect with the primary unreachable: exit %d, want non-zero naming both failures:\n%s", code, out)
	}
	st, err := h.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if role := st.Regions[0].Database.Role; role == "replica" {
		t.Errorf("a failed rejoin is reported as a replica")
	}
	if _, err := h.c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	if code, out := h.run("reprotect", "local-a"); code != 0 {
		t.Fatalf("reprotect after heal: exit %d\n%s", code, out)
	}
}
