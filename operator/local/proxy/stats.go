package proxy

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is the cumulative traffic of one target group since its Router was created.
type Stats struct {
	// Requests counts finished requests, whatever their outcome.
	Requests int64 `json:"requests"`
	// Errors5xx counts the finished requests answered with a 5xx status, whether the
	// target sent it or the router did (no healthy target, target unreachable).
	Errors5xx int64 `json:"errors5xx"`
	// InFlight counts the requests being served right now.
	InFlight int64 `json:"inFlight"`
}

// WindowStats is what one target group served over a recent window: the per-step
// evidence of the deploy engine's analysis.
type WindowStats struct {
	Requests  int64         `json:"requests"`
	Errors5xx int64         `json:"errors5xx"`
	P50       time.Duration `json:"p50"`
	P99       time.Duration `json:"p99"`
}

// ErrorRate is the share of requests answered with a 5xx, 0 when there were none.
func (w WindowStats) ErrorRate() float64 {
	if w.Requests == 0 {
		return 0
	}
	return float64(w.Errors5xx) / float64(w.Requests)
}

// Latencies go into log-linear buckets: histSub buckets per doubling starting at
// histMin, so a percentile is reported within about 9% of the true value, and a window is
// the sum of one-second slots, which keeps a five-minute history in a fixed footprint.
const (
	statsSlots  = 300
	histMin     = 50 * time.Microsecond
	histSub     = 8
	histDoubles = 22 // 50µs·2²² ≈ 3.5 min; slower requests share the last bucket
	histBuckets = 1 + histDoubles*histSub + 1
)

type statsSlot struct {
	sec      int64 // Unix second this slot holds; a stale slot is reset before reuse
	requests int64
	errors   int64
	hist     [histBuckets]int32
}

// groupStats is the accounting of one target group. The counters are atomics so that
// Drain and Stats read them without a lock; the slot ring has its own short lock.
type groupStats struct {
	requests atomic.Int64
	errors   atomic.Int64
	inFlight atomic.Int64

	mu   sync.Mutex
	ring *[statsSlots]statsSlot // allocated on the first request
}

func (g *groupStats) snapshot() Stats {
	return Stats{Requests: g.requests.Load(), Errors5xx: g.errors.Load(), InFlight: g.inFlight.Load()}
}

// record counts one finished request. It does not touch inFlight: the caller releases
// its slot separately, since a request moved to another group by a retry is released
// from the first group without being counted there.
func (g *groupStats) record(now time.Time, status int, latency time.Duration) {
	isErr := status >= 500 && status <= 599
	g.requests.Add(1)
	if isErr {
		g.errors.Add(1)
	}
	sec := now.Unix()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ring == nil {
		g.ring = new([statsSlots]statsSlot)
	}
	s := &g.ring[slotIndex(sec)]
	if s.sec != sec {
		*s = statsSlot{sec: sec}
	}
	s.requests++
	if isErr {
		s.errors++
	}
	s.hist[bucketOf(latency)]++
}

// window sums the slots of the last d (rounded up to whole seconds, the current one
// included, so the window covers at least d and at most d plus one second).
func (g *groupStats) window(now time.Time, d time.Duration) WindowStats {
	last := now.Unix()
	first := now.Add(-d).Unix()
	if last-first >= statsSlots {
		first = last - statsSlots + 1
	}
	var (
		out  WindowStats
		hist [histBuckets]int64
	)
	g.mu.Lock()
	if g.ring != nil {
		for sec := first; sec <= last; sec++ {
			s := &g.ring[slotIndex(sec)]
			if s.sec != sec {
				continue
			}
			out.Requests += s.requests
			out.Errors5xx += s.errors
			for i, n := range s.hist {
				hist[i] += int64(n)
			}
		}
	}
	g.mu.Unlock()
	out.P50 = percentile(&hist, out.Requests, 0.50)
	out.P99 = percentile(&hist, out.Requests, 0.99)
	return out
}

func slotIndex(sec int64) int {
	i := sec % statsSlots
	if i < 0 {
		i += statsSlots
	}
	return int(i)
}

func bucketOf(d time.Duration) int {
	if d < histMin {
		return 0
	}
	i := 1 + int(math.Log2(float64(d)/float64(histMin))*histSub)
	return min(i, histBuckets-1)
}

// bucketUpper is the upper edge of bucket i, the value reported for samples in it: a
// percentile is never understated.
func bucketUpper(i int) time.Duration {
	return time.Duration(float64(histMin) * math.Exp2(float64(i)/histSub))
}

func percentile(hist *[histBuckets]int64, total int64, q float64) time.Duration {
	if total == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(total)))
	var seen int64
	for i, n := range hist {
		seen += n
		if seen >= rank {
			return bucketUpper(i)
		}
	}
	return bucketUpper(histBuckets - 1)
}
