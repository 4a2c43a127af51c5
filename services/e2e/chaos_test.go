package e2e

import (
	"context"
	"flag"
	"net/http"
	"testing"
	"time"
)

// soak runs the long variants of the chaos tests: go test ./services/e2e
// -run Chaos -tandem.soak (200 kills instead of 20).
var soak = flag.Bool("tandem.soak", false, "run the long chaos variants (200 claims kills)")

// TestClaimsKill9Chaos kills the claims process with SIGKILL at random
// moments while four clients submit claims, and restarts it on the same
// port, at least 20 times. Clients retry a submission whose answer was
// lost with the same Idempotency-Key, as the contract asks. In the end
// every acknowledged claim is stored once under its key, and each of its
// decisions yields exactly one notification delivered exactly once: none
// lost to a kill between commit and publication (the outbox survives it),
// none duplicated by a relay killed between publishing and marking (the
// consumer's inbox absorbs the repeat).
func TestClaimsKill9Chaos(t *testing.T) {
	kills := 20
	if *soak {
		kills = 200
	}
	c := newCluster(t, nil)
	l := newLoad(c.claims.url)
	for i := range kills {
		ctx, cancel := context.WithCancel(context.Background())
		workers := l.run(ctx, 4)
		time.Sleep(jitter(100*time.Millisecond, 600*time.Millisecond))
		c.claims.kill()
		cancel()
		workers.Wait()
		c.claims.restart(t)
		if t.Failed() {
			t.Fatalf("stopped after %d kills", i+1)
		}
	}
	l.settle(t)
	t.Logf("after %d kills: %s", kills, l.summary())
	l.mu.Lock()
	for code, n := range l.status {
		if code >= 500 {
			t.Errorf("%d answers were %d", n, code)
		}
	}
	l.mu.Unlock()
	c.verifyExactlyOnce(t, l)
}

// TestEligibilityKilledMidLoad kills eligibility with SIGKILL while claims
// are being submitted: every submission is still answered 201 (pended
// while eligibility is away, never a 5xx); after eligibility restarts on
// the same port every pended claim is adjudicated and notified.
func TestEligibilityKilledMidLoad(t *testing.T) {
	c := newCluster(t, map[string]map[string]string{
		"claims": {"ELIGIBILITY_BREAKER_DELAY": "500ms", "ELIGIBILITY_TIMEOUT": "1s"},
	})
	l := newLoad(c.claims.url)
	ctx, cancel := context.WithCancel(context.Background())
	workers := l.run(ctx, 4)
	time.Sleep(700 * time.Millisecond)
	c.elig.kill()
	time.Sleep(1500 * time.Millisecond)
	c.elig.restart(t)
	time.Sleep(700 * time.Millisecond)
	cancel()
	workers.Wait()
	t.Log(l.summary())

	l.mu.Lock()
	pended := 0
	for _, a := range l.acked {
		if a.status == "pended" {
			pended++
		}
	}
	for code, n := range l.status {
		if code != http.StatusCreated {
			t.Errorf("%d submissions answered %d, want every one 201", n, code)
		}
	}
	if l.errors > 0 {
		t.Errorf("%d submissions got no answer; claims must answer while eligibility is down", l.errors)
	}
	l.mu.Unlock()
	l.settle(t) // the submissions abandoned when the load stopped
	if pended == 0 {
		t.Fatal("no claim was pended: eligibility was not down while claims arrived")
	}
	t.Logf("%d claims pended while eligibility was down", pended)
	// verifyExactlyOnce waits until no claim is pended any more and each
	// pended claim has two notifications: pended, then its decision.
	c.verifyExactlyOnce(t, l)
}
