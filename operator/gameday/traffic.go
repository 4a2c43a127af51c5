package gameday

import (
	"context"
	"net/http"
	"sync"
	"time"
)

// Traffic is the gameday's load generator for other rehearsals and tests:
// a steady open-loop mix of eligibility determinations and claim
// submissions through a front door, counted phase by phase.
type Traffic struct {
	l      *loader
	mu     sync.Mutex
	phases []*phase
	once   sync.Once
}

// NewTraffic prepares load at rate requests per second against url.
func NewTraffic(url string, rate int) *Traffic {
	t := &Traffic{l: newLoader(url, rate)}
	t.Phase("start")
	return t
}

// Start sends load until Stop.
func (t *Traffic) Start() { t.l.start() }

// Stop ends the load and waits for requests in flight.
func (t *Traffic) Stop() {
	t.once.Do(func() {
		t.l.halt()
		t.mu.Lock()
		t.phases[len(t.phases)-1].End = time.Now()
		t.mu.Unlock()
	})
}

// Phase starts counting a new phase.
func (t *Traffic) Phase(name string) {
	p := &phase{Name: name, Start: time.Now(), kinds: map[string]int64{}}
	t.mu.Lock()
	if n := len(t.phases); n > 0 {
		t.phases[n-1].End = p.Start
	}
	t.phases = append(t.phases, p)
	t.mu.Unlock()
	t.l.setPhase(p)
}

// Phases reports every phase so far.
func (t *Traffic) Phases() []PhaseReport {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]PhaseReport, 0, len(t.phases))
	for _, p := range t.phases {
		end := p.End
		if end.IsZero() {
			end = time.Now()
		}
		kinds := map[string]int64{}
		p.mu.Lock()
		for k, v := range p.kinds {
			kinds[k] = v
		}
		p.mu.Unlock()
		out = append(out, PhaseReport{Name: p.Name, Start: p.Start.Sub(t.phases[0].Start), Duration: end.Sub(p.Start),
			Sent: p.sent.Load(), Failed: p.failed.Load(), Failures: kinds})
	}
	return out
}

// ReadBack fetches every acknowledged claim and returns those missing or
// changed.
func (t *Traffic) ReadBack(ctx context.Context) (acknowledged int, missing, changed []string, err error) {
	acks := t.l.acknowledged()
	missing, changed, err = readBack(ctx, &http.Client{Timeout: 10 * time.Second}, t.l.url, acks)
	return len(acks), missing, changed, err
}
