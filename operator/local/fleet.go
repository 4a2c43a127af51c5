package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/internal/pgproc"
	"github.com/tandemhq/tandem/internal/procutil"
	"github.com/tandemhq/tandem/internal/redisproc"
	"github.com/tandemhq/tandem/operator/local/proxy"
	"github.com/tandemhq/tandem/stacks"
)

// fleet is one color of one service in one region: the local ECS service.
type fleet struct {
	region, service, color string
	spec                   FleetSpec
	tasks                  []*task
}

// task is one supervised service process. If it exits on its own it is
// restarted on the same port after a short backoff, as ECS replaces a
// stopped task.
type task struct {
	name string
	port int
	cmd  func() *exec.Cmd
	p    *Platform

	mu       sync.Mutex
	proc     *exec.Cmd
	stopping bool
	done     chan struct{} // closed when supervision has ended
}

func (t *task) url() string { return fmt.Sprintf("http://127.0.0.1:%d", t.port) }

func (t *task) start() error {
	cmd := t.cmd()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start task %s: %w", t.name, err)
	}
	t.p.track(filepath.Base(cmd.Path), cmd.Process.Pid)
	t.mu.Lock()
	t.proc = cmd
	t.mu.Unlock()
	go t.supervise(cmd)
	return nil
}

func (t *task) supervise(cmd *exec.Cmd) {
	backoff := 200 * time.Millisecond
	for {
		err := cmd.Wait()
		t.mu.Lock()
		stopping := t.stopping
		t.mu.Unlock()
		if stopping {
			close(t.done)
			return
		}
		t.p.log.Warn("task exited; restarting", "task", t.name, "err", err, "backoff", backoff)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
		t.mu.Lock()
		if t.stopping {
			t.mu.Unlock()
			close(t.done)
			return
		}
		cmd = t.cmd()
		if err := cmd.Start(); err != nil {
			t.mu.Unlock()
			t.p.log.Error("task restart failed", "task", t.name, "err", err)
			continue
		}
		t.proc = cmd
		t.mu.Unlock()
		t.p.track(filepath.Base(cmd.Path), cmd.Process.Pid)
	}
}

// stop ends the task gracefully (SIGTERM: the service finishes in-flight
// requests and stops its workers) and kills it after the timeout.
func (t *task) stop(timeout time.Duration) {
	t.mu.Lock()
	t.stopping = true
	proc := t.proc
	t.mu.Unlock()
	if proc == nil || proc.Process == nil {
		return
	}
	_ = proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-t.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-proc.Process.Pid, syscall.SIGKILL)
		<-t.done
	}
}

func (f *fleet) stop(timeout time.Duration) {
	var wg sync.WaitGroup
	for _, t := range f.tasks {
		wg.Add(1)
		go func() { defer wg.Done(); t.stop(timeout) }()
	}
	wg.Wait()
}

// env is the 12-factor contract between the platform and a service.
func (p *Platform) env(r *region, svc stacks.Service, color string, spec FleetSpec, port int) []string {
	env := map[string]string{
		"PATH":           "/usr/local/bin:/usr/bin:/bin",
		"HOST":           "127.0.0.1",
		"PORT":           strconv.Itoa(port),
		"TANDEM_REGION":  r.name,
		"TANDEM_COLOR":   color,
		"TANDEM_VERSION": spec.Version,
	}
	if svc.Database {
		dsn := pgproc.DSN(r.dbEnd.Addr(), p.secrets.Postgres, svc.Name)
		env["DATABASE_URL"] = dsn
		env["DATABASE_READ_URL"] = dsn
	}
	if svc.Cache {
		env["REDIS_URL"] = redisproc.URL(r.cacheEnd.Addr(), p.secrets.Redis, 0)
	}
	for _, dep := range svc.DependsOn {
		env[strings.ToUpper(dep)+"_URL"] = r.url
	}
	for k, v := range spec.Env {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Launch starts a fleet for one color of a service and registers its tasks
// as that color's targets. It does not wait for health: callers poll Health.
func (p *Platform) Launch(ctx context.Context, regionName, service, color string, spec FleetSpec) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	svc, err := p.service(service)
	if err != nil {
		return err
	}
	if color != Blue && color != Green {
		return fmt.Errorf("unknown color %q; use blue or green", color)
	}
	if spec.Version == "" {
		return errors.New("launch needs a version")
	}
	if spec.Count < 1 || spec.Count > p.cfg.Spec.Local.MaxTasks {
		return fmt.Errorf("task count %d is out of range; use 1 to %d (local.maxTasks)", spec.Count, p.cfg.Spec.Local.MaxTasks)
	}
	r.fleetMu.Lock()
	if f := r.fleets[service][color]; f != nil {
		r.fleetMu.Unlock()
		return fmt.Errorf("%s of %s in %s is already running version %s; retire it first", color, service, regionName, f.spec.Version)
	}
	f := &fleet{region: regionName, service: service, color: color, spec: spec}
	if r.fleets[service] == nil {
		r.fleets[service] = map[string]*fleet{}
	}
	r.fleets[service][color] = f
	r.fleetMu.Unlock()

	bin := filepath.Join(p.cfg.BinDir, svc.Name)
	var urls []string
	for i := range spec.Count {
		port, err := procutil.FreePort()
		if err != nil {
			return err
		}
		name := fmt.Sprintf("%s-%s-%s-%d", regionName, service, color, i+1)
		env := p.env(r, svc, color, spec, port)
		t := &task{name: name, port: port, p: p, done: make(chan struct{})}
		t.cmd = func() *exec.Cmd {
			cmd := exec.Command(bin)
			cmd.Env = env
			if logf, err := p.logFile(name); err == nil {
				cmd.Stdout, cmd.Stderr = logf, logf
			}
			procutil.Account{}.Prepare(cmd)
			return cmd
		}
		if err := t.start(); err != nil {
			f.stop(5 * time.Second)
			r.fleetMu.Lock()
			delete(r.fleets[service], color)
			r.fleetMu.Unlock()
			return err
		}
		f.tasks = append(f.tasks, t)
		urls = append(urls, t.url())
	}
	return r.router.SetTargets(service, proxy.Color(color), urls)
}

// Health reports how many of a color's targets pass health checks.
func (p *Platform) Health(ctx context.Context, regionName, service, color string) (Health, error) {
	r, err := p.region(regionName)
	if err != nil {
		return Health{}, err
	}
	if _, err := p.service(service); err != nil {
		return Health{}, err
	}
	h := r.router.Health(service, proxy.Color(color))
	return Health{Targets: h.Targets, Healthy: h.Healthy}, nil
}

// Weights reads back the weights in force at the region's proxy.
func (p *Platform) Weights(ctx context.Context, regionName, service string) (Weights, error) {
	r, err := p.region(regionName)
	if err != nil {
		return Weights{}, err
	}
	if _, err := p.service(service); err != nil {
		return Weights{}, err
	}
	w, err := r.router.Weights(service)
	return Weights{Blue: w.Blue, Green: w.Green}, err
}

// SetWeights changes the traffic split. A color that would carry traffic
// must have a healthy target. When a color reaches 100 its fleet becomes the
// service's release: the spec a region failover activates.
func (p *Platform) SetWeights(ctx context.Context, regionName, service string, w Weights) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	if _, err := p.service(service); err != nil {
		return err
	}
	for _, c := range []string{Blue, Green} {
		if w.Of(c) > 0 && r.router.Health(service, proxy.Color(c)).Healthy == 0 {
			return fmt.Errorf("refusing weights %d/%d for %s in %s: %s has no healthy target", w.Blue, w.Green, service, regionName, c)
		}
	}
	if err := r.router.SetWeights(service, proxy.Weights{Blue: w.Blue, Green: w.Green}); err != nil {
		return err
	}
	for _, c := range []string{Blue, Green} {
		if w.Of(c) == 100 {
			// Lock order: never hold fleetMu while taking p.mu.
			r.fleetMu.Lock()
			f := r.fleets[service][c]
			r.fleetMu.Unlock()
			if f != nil {
				p.mu.Lock()
				p.release[service] = f.spec
				p.mu.Unlock()
			}
		}
	}
	return nil
}

// Window reports requests, 5xx and p99 latency of a color over the last d.
func (p *Platform) Window(ctx context.Context, regionName, service, color string, d time.Duration) (Window, error) {
	r, err := p.region(regionName)
	if err != nil {
		return Window{}, err
	}
	if _, err := p.service(service); err != nil {
		return Window{}, err
	}
	ws := r.router.Window(service, proxy.Color(color), d)
	return Window{Requests: ws.Requests, Errors: ws.Errors5xx, P99: ws.P99}, nil
}

// Retire takes a color out of service: its targets are removed from the
// proxy, in-flight requests drain, then its tasks stop gracefully. It
// refuses while the color still has weight.
func (p *Platform) Retire(ctx context.Context, regionName, service, color string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	if _, err := p.service(service); err != nil {
		return err
	}
	w, err := r.router.Weights(service)
	if err != nil {
		return err
	}
	if (Weights{Blue: w.Blue, Green: w.Green}).Of(color) > 0 {
		return fmt.Errorf("refusing to retire %s of %s in %s: it still carries %d%% of traffic", color, service, regionName, (Weights{Blue: w.Blue, Green: w.Green}).Of(color))
	}
	return p.retire(ctx, r, service, color)
}

func (p *Platform) retire(ctx context.Context, r *region, service, color string) error {
	r.fleetMu.Lock()
	f := r.fleets[service][color]
	delete(r.fleets[service], color)
	r.fleetMu.Unlock()
	if f == nil {
		return nil
	}
	if err := r.router.SetTargets(service, proxy.Color(color), nil); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, p.cfg.Spec.Deploy.DrainTimeout.Duration)
	err := r.router.Drain(dctx, service, proxy.Color(color))
	cancel()
	if err != nil {
		p.log.Warn("drain ended before in-flight requests finished", "region", r.name, "service", service, "color", color, "err", err)
	}
	f.stop(15 * time.Second)
	return nil
}

// StopFleets retires every fleet of a region (the fence of a failover: the
// old region's tasks scaled to zero).
func (p *Platform) StopFleets(ctx context.Context, regionName string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, svc := range p.cfg.Spec.Services {
		for _, c := range []string{Blue, Green} {
			wg.Add(1)
			go func() { defer wg.Done(); _ = p.retire(ctx, r, svc.Name, c) }()
		}
	}
	wg.Wait()
	return nil
}

// ActivateFleets starts every service's release in the region on blue with
// all of its traffic, and waits until each is healthy.
func (p *Platform) ActivateFleets(ctx context.Context, regionName string) error {
	r, err := p.region(regionName)
	if err != nil {
		return err
	}
	for _, svc := range p.cfg.Spec.Services {
		r.fleetMu.Lock()
		running := len(r.fleets[svc.Name]) > 0
		r.fleetMu.Unlock()
		if running {
			continue
		}
		p.mu.Lock()
		spec := p.release[svc.Name]
		p.mu.Unlock()
		if err := p.Launch(ctx, regionName, svc.Name, Blue, spec); err != nil {
			return err
		}
	}
	deadline := time.Now().Add(p.cfg.Spec.Deploy.HealthyTimeout.Duration)
	for _, svc := range p.cfg.Spec.Services {
		for {
			r.fleetMu.Lock()
			var live string
			for c := range r.fleets[svc.Name] {
				live = c
			}
			r.fleetMu.Unlock()
			h := r.router.Health(svc.Name, proxy.Color(live))
			if h.Healthy > 0 {
				w := Weights{Blue: 100}
				if live == Green {
					w = Weights{Green: 100}
				}
				if err := p.SetWeights(ctx, regionName, svc.Name, w); err != nil {
					return err
				}
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s in %s did not become healthy within %s; see %s", svc.Name, regionName,
					p.cfg.Spec.Deploy.HealthyTimeout.Duration, StateLayout{p.cfg.StateDir}.Logs())
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// The pid registry lets `tandem down` and the next `tandem up` clean up
// after a platform that was killed before it could stop its children.

var pidMu sync.Mutex

type pidEntry struct {
	PID  int    `json:"pid"`
	Comm string `json:"comm"`
}

func (p *Platform) track(comm string, pid int) {
	pidMu.Lock()
	defer pidMu.Unlock()
	path := StateLayout{p.cfg.StateDir}.Pids()
	var list []pidEntry
	if b, err := os.ReadFile(path); err == nil {
		_ = json.Unmarshal(b, &list)
	}
	kept := list[:0]
	for _, e := range list {
		if procutil.Alive(e.PID) {
			kept = append(kept, e)
		}
	}
	kept = append(kept, pidEntry{PID: pid, Comm: comm})
	_ = writeJSON(path, kept, 0o600)
}

// killLeftovers kills the process groups of recorded pids that still run
// the program they were recorded for.
func killLeftovers(lay StateLayout) int {
	pidMu.Lock()
	defer pidMu.Unlock()
	b, err := os.ReadFile(lay.Pids())
	if err != nil {
		return 0
	}
	var list []pidEntry
	if json.Unmarshal(b, &list) != nil {
		return 0
	}
	n := 0
	for _, e := range list {
		comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", e.PID))
		if err != nil || !strings.HasPrefix(e.Comm, strings.TrimSpace(string(comm))) {
			continue
		}
		_ = syscall.Kill(-e.PID, syscall.SIGKILL)
		_ = syscall.Kill(e.PID, syscall.SIGKILL)
		n++
	}
	_ = os.Remove(lay.Pids())
	return n
}

// Release returns the fleet spec of the color carrying all of a service's
// traffic in the region (the service's release there).
func (p *Platform) Release(ctx context.Context, regionName, service string) (FleetSpec, error) {
	r, err := p.region(regionName)
	if err != nil {
		return FleetSpec{}, err
	}
	if _, err := p.service(service); err != nil {
		return FleetSpec{}, err
	}
	w, err := r.router.Weights(service)
	if err != nil {
		return FleetSpec{}, err
	}
	live := Blue
	if w.Green == 100 {
		live = Green
	}
	r.fleetMu.Lock()
	defer r.fleetMu.Unlock()
	if f := r.fleets[service][live]; f != nil {
		return f.spec, nil
	}
	return FleetSpec{}, fmt.Errorf("%s in %s has no fleet on its live color %s", service, regionName, live)
}
