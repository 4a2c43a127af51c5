package gameday

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// phase counts what the load generator saw while it was current.
type phase struct {
	Name   string
	Start  time.Time
	End    time.Time
	sent   atomic.Int64
	failed atomic.Int64

	mu    sync.Mutex
	kinds map[string]int64
}

func (p *phase) fail(kind string) {
	p.failed.Add(1)
	p.mu.Lock()
	p.kinds[kind]++
	p.mu.Unlock()
}

// ack is a claim the platform acknowledged (201).
type ack struct {
	ID     string
	Key    string
	Status string
}

// loader sends a steady mix of eligibility determinations and claim
// submissions through the front door at a fixed rate (open loop: tokens
// arrive on schedule whether or not earlier requests have finished, up to a
// bound on concurrency).
type loader struct {
	url     string
	rate    int
	workers int
	hc      *http.Client

	cur atomic.Pointer[phase]

	mu   sync.Mutex
	acks []ack

	stop chan struct{}
	wg   sync.WaitGroup
	seq  atomic.Int64
}

func newLoader(frontDoor string, rate int) *loader {
	tr := &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	return &loader{url: frontDoor, rate: rate, workers: 64, hc: &http.Client{Transport: tr, Timeout: 15 * time.Second}, stop: make(chan struct{})}
}

func (l *loader) setPhase(p *phase) { l.cur.Store(p) }

func (l *loader) start() {
	tokens := make(chan struct{}, l.workers)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(tokens)
		interval := time.Second / time.Duration(l.rate)
		next := time.Now()
		for {
			next = next.Add(interval)
			select {
			case <-l.stop:
				return
			case <-time.After(time.Until(next)):
			}
			select {
			case tokens <- struct{}{}:
			default:
				// Every worker is busy: the platform is slower than the
				// offered rate. The request is not sent and not counted.
			}
		}
	}()
	for range l.workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range tokens {
				l.one()
			}
		}()
	}
}

func (l *loader) halt() {
	close(l.stop)
	l.wg.Wait()
}

var states = []string{"OH", "CA", "TX", "NY", "FL", "PA", "IL", "AK", "HI", "WA", "GA", "MI"}

func (l *loader) one() {
	p := l.cur.Load()
	n := l.seq.Add(1)
	p.sent.Add(1)
	size := 1 + mrand.IntN(8)
	income := mrand.IntN(600000)
	state := states[mrand.IntN(len(states))]
	if n%3 != 0 {
		body := fmt.Sprintf(`{"program":%q,"state":%q,"householdSize":%d,"monthlyIncomeCents":%d}`,
			[]string{"snap", "medicaid"}[n%2], state, size, income)
		status, _, err := l.post("/v1/eligibility/determinations", "", body)
		l.classify(p, status, err, http.StatusOK)
		return
	}
	key := token(12)
	body := fmt.Sprintf(`{"memberId":"M-%d","state":%q,"householdSize":%d,"monthlyIncomeCents":%d,"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":%d}`,
		n, state, size, income, 5000+mrand.IntN(50000))
	status, resp, err := l.post("/v1/claims", key, body)
	if l.classify(p, status, err, http.StatusCreated) {
		var c struct {
			ID     string `json:"id"`
			Status string `json:"status"`
		}
		if json.Unmarshal(resp, &c) != nil || c.ID == "" {
			p.fail("bad claim body")
			return
		}
		l.mu.Lock()
		l.acks = append(l.acks, ack{ID: c.ID, Key: key, Status: c.Status})
		l.mu.Unlock()
	}
}

func (l *loader) classify(p *phase, status int, err error, want int) bool {
	switch {
	case err != nil:
		p.fail("transport error")
	case status != want:
		p.fail(fmt.Sprintf("HTTP %d", status))
	default:
		return true
	}
	return false
}

func (l *loader) post(path, key, body string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, l.url+path, bytes.NewBufferString(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func (l *loader) acknowledged() []ack {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]ack(nil), l.acks...)
}

// readBack fetches every acknowledged claim through the front door and
// returns those that are missing or differ. Transient errors are retried.
func readBack(ctx context.Context, hc *http.Client, url string, acks []ack) (missing, mismatched []string, err error) {
	var mu sync.Mutex
	work := make(chan ack)
	var wg sync.WaitGroup
	var firstErr error
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range work {
				status, got, err := getClaim(ctx, hc, url, a.ID)
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = fmt.Errorf("read back claim %s: %w", a.ID, err)
					}
				case status == http.StatusNotFound:
					missing = append(missing, a.ID)
				case got != a.Status && a.Status != "pended":
					// A pended claim is decided later (that is the
					// pattern); any other change is a defect.
					mismatched = append(mismatched, fmt.Sprintf("%s (acknowledged %s, stored %s)", a.ID, a.Status, got))
				}
				mu.Unlock()
			}
		}()
	}
	for _, a := range acks {
		work <- a
	}
	close(work)
	wg.Wait()
	return missing, mismatched, firstErr
}

func getClaim(ctx context.Context, hc *http.Client, url, id string) (int, string, error) {
	var lastErr error
	for attempt := range 10 {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 200 * time.Millisecond)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/claims/"+id, nil)
		if err != nil {
			return 0, "", err
		}
		resp, err := hc.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		switch {
		case resp.StatusCode == http.StatusOK:
			var c struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(b, &c); err != nil {
				return 0, "", fmt.Errorf("decode claim: %w", err)
			}
			return http.StatusOK, c.Status, nil
		case resp.StatusCode == http.StatusNotFound:
			return http.StatusNotFound, "", nil
		default:
			lastErr = fmt.Errorf("HTTP %d: %s", resp.StatusCode, bytes.TrimSpace(b))
		}
	}
	return 0, "", lastErr
}

func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
