package proxy

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRouterShiftsWeightsWithoutFailedRequests is the blue/green deploy as the engine
// drives it, under load: traffic moves to green in steps, blue is drained, and blue's
// servers shut down gracefully while requests keep coming. Not one may fail.
func TestRouterShiftsWeightsWithoutFailedRequests(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	opts := fastOptions()
	opts.HealthInterval = 25 * time.Millisecond
	r, ts := startRouter(t, opts)
	blue := []*backend{startBackend(t, "blue-1"), startBackend(t, "blue-2")}
	green := []*backend{startBackend(t, "green-1"), startBackend(t, "green-2")}
	for _, b := range append(blue, green...) {
		b.delay.Store(int64(time.Millisecond))
	}
	setTargets(t, r, "claims", Blue, blue...)
	setTargets(t, r, "claims", Green, green...)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	var (
		ok       atomic.Int64
		failed   atomic.Int64
		firstErr sync.Once
		errMsg   atomic.Value
	)
	loadCtx, stopLoad := context.WithCancel(t.Context())
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				method, body := http.MethodGet, ""
				if i%2 == 1 {
					method, body = http.MethodPost, fmt.Sprintf(`{"worker":%d,"seq":%d}`, w, i)
				}
				res, err := send(context.WithoutCancel(loadCtx), client, method, ts.URL+"/v1/claims", body, nil)
				if err == nil && res.status == http.StatusOK && res.echo.Body == body {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				firstErr.Do(func() {
					errMsg.Store(fmt.Sprintf("%s: status %d, err %v, problem %+v", method, res.status, err, res.problem))
				})
			}
		})
	}

	pause := func() { time.Sleep(300 * time.Millisecond) }
	pause()
	for _, g := range []int{25, 50, 100} {
		w := Weights{Blue: 100 - g, Green: g}
		if err := r.SetWeights("claims", w); err != nil {
			t.Fatal(err)
		}
		if got, _ := r.Weights("claims"); got != w {
			t.Fatalf("read back %v after setting %v", got, w)
		}
		pause()
	}

	drainCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := r.Drain(drainCtx, "claims", Blue); err != nil {
		t.Fatal(err)
	}
	blueServed := r.Stats("claims", Blue).Requests
	for _, b := range blue {
		if err := b.srv.Shutdown(drainCtx); err != nil {
			t.Fatalf("shut down %s: %v", b.name, err)
		}
	}
	pause()
	stopLoad()
	workers.Wait()

	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed; first: %v", n, n+ok.Load(), errMsg.Load())
	}
	bs, gs := r.Stats("claims", Blue), r.Stats("claims", Green)
	t.Logf("%d requests: blue %+v, green %+v", ok.Load(), bs, gs)
	if ok.Load() < 100 {
		t.Errorf("only %d requests in the test window; the load did not happen", ok.Load())
	}
	if bs.Requests == 0 || gs.Requests == 0 || bs.Errors5xx+gs.Errors5xx != 0 {
		t.Errorf("stats: blue %+v, green %+v; want both serving and no 5xx", bs, gs)
	}
	if bs.Requests != blueServed || bs.InFlight != 0 || gs.InFlight != 0 {
		t.Errorf("blue served %d requests after it was drained (stats %+v, green %+v)", bs.Requests-blueServed, bs, gs)
	}
	if w := r.Window("claims", Green, 5*time.Second); w.Requests == 0 || w.P99 == 0 {
		t.Errorf("green window = %+v, want requests and a p99", w)
	}
}

// TestRouterSurvivesTargetExitingInRotation stops a target that still has traffic, as a
// crashed or rescheduled task would: its refused connections are retried on the other
// target and it is ejected, again without a failed request. Writes carry idempotency
// keys, as the services' clients send them, which makes them replayable on a pooled
// connection the target closed just as the request went out.
func TestRouterSurvivesTargetExitingInRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	opts := fastOptions()
	opts.HealthInterval = 25 * time.Millisecond
	r, ts := startRouter(t, opts)
	leaving, staying := startBackend(t, "blue-1"), startBackend(t, "blue-2")
	setTargets(t, r, "claims", Blue, leaving, staying)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var ok, failed atomic.Int64
	var errMsg atomic.Value
	loadCtx, stopLoad := context.WithCancel(t.Context())
	var workers sync.WaitGroup
	for w := range 8 {
		workers.Go(func() {
			for i := 0; loadCtx.Err() == nil; i++ {
				method, body, h := http.MethodGet, "", http.Header(nil)
				if i%2 == 1 {
					method, body = http.MethodPost, fmt.Sprintf(`{"worker":%d,"seq":%d}`, w, i)
					h = http.Header{"Idempotency-Key": {fmt.Sprintf("%d-%d", w, i)}}
				}
				res, err := send(context.WithoutCancel(loadCtx), client, method, ts.URL+"/v1/claims", body, h)
				if err == nil && res.status == http.StatusOK && res.echo.Body == body {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				errMsg.Store(fmt.Sprintf("%s: status %d, err %v, problem %+v", method, res.status, err, res.problem))
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	shutdownCtx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := leaving.srv.Shutdown(shutdownCtx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	stopLoad()
	workers.Wait()

	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed; last: %v", n, n+ok.Load(), errMsg.Load())
	}
	if h := r.Health("claims", Blue); h.Healthy != 1 {
		t.Errorf("health = %+v, want the stopped target out of rotation", h)
	}
	if s := r.Stats("claims", Blue); s.Errors5xx != 0 || s.Requests != ok.Load() {
		t.Errorf("stats = %+v after %d requests, want no 5xx", s, ok.Load())
	}
}
