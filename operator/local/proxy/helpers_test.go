package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backend is one task of a service: a real HTTP server on loopback that reports its
// name and echoes what it received.
type backend struct {
	name  string
	URL   string
	srv   *http.Server
	ready atomic.Bool
	hits  atomic.Int64
	// delay, when set, is how long each request takes.
	delay atomic.Int64
	// While holding is set, requests wait until release is closed.
	holding atomic.Bool
	release chan struct{}
}

// echo is what a backend answers to every request but its health check.
type echo struct {
	Backend string      `json:"backend"`
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	Query   string      `json:"query"`
	Host    string      `json:"host"`
	Body    string      `json:"body"`
	Header  http.Header `json:"header"`
}

func startBackend(t *testing.T, name string) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{name: name, URL: "http://" + ln.Addr().String(), release: make(chan struct{})}
	b.ready.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		if d := time.Duration(b.delay.Load()); d > 0 {
			time.Sleep(d)
		}
		if b.holding.Load() {
			<-b.release
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if code, err := strconv.Atoi(r.URL.Query().Get("status")); err == nil {
			w.WriteHeader(code)
		}
		json.NewEncoder(w).Encode(echo{
			Backend: b.name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Host: r.Host, Body: string(body), Header: r.Header,
		})
	})
	b.srv = &http.Server{Handler: mux}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

var testRoutes = []ServiceRoute{
	{Name: "claims", PathPrefixes: []string{"/v1/claims"}, HealthPath: "/readyz"},
	{Name: "reports", PathPrefixes: []string{"/v1/claims/reports"}, HealthPath: "/readyz"},
	{Name: "eligibility", PathPrefixes: []string{"/v1/eligibility", "/v1/households"}, HealthPath: "/readyz"},
}

// fastOptions check health often enough that tests wait tens of milliseconds.
func fastOptions() Options {
	return Options{HealthInterval: 20 * time.Millisecond, HealthTimeout: 500 * time.Millisecond, Logger: testLogger()}
}

func testLogger() *slog.Logger {
	return slog.New(slog.DiscardHandler)
}

// startRouter returns a started router behind a loopback server.
func startRouter(t *testing.T, opts Options) (*Router, *httptest.Server) {
	t.Helper()
	r := NewRouter("us-east-1", testRoutes, opts)
	r.Start(t.Context())
	ts := httptest.NewServer(r)
	t.Cleanup(func() {
		ts.Close()
		r.Close()
	})
	return r, ts
}

// setTargets registers backends and waits until the router sees all of them healthy.
func setTargets(t *testing.T, r *Router, service string, c Color, bs ...*backend) {
	t.Helper()
	urls := make([]string, len(bs))
	for i, b := range bs {
		urls[i] = b.URL
	}
	if err := r.SetTargets(service, c, urls); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all targets of "+service+"-"+string(c)+" healthy", func() bool {
		h := r.Health(service, c)
		return h.Healthy == len(bs)
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// result is one answer as a client saw it.
type result struct {
	status      int
	contentType string
	targetGroup string
	region      string
	retryAfter  string
	echo        echo
	problem     problem
}

func do(t *testing.T, client *http.Client, method, url string, body string, header http.Header) result {
	t.Helper()
	res, err := send(t.Context(), client, method, url, body, header)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func send(ctx context.Context, client *http.Client, method, url string, body string, header http.Header) (result, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return result{}, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := client.Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{}, err
	}
	res := result{
		status:      resp.StatusCode,
		contentType: resp.Header.Get("Content-Type"),
		targetGroup: resp.Header.Get(HeaderTargetGroup),
		region:      resp.Header.Get(HeaderFrontDoorRegion),
		retryAfter:  resp.Header.Get("Retry-After"),
	}
	switch res.contentType {
	case "application/json":
		err = json.Unmarshal(raw, &res.echo)
	case "application/problem+json":
		err = json.Unmarshal(raw, &res.problem)
	default:
		err = errors.New("unexpected content type " + res.contentType + ": " + string(raw))
	}
	return res, err
}
