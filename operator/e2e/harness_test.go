package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
	"github.com/tandemhq/tandem/operator/deploy"
	"github.com/tandemhq/tandem/operator/local"
	"github.com/tandemhq/tandem/stacks"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

// harness is one local platform for a test, with the tandem command
// pointed at it.
type harness struct {
	t       testing.TB
	spec    *stacks.Spec
	dir     string
	stacks  string
	p       *local.Platform
	c       *local.Client
	front   string
	tandem  string
	engine  *deploy.Engine
	primary string
}

func newHarness(t testing.TB, tune func(*stacks.Spec)) *harness {
	t.Helper()
	spec, err := stacks.Load("../../stacks/Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tune(spec)
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tandem-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The command reads the stack from a file: write the tuned spec as one
	// (JSON is YAML).
	stacksDir := filepath.Join(dir, "stacks")
	if err := os.MkdirAll(stacksDir, 0o700); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(stacksDir, "Pulumi.local.yaml"), fmt.Appendf(nil, "config:\n  tandem:platform: %s\n", js), 0o600); err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, spec: spec, dir: filepath.Join(dir, "state"), stacks: stacksDir, tandem: testinfra.TandemBinary(t), primary: spec.Primary().Name}
	ctx := context.Background()
	var progress bytes.Buffer
	h.p, err = local.Up(ctx, local.Config{Stack: "local", Spec: spec, StateDir: h.dir, BinDir: testinfra.ServiceBinaries(t), Progress: &progress})
	if err != nil {
		t.Fatalf("platform up: %v\n%s", err, progress.String())
	}
	t.Cleanup(func() { h.p.Down(context.Background()) })
	if err := h.p.Serve(ctx); err != nil {
		t.Fatal(err)
	}
	if h.c, err = local.Dial(h.dir); err != nil {
		t.Fatal(err)
	}
	st, err := h.c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	h.front = st.FrontDoor.URL
	h.engine = &deploy.Engine{Traffic: h.c, Fleet: h.c, Metrics: h.c, Test: h.c, Store: h.c, Holder: "e2e-test"}
	return h
}

// command prepares the tandem command against the harness's platform.
func (h *harness) command(args ...string) *exec.Cmd {
	full := append([]string{"--state-dir", h.dir, "--stacks-dir", h.stacks}, args...)
	cmd := exec.Command(h.tandem, full...)
	cmd.Env = append(os.Environ(), "TANDEM_STATE_DIR=", "TANDEM_STACK=")
	return cmd
}

// run runs the tandem command and returns its exit code and output.
func (h *harness) run(args ...string) (int, string) {
	h.t.Helper()
	cmd := h.command(args...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("run tandem %v: %v", args, err)
	}
	return code, string(out)
}

func (h *harness) current(service string) *deploy.Deploy {
	h.t.Helper()
	d, err := h.engine.Current(context.Background(), service)
	if err != nil {
		h.t.Fatalf("read the journal: %v", err)
	}
	return d
}

// sampler checks, every few milliseconds, the invariants a deploy must
// never break: weights sum to 100, and no color carries traffic without a
// healthy target.
type sampler struct {
	mu         sync.Mutex
	samples    int
	violations []string
	stop       chan struct{}
	done       chan struct{}
}

func (h *harness) sample(service string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		ctx := context.Background()
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			w, err := h.c.Weights(ctx, h.primary, service)
			if err != nil {
				continue
			}
			var bad []string
			if w.Blue+w.Green != 100 {
				bad = append(bad, fmt.Sprintf("weights %d/%d do not sum to 100", w.Blue, w.Green))
			}
			for _, c := range []string{"blue", "green"} {
				if w.Of(c) == 0 {
					continue
				}
				hl, err := h.c.Health(ctx, h.primary, service, c)
				if err == nil && hl.Healthy == 0 {
					bad = append(bad, fmt.Sprintf("%s carries %d%% with no healthy target", c, w.Of(c)))
				}
			}
			s.mu.Lock()
			s.samples++
			s.violations = append(s.violations, bad...)
			s.mu.Unlock()
		}
	}()
	return s
}

func (s *sampler) finish() (int, []string) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.samples, s.violations
}
