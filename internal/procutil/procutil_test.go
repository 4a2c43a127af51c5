package procutil

import (
	"os/exec"
	"testing"
	"time"
)

// TestKillTakesDescendantsInSessionsOfTheirOwn: a child that left the
// process group (setsid, as PostgreSQL's backends do) dies with its parent,
// even while the whole tree is stopped.
func TestKillTakesDescendantsInSessionsOfTheirOwn(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	cmd := exec.Command("sh", "-c", "setsid sleep 60 & sleep 60 & wait")
	p, err := StartProc(cmd)
	if err != nil {
		t.Fatal(err)
	}
	var kids []int
	deadline := time.Now().Add(5 * time.Second)
	for len(kids) < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		kids = Descendants(p.Pid())
	}
	if len(kids) < 2 {
		t.Fatalf("descendants of %d = %v; want the two sleeps", p.Pid(), kids)
	}
	p.Kill()
	deadline = time.Now().Add(5 * time.Second)
	for _, k := range kids {
		for Alive(k) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if Alive(k) {
			t.Errorf("descendant %d still runs after Kill", k)
		}
	}
}
