package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/operator/state"
	"github.com/tandemhq/tandem/operator/topology"
)

// The control API is how the operator drives a detached platform. It
// listens on a unix socket in the state directory that only the owner can
// connect to (mode 0600): nothing changes the platform without the
// owner's credentials. Each call is POST /v1/<method> with a JSON body of
// arguments; errors come back as {"error": "..."} with a 4xx/5xx status.

type callArgs struct {
	Region  string        `json:"region,omitempty"`
	Service string        `json:"service,omitempty"`
	Color   string        `json:"color,omitempty"`
	Weights Weights       `json:"weights"`
	Spec    FleetSpec     `json:"spec"`
	Window  time.Duration `json:"window,omitempty"`
	// State store calls.
	Table  string `json:"table,omitempty"`
	Key    string `json:"key,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Value  []byte `json:"value,omitempty"`
	Expect int64  `json:"expect,omitempty"`
	// Delay is slow-db's and slow-proxy's added latency.
	Delay time.Duration `json:"delay,omitempty"`
}

// Serve runs the control API on the state directory's socket until ctx ends.
func (p *Platform) Serve(ctx context.Context) error {
	path := StateLayout{p.cfg.StateDir}.Socket()
	_ = os.Remove(path)
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("listen on control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return err
	}
	srv := &http.Server{Handler: p.apiHandler(), ReadHeaderTimeout: 10 * time.Second}
	p.servers = append(p.servers, srv)
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() { _ = srv.Serve(l) }()
	return nil
}

// apiMethod is one control-API call.
type apiMethod struct {
	call func(ctx context.Context, p *Platform, a callArgs) (any, error)
	// changes marks calls after which the topology document is rewritten.
	changes bool
}

func noResult(err error) (any, error) { return nil, err }

// apiMethods is the control API: one entry per call, named as on the wire.
var apiMethods = map[string]apiMethod{
	"status": {call: func(ctx context.Context, p *Platform, _ callArgs) (any, error) { return p.Status(ctx) }},
	"weights": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.Weights(ctx, a.Region, a.Service)
	}},
	"set-weights": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.SetWeights(ctx, a.Region, a.Service, a.Weights))
	}},
	"launch": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.Launch(ctx, a.Region, a.Service, a.Color, a.Spec))
	}},
	"health": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.Health(ctx, a.Region, a.Service, a.Color)
	}},
	"window": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.Window(ctx, a.Region, a.Service, a.Color, a.Window)
	}},
	"retire": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.Retire(ctx, a.Region, a.Service, a.Color))
	}},
	"route": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.Route(ctx, a.Region))
	}},
	"fence-routing": {changes: true, call: func(ctx context.Context, p *Platform, _ callArgs) (any, error) { return noResult(p.FenceRouting(ctx)) }},
	"active-region": {call: func(ctx context.Context, p *Platform, _ callArgs) (any, error) { return p.ActiveRegion(ctx) }},
	"stop-fleets": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.StopFleets(ctx, a.Region))
	}},
	"activate-fleets": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.ActivateFleets(ctx, a.Region))
	}},
	"database-position": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.DatabasePosition(ctx, a.Region)
	}},
	"fence-database": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) { return p.FenceDatabase(ctx, a.Region) }},
	"promote-database": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.PromoteDatabase(ctx, a.Region))
	}},
	"fence-cache": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.FenceCache(ctx, a.Region))
	}},
	"promote-cache": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.PromoteCache(ctx, a.Region))
	}},
	"release": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.Release(ctx, a.Region, a.Service)
	}},
	"smoke": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.Smoke(ctx, a.Region, a.Service, a.Color))
	}},
	"faults": {call: func(ctx context.Context, p *Platform, _ callArgs) (any, error) {
		return p.Faults(ctx)
	}},
	"fault-kill-region": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.KillRegion(ctx, a.Region)
	}},
	"fault-kill-database": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.KillDatabase(ctx, a.Region)
	}},
	"fault-kill-cache": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.KillCache(ctx, a.Region)
	}},
	"fault-partition": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.Partition(ctx, a.Region)
	}},
	"fault-slow-db": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.SlowDatabase(ctx, a.Region, a.Delay)
	}},
	"fault-slow-proxy": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.SlowProxy(ctx, a.Region, a.Delay)
	}},
	"fault-heal": {changes: true, call: func(ctx context.Context, p *Platform, _ callArgs) (any, error) {
		return p.Heal(ctx)
	}},
	"state-get": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) { return p.Get(ctx, a.Table, a.Key) }},
	"state-put": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return p.Put(ctx, a.Table, a.Key, a.Value, a.Expect)
	}},
	"state-list":  {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) { return p.List(ctx, a.Table, a.Prefix) }},
	"replica-lag": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) { return p.ReplicaLag(ctx, a.Region) }},
	"verify-write": {call: func(ctx context.Context, p *Platform, a callArgs) (any, error) {
		return noResult(p.VerifyWrite(ctx, a.Region, a.Expect))
	}},
	"reprotect": {changes: true, call: func(ctx context.Context, p *Platform, a callArgs) (any, error) { return p.Reprotect(ctx, a.Region) }},
	"shutdown":  {call: func(_ context.Context, p *Platform, _ callArgs) (any, error) { p.RequestShutdown(); return nil, nil }},
}

func (p *Platform) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/{method}", func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("method")
		m, ok := apiMethods[name]
		if !ok {
			writeAPI(w, http.StatusNotFound, nil, fmt.Errorf("unknown method %q", name))
			return
		}
		var a callArgs
		dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, 8<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&a); err != nil && !errors.Is(err, io.EOF) {
			writeAPI(w, http.StatusBadRequest, nil, fmt.Errorf("bad request: %w", err))
			return
		}
		out, err := m.call(req.Context(), p, a)
		if err != nil {
			code := http.StatusUnprocessableEntity
			switch {
			case errors.Is(err, state.ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, state.ErrConflict):
				code = http.StatusConflict
			}
			writeAPI(w, code, nil, err)
			return
		}
		if m.changes {
			_ = p.writeTopology(req.Context())
		}
		writeAPI(w, http.StatusOK, out, nil)
	})
	return mux
}

type apiReply struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

func writeAPI(w http.ResponseWriter, code int, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	var r apiReply
	if err != nil {
		r.Error = err.Error()
	} else if v != nil {
		r.Result, _ = json.Marshal(v)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// Client drives a detached platform through its control socket. It has the
// same methods as *Platform, so the engines drive either.
type Client struct {
	hc *http.Client
}

// ErrNotUp means no platform answers in the state directory.
var ErrNotUp = errors.New("no platform is up")

// Dial connects to the platform of a state directory.
func Dial(stateDir string) (*Client, error) {
	path := StateLayout{stateDir}.Socket()
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("%w in %s (no control socket); start one with `tandem up -d`", ErrNotUp, stateDir)
	}
	// A call may wait on a drain, a health deadline or a rebuild, but never
	// forever.
	c := &Client{hc: &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}}
	if _, err := c.Status(context.Background()); err != nil {
		return nil, fmt.Errorf("%w in %s: %v; start one with `tandem up -d`", ErrNotUp, stateDir, err)
	}
	return c, nil
}

func (c *Client) call(ctx context.Context, method string, a callArgs, out any) error {
	body, err := json.Marshal(a)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://platform/v1/"+method, bytesReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("platform %s: %w", method, err)
	}
	defer resp.Body.Close()
	var r apiReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return fmt.Errorf("platform %s: bad reply (%s): %w", method, resp.Status, err)
	}
	if r.Error != "" {
		switch resp.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s", state.ErrNotFound, r.Error)
		case http.StatusConflict:
			return fmt.Errorf("%w: %s", state.ErrConflict, r.Error)
		}
		return errors.New(r.Error)
	}
	if out != nil && len(r.Result) > 0 {
		return json.Unmarshal(r.Result, out)
	}
	return nil
}

// Status reports the platform's state.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.call(ctx, "status", callArgs{}, &s)
}

// Weights reads back the weights in force.
func (c *Client) Weights(ctx context.Context, region, service string) (Weights, error) {
	var w Weights
	return w, c.call(ctx, "weights", callArgs{Region: region, Service: service}, &w)
}

// SetWeights changes the traffic split.
func (c *Client) SetWeights(ctx context.Context, region, service string, w Weights) error {
	return c.call(ctx, "set-weights", callArgs{Region: region, Service: service, Weights: w}, nil)
}

// Launch starts a fleet for a color.
func (c *Client) Launch(ctx context.Context, region, service, color string, spec FleetSpec) error {
	return c.call(ctx, "launch", callArgs{Region: region, Service: service, Color: color, Spec: spec}, nil)
}

// Health reports a color's target health.
func (c *Client) Health(ctx context.Context, region, service, color string) (Health, error) {
	var h Health
	return h, c.call(ctx, "health", callArgs{Region: region, Service: service, Color: color}, &h)
}

// Window reports a color's recent requests, errors and p99.
func (c *Client) Window(ctx context.Context, region, service, color string, d time.Duration) (Window, error) {
	var w Window
	return w, c.call(ctx, "window", callArgs{Region: region, Service: service, Color: color, Window: d}, &w)
}

// Retire drains and stops a color.
func (c *Client) Retire(ctx context.Context, region, service, color string) error {
	return c.call(ctx, "retire", callArgs{Region: region, Service: service, Color: color}, nil)
}

// Route points the front door at a region.
func (c *Client) Route(ctx context.Context, region string) error {
	return c.call(ctx, "route", callArgs{Region: region}, nil)
}

// FenceRouting stops the front door routing anywhere.
func (c *Client) FenceRouting(ctx context.Context) error {
	return c.call(ctx, "fence-routing", callArgs{}, nil)
}

// ActiveRegion returns the region the front door routes to.
func (c *Client) ActiveRegion(ctx context.Context) (string, error) {
	var s string
	return s, c.call(ctx, "active-region", callArgs{}, &s)
}

// StopFleets retires every fleet of a region.
func (c *Client) StopFleets(ctx context.Context, region string) error {
	return c.call(ctx, "stop-fleets", callArgs{Region: region}, nil)
}

// ActivateFleets starts every service's release in a region.
func (c *Client) ActivateFleets(ctx context.Context, region string) error {
	return c.call(ctx, "activate-fleets", callArgs{Region: region}, nil)
}

// DatabasePosition returns a region's WAL position.
func (c *Client) DatabasePosition(ctx context.Context, region string) (string, error) {
	var s string
	return s, c.call(ctx, "database-position", callArgs{Region: region}, &s)
}

// FenceDatabase fences a region's database and returns the fence position.
func (c *Client) FenceDatabase(ctx context.Context, region string) (string, error) {
	var s string
	return s, c.call(ctx, "fence-database", callArgs{Region: region}, &s)
}

// PromoteDatabase promotes a region's replica.
func (c *Client) PromoteDatabase(ctx context.Context, region string) error {
	return c.call(ctx, "promote-database", callArgs{Region: region}, nil)
}

// FenceCache pauses a region's cache writes.
func (c *Client) FenceCache(ctx context.Context, region string) error {
	return c.call(ctx, "fence-cache", callArgs{Region: region}, nil)
}

// PromoteCache promotes a region's cache replica.
func (c *Client) PromoteCache(ctx context.Context, region string) error {
	return c.call(ctx, "promote-cache", callArgs{Region: region}, nil)
}

// Release returns the live color's fleet spec.
func (c *Client) Release(ctx context.Context, region, service string) (FleetSpec, error) {
	var s FleetSpec
	return s, c.call(ctx, "release", callArgs{Region: region, Service: service}, &s)
}

// Smoke sends a service's smoke request to one color through the proxy.
func (c *Client) Smoke(ctx context.Context, region, service, color string) error {
	return c.call(ctx, "smoke", callArgs{Region: region, Service: service, Color: color}, nil)
}

// Get reads an item of the platform's state store.
func (c *Client) Get(ctx context.Context, table, key string) (state.Item, error) {
	var it state.Item
	return it, c.call(ctx, "state-get", callArgs{Table: table, Key: key}, &it)
}

// Put writes an item of the platform's state store (compare-and-swap).
func (c *Client) Put(ctx context.Context, table, key string, value []byte, expect int64) (int64, error) {
	var v int64
	return v, c.call(ctx, "state-put", callArgs{Table: table, Key: key, Value: value, Expect: expect}, &v)
}

// List lists items of the platform's state store by key prefix.
func (c *Client) List(ctx context.Context, table, prefix string) ([]state.Item, error) {
	var items []state.Item
	return items, c.call(ctx, "state-list", callArgs{Table: table, Prefix: prefix}, &items)
}

// ReplicaLag reports how far a region's database replica is behind.
func (c *Client) ReplicaLag(ctx context.Context, region string) (topology.Lag, error) {
	var l topology.Lag
	return l, c.call(ctx, "replica-lag", callArgs{Region: region}, &l)
}

// VerifyWrite proves a region's database endpoint takes writes.
func (c *Client) VerifyWrite(ctx context.Context, region string, epoch int64) error {
	return c.call(ctx, "verify-write", callArgs{Region: region, Expect: epoch}, nil)
}

// Reprotect rebuilds a former primary region as a replica.
func (c *Client) Reprotect(ctx context.Context, region string) (string, error) {
	var s string
	return s, c.call(ctx, "reprotect", callArgs{Region: region}, &s)
}

// Faults reports the injected faults of every region.
func (c *Client) Faults(ctx context.Context) (Faults, error) {
	var f Faults
	return f, c.call(ctx, "faults", callArgs{}, &f)
}

// KillDatabase kills the server behind a region's database endpoint (a
// zone failure).
func (c *Client) KillDatabase(ctx context.Context, region string) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-kill-database", callArgs{Region: region}, &r)
}

// KillCache kills the server behind a region's cache endpoint.
func (c *Client) KillCache(ctx context.Context, region string) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-kill-cache", callArgs{Region: region}, &r)
}

// KillRegion kills every process of a region (a region outage).
func (c *Client) KillRegion(ctx context.Context, region string) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-kill-region", callArgs{Region: region}, &r)
}

// Partition cuts a region off from the others and from the front door.
func (c *Client) Partition(ctx context.Context, region string) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-partition", callArgs{Region: region}, &r)
}

// SlowProxy adds latency in front of a region's proxy.
func (c *Client) SlowProxy(ctx context.Context, region string, delay time.Duration) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-slow-proxy", callArgs{Region: region, Delay: delay}, &r)
}

// SlowDatabase adds latency to a region's database endpoint.
func (c *Client) SlowDatabase(ctx context.Context, region string, delay time.Duration) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-slow-db", callArgs{Region: region, Delay: delay}, &r)
}

// Heal undoes partitions and database delays.
func (c *Client) Heal(ctx context.Context) (FaultReport, error) {
	var r FaultReport
	return r, c.call(ctx, "fault-heal", callArgs{}, &r)
}

// Shutdown asks the platform to stop everything and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, "shutdown", callArgs{}, nil)
}
