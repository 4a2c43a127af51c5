package e2e

import (
	"compress/gzip"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// collector is an OTLP/HTTP receiver that keeps every span it is sent.
type collector struct {
	srv *httptest.Server

	mu    sync.Mutex
	spans []span
}

type span struct {
	service string
	traceID string
	name    string
	kind    tracepb.Span_SpanKind
	attrs   map[string]string
}

func newCollector(t *testing.T) *collector {
	t.Helper()
	c := &collector{}
	c.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			gz, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = gz
		}
		raw, err := io.ReadAll(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if r.URL.Path != "/v1/traces" {
			w.WriteHeader(http.StatusOK) // metrics: accepted and dropped
			return
		}
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(raw, &req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(c.srv.Close)
	return c
}

func (c *collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		service := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.GetKey() == "service.name" {
				service = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				attrs := map[string]string{}
				for _, a := range s.GetAttributes() {
					attrs[a.GetKey()] = a.GetValue().GetStringValue()
				}
				c.spans = append(c.spans, span{
					service: service, traceID: hex.EncodeToString(s.GetTraceId()),
					name: s.GetName(), kind: s.GetKind(), attrs: attrs,
				})
			}
		}
	}
}

// trace returns the spans of one trace.
func (c *collector) trace(id string) []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []span
	for _, s := range c.spans {
		if s.traceID == id {
			out = append(out, s)
		}
	}
	return out
}

// TestOneTraceSpansEveryService submits a claim inside a trace and follows
// it through the real binaries exporting to an OTLP receiver: the trace
// holds spans of claims, eligibility (and its Redis cache), PostgreSQL,
// the relay's publication, and notifications (its consumer, its SQL, its
// Redis acknowledgement and its webhook delivery).
func TestOneTraceSpansEveryService(t *testing.T) {
	col := newCollector(t)
	otel := map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": col.srv.URL, "OTEL_BSP_SCHEDULE_DELAY": "100"}
	c := newCluster(t, map[string]map[string]string{"eligibility": otel, "claims": otel, "notifications": otel})

	const traceID = "5b8efff798038103d269b633813fc60c"
	req, err := http.NewRequest(http.MethodPost, c.claims.url+"/v1/claims", strings.NewReader(claimBody(1)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "traced")
	req.Header.Set("traceparent", "00-"+traceID+"-eee19b7ec3c1b174-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/claims = %d", resp.StatusCode)
	}

	want := []string{
		"claims: POST /v1/claims (server)",
		"claims: call to eligibility (client)",
		"claims: PostgreSQL",
		"claims: publish to claims.events (producer)",
		"eligibility: POST /v1/eligibility/determinations (server)",
		"eligibility: Redis cache",
		"eligibility: PostgreSQL",
		"notifications: process claims.events (consumer)",
		"notifications: PostgreSQL",
		"notifications: Redis",
		"notifications: webhook delivery (client)",
	}
	var seen map[string]bool
	check := func() bool {
		seen = map[string]bool{}
		for _, s := range col.trace(traceID) {
			db := s.attrs["db.system.name"]
			if db == "" {
				db = s.attrs["db.system"]
			}
			switch {
			case s.kind == tracepb.Span_SPAN_KIND_SERVER:
				seen[s.service+": "+s.name+" (server)"] = true
			case s.kind == tracepb.Span_SPAN_KIND_PRODUCER && s.name == "claims.events publish":
				seen[s.service+": publish to claims.events (producer)"] = true
			case s.kind == tracepb.Span_SPAN_KIND_CONSUMER && s.name == "claims.events process":
				seen[s.service+": process claims.events (consumer)"] = true
			case db == "postgresql":
				seen[s.service+": PostgreSQL"] = true
			case db == "redis" && s.service == "eligibility":
				seen["eligibility: Redis cache"] = true
			case db == "redis":
				seen[s.service+": Redis"] = true
			case s.kind == tracepb.Span_SPAN_KIND_CLIENT && s.service == "claims":
				seen["claims: call to eligibility (client)"] = true
			case s.kind == tracepb.Span_SPAN_KIND_CLIENT && s.service == "notifications":
				seen["notifications: webhook delivery (client)"] = true
			}
		}
		for _, w := range want {
			if !seen[w] {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			var missing []string
			for _, w := range want {
				if !seen[w] {
					missing = append(missing, w)
				}
			}
			var got []string
			for _, s := range col.trace(traceID) {
				got = append(got, s.service+"/"+s.name)
			}
			slices.Sort(got)
			t.Fatalf("trace %s lacks %v; it holds %v", traceID, missing, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
