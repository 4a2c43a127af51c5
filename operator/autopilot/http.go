package autopilot

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemhq/tandem/operator/probe"
)

// Handler serves /healthz (200 while rounds keep coming, within three
// intervals) and /metrics (Prometheus).
func (a *Autopilot) Handler(interval time.Duration) http.Handler {
	reg := prometheus.NewRegistry()
	gauge := func(name, help string, f func(Snapshot) float64) {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(a.Snapshot()) }))
	}
	gauge("tandem_autopilot_rounds", "Probe rounds run.", func(s Snapshot) float64 { return float64(s.Rounds) })
	gauge("tandem_autopilot_failovers", "Failovers the autopilot completed.", func(s Snapshot) float64 { return float64(s.Failovers) })
	gauge("tandem_autopilot_last_rto_seconds", "RTO of the last failover: first failed probe to verified write.", func(s Snapshot) float64 { return s.LastRTO.Seconds() })
	verdicts := prometheus.NewDesc("tandem_region_up", "1 when the region's verdict is healthy or degraded, 0 when down or unknown.", []string{"region", "verdict"}, nil)
	reg.MustRegister(collector{desc: verdicts, collect: func(ch chan<- prometheus.Metric) {
		for _, r := range a.Snapshot().Report.Regions {
			v := 0.0
			if r.Verdict == probe.VerdictHealthy || r.Verdict == probe.VerdictDegraded {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(verdicts, prometheus.GaugeValue, v, r.Region, string(r.Verdict))
		}
	}})
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		s := a.Snapshot()
		w.Header().Set("Content-Type", "application/json")
		if s.Rounds == 0 || time.Since(s.Last.At) > 3*interval+5*time.Second {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"rounds": s.Rounds, "last": s.Last})
	})
	return mux
}

type collector struct {
	desc    *prometheus.Desc
	collect func(chan<- prometheus.Metric)
}

func (c collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }
func (c collector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }
