package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/local/proxy"
	"github.com/tandemhq/tandem/services/kit/usstates"
)

// BenchmarkDeterminationsThroughProxy measures eligibility determinations
// per second and their latency through the local platform's L7 proxy, with
// the Redis cache off and on, in one run: two eligibility processes (one
// with ELIGIBILITY_CACHE_TTL=0, one with a cache) on the same PostgreSQL
// and Redis, each behind a proxy router as the platform runs it.
//
//	go test ./services/e2e -run '^$' -bench DeterminationsThroughProxy -benchtime 20000x
//
// Requests cycle through 4,896 distinct determinations (both programs, the
// 50 states and DC, households of 1 to 8, six incomes), after one warm-up
// pass, so the cache-on variant runs with a warm cache. Reported per
// variant: determinations/s, p50 and p99 latency in microseconds, and the
// cache hit ratio read from the service's /metrics.
func BenchmarkDeterminationsThroughProxy(b *testing.B) {
	redisURL := testinfra.RedisURL(b)
	dsn := testinfra.PostgresDSN(b, "eligibility")
	bodies := determinationBodies()
	for _, v := range []struct {
		name string
		env  map[string]string
	}{
		{"cache=off", map[string]string{"ELIGIBILITY_CACHE_TTL": "0s"}},
		{"cache=on", map[string]string{"REDIS_URL": redisURL, "ELIGIBILITY_CACHE_TTL": "10m"}},
	} {
		env := identity(map[string]string{"DATABASE_URL": dsn})
		for k, val := range v.env {
			env[k] = val
		}
		elig := start(b, "eligibility", env)
		front := behindProxy(b, elig.url)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
		for _, body := range bodies {
			determineB(b, client, front, body)
		}
		hits0, ops0 := cacheCounters(b, elig.url)

		b.Run(v.name, func(b *testing.B) {
			var (
				mu        sync.Mutex
				latencies []time.Duration
				next      int
			)
			b.SetParallelism(4)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				var local []time.Duration
				for pb.Next() {
					mu.Lock()
					body := bodies[next%len(bodies)]
					next++
					mu.Unlock()
					t0 := time.Now()
					determineB(b, client, front, body)
					local = append(local, time.Since(t0))
				}
				mu.Lock()
				latencies = append(latencies, local...)
				mu.Unlock()
			})
			elapsed := time.Since(start)
			b.StopTimer()
			slices.Sort(latencies)
			pct := func(p float64) float64 {
				return float64(latencies[min(len(latencies)-1, int(p*float64(len(latencies))))].Microseconds())
			}
			b.ReportMetric(float64(len(latencies))/elapsed.Seconds(), "determinations/s")
			b.ReportMetric(pct(0.50), "p50-µs")
			b.ReportMetric(pct(0.99), "p99-µs")
			hits, ops := cacheCounters(b, elig.url)
			if ops > ops0 {
				b.ReportMetric(100*(hits-hits0)/(ops-ops0), "cache-hit-%")
			}
		})
		elig.kill()
	}
}

// determinationBodies lists distinct determination requests.
func determinationBodies() []string {
	var out []string
	for _, program := range []string{"snap", "medicaid"} {
		for _, state := range usstates.Codes() {
			for size := 1; size <= 8; size++ {
				for _, income := range []int{0, 95000, 150000, 210000, 320000, 480000} {
					out = append(out, fmt.Sprintf(`{"program":%q,"state":%q,"householdSize":%d,"monthlyIncomeCents":%d}`,
						program, state, size, income))
				}
			}
		}
	}
	return out
}

func determineB(b *testing.B, c *http.Client, url, body string) {
	resp, err := c.Post(url+"/v1/eligibility/determinations", "application/json", strings.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("determination = %d", resp.StatusCode)
	}
}

// behindProxy puts target behind a proxy router, as the local platform
// does, and returns the router's URL once the target is healthy.
func behindProxy(b *testing.B, target string) string {
	b.Helper()
	r := proxy.NewRouter("bench", []proxy.ServiceRoute{
		{Name: "eligibility", PathPrefixes: []string{"/v1/eligibility"}, HealthPath: "/readyz"},
	}, proxy.Options{HealthInterval: 100 * time.Millisecond})
	if err := r.SetTargets("eligibility", proxy.Blue, []string{target}); err != nil {
		b.Fatal(err)
	}
	if err := r.SetWeights("eligibility", proxy.Weights{Blue: 100}); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.Start(ctx)
	srv := httptest.NewServer(r)
	b.Cleanup(func() { srv.Close(); r.Close(); cancel() })
	deadline := time.Now().Add(10 * time.Second)
	for r.Health("eligibility", proxy.Blue).Healthy == 0 {
		if time.Now().After(deadline) {
			b.Fatal("the proxy never saw eligibility healthy")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return srv.URL
}

// cacheCounters reads the cache hits and all cache operations from a
// service's /metrics.
func cacheCounters(b *testing.B, url string) (hits, ops float64) {
	b.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "eligibility_cache_operations_total{") {
			continue
		}
		fields := strings.Fields(line)
		n, err := strconv.ParseFloat(fields[len(fields)-1], 64)
		if err != nil {
			continue
		}
		ops += n
		if strings.Contains(line, `result="hit"`) {
			hits += n
		}
	}
	return hits, ops
}
