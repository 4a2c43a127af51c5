package local_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/procutil"
	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/failover"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func stateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "tandem-platform-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func postClaim(t *testing.T, url, key string) (int, map[string]any) {
	t.Helper()
	body := `{"memberId":"M-7","state":"OH","householdSize":3,"monthlyIncomeCents":180000,"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":12500}`
	req, _ := http.NewRequest(http.MethodPost, url+"/v1/claims", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post claim: %v", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func getClaim(t *testing.T, url, id string) int {
	t.Helper()
	resp, err := http.Get(url + "/v1/claims/" + id)
	if err != nil {
		t.Fatalf("get claim: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestPlatformLifecycle brings up the real local platform (PostgreSQL
// primary and replica, redis primary and replica, proxies, service
// processes), drives a deploy and a failover through the control socket,
// and takes it down, checking that nothing is left running.
func TestPlatformLifecycle(t *testing.T) {
	spec, err := stacks.Load("../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	spec.Deploy.StepBake = stacks.D(300 * time.Millisecond)
	bin := testinfra.ServiceBinaries(t)
	dir := stateDir(t)
	ctx := context.Background()
	var progress bytes.Buffer
	p, err := local.Up(ctx, local.Config{Stack: "local", Spec: spec, StateDir: dir, BinDir: bin, Progress: &progress})
	if err != nil {
		t.Fatalf("Up: %v\n%s", err, progress.String())
	}
	downed := false
	defer func() {
		if !downed {
			p.Down(ctx)
		}
	}()
	if err := p.Serve(ctx); err != nil {
		t.Fatal(err)
	}

	st, err := p.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.FrontDoor.URL == "" || st.ActiveRegion != "local-a" || len(st.Regions) != 2 {
		t.Fatalf("status = %+v", st)
	}
	for _, r := range st.Regions {
		if r.ProxyURL == "" {
			t.Errorf("region %s has no proxy URL", r.Name)
		}
	}
	if st.Regions[0].Database.Role != topology.RolePrimary || st.Regions[1].Database.Role != topology.RoleReplica {
		t.Errorf("database roles = %s, %s; want primary, replica", st.Regions[0].Database.Role, st.Regions[1].Database.Role)
	}

	t.Run("a second platform on the same state directory is refused", func(t *testing.T) {
		_, err := local.Up(ctx, local.Config{Stack: "local", Spec: spec, StateDir: dir, BinDir: bin})
		if !errors.Is(err, local.ErrAlreadyUp) {
			t.Fatalf("second Up = %v, want ErrAlreadyUp", err)
		}
		if _, err := p.Status(ctx); err != nil {
			t.Fatalf("the first platform was disturbed: %v", err)
		}
	})

	c, err := local.Dial(dir)
	if err != nil {
		t.Fatal(err)
	}

	t.Run("bad calls are refused and change nothing", func(t *testing.T) {
		for name, call := range map[string]func() error{
			"unknown service": func() error {
				return c.Launch(ctx, "local-a", "nosuch", "green", topology.FleetSpec{Version: "v2", Count: 1})
			},
			"unknown region":             func() error { _, err := c.Weights(ctx, "nowhere", "claims"); return err },
			"traffic to an empty color":  func() error { return c.SetWeights(ctx, "local-a", "claims", topology.Weights{Blue: 50, Green: 50}) },
			"weights not summing to 100": func() error { return c.SetWeights(ctx, "local-a", "claims", topology.Weights{Blue: 60, Green: 60}) },
			"retire the live color":      func() error { return c.Retire(ctx, "local-a", "claims", "blue") },
			"too many tasks": func() error {
				return c.Launch(ctx, "local-a", "claims", "green", topology.FleetSpec{Version: "v2", Count: 99})
			},
		} {
			if err := call(); err == nil {
				t.Errorf("%s: accepted", name)
			}
		}
		w, err := c.Weights(ctx, "local-a", "claims")
		if err != nil || w != (topology.Weights{Blue: 100}) {
			t.Errorf("weights after bad calls = %v, %v; want 100/0", w, err)
		}
	})

	code, claim := postClaim(t, st.FrontDoor.URL, "before-failover")
	if code != http.StatusCreated {
		t.Fatalf("post claim: %d %v", code, claim)
	}
	id, _ := claim["id"].(string)

	t.Run("deploy through the control socket", func(t *testing.T) {
		eng := &deploy.Engine{Traffic: c, Fleet: c, Metrics: c, Test: c, Store: c, Holder: "test"}
		policy := deploy.PolicyFrom(spec.Deploy)
		policy.SkipAnalysis = true
		req := deploy.Request{Region: "local-a", Service: "claims", Version: "v2", Count: 1, Steps: spec.Deploy.Steps, Policy: policy}
		if _, _, err := eng.Start(ctx, req); err != nil {
			t.Fatal(err)
		}
		res, err := eng.Run(ctx, "claims")
		if err != nil || res.Status != deploy.StatusPromoted {
			t.Fatalf("deploy: %v, %+v", err, res)
		}
		st, _ := c.Status(ctx)
		svc := st.Regions[0].Services[1]
		if svc.Name != "claims" || svc.Weights != (topology.Weights{Green: 100}) || svc.Colors["green"].Version != "v2" {
			t.Errorf("claims after deploy = %+v", svc)
		}
		if _, ok := svc.Colors["blue"]; ok {
			t.Errorf("blue still has a fleet after promotion: %+v", svc.Colors)
		}
	})

	t.Run("failover through the control socket", func(t *testing.T) {
		eng := &failover.Engine{Routing: c, Fleets: c, Database: c, Cache: c, Store: c, Holder: "test"}
		if _, err := eng.Start(ctx, failover.FromPolicy(failover.Request{To: "local-b"}, spec)); err != nil {
			t.Fatal(err)
		}
		res, err := eng.Run(ctx)
		if err != nil {
			t.Fatalf("failover: %v", err)
		}
		if res.FencePosition == "" {
			t.Error("no fence position recorded")
		}
		st, _ := c.Status(ctx)
		if st.ActiveRegion != "local-b" || st.Regions[1].Database.Role != topology.RolePrimary || st.Regions[0].Database.Role != topology.RoleFenced {
			t.Errorf("after failover: active %s, databases %s/%s", st.ActiveRegion, st.Regions[0].Database.Role, st.Regions[1].Database.Role)
		}
		if got := st.Regions[1].Services[1].Colors["blue"].Version; got != "v2" {
			t.Errorf("local-b runs claims %q, want the release v2", got)
		}
		if code := getClaim(t, st.FrontDoor.URL, id); code != http.StatusOK {
			t.Errorf("claim acknowledged before the failover: GET = %d", code)
		}
		if code, body := postClaim(t, st.FrontDoor.URL, "after-failover"); code != http.StatusCreated {
			t.Errorf("write after failover: %d %v", code, body)
		}
	})

	// Note everything that must be gone after Down.
	var pids []struct {
		PID int `json:"pid"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "pids.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &pids); err != nil || len(pids) < 5 {
		t.Fatalf("pids.json: %v, %d entries", err, len(pids))
	}
	st, _ = c.Status(ctx)
	addrs := []string{strings.TrimPrefix(st.FrontDoor.URL, "http://")}
	for _, r := range st.Regions {
		addrs = append(addrs, strings.TrimPrefix(r.ProxyURL, "http://"), r.Database.Endpoint, r.Cache.Endpoint, r.Cache.Server)
	}

	p.Down(ctx)
	downed = true
	for _, e := range pids {
		if procutil.Alive(e.PID) {
			t.Errorf("process %d still runs after Down", e.PID)
		}
	}
	for _, a := range addrs {
		if conn, err := net.DialTimeout("tcp", a, time.Second); err == nil {
			conn.Close()
			t.Errorf("%s still accepts connections after Down", a)
		}
	}
	if local.Running(dir) {
		t.Error("the state directory is still locked after Down")
	}
	if _, err := local.Dial(dir); err == nil {
		t.Error("the control socket still answers after Down")
	}
}
