package e2e

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
)

// The test is the supervisor of the service processes: it starts them with
// an environment only, as the platform does, stops them with SIGTERM, kills
// them with SIGKILL, and restarts them on the same port.

func binary(t testing.TB, name string) string {
	t.Helper()
	return filepath.Join(testinfra.ServiceBinaries(t), name)
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// syncBuffer collects a process's output for the failure report.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type proc struct {
	name string
	url  string
	port int
	env  map[string]string
	out  *syncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan error
}

// start runs a service on a free port and waits until it is ready.
func start(t testing.TB, name string, env map[string]string) *proc {
	t.Helper()
	return startOn(t, name, env, freePort(t))
}

// startOn runs a service on port and waits until it is ready.
func startOn(t testing.TB, name string, env map[string]string, port int) *proc {
	t.Helper()
	env["HOST"], env["PORT"] = "127.0.0.1", fmt.Sprint(port)
	p := &proc{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port), port: port, env: env, out: &syncBuffer{}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			out := p.out.String()
			if len(out) > 20000 {
				out = "...\n" + out[len(out)-20000:]
			}
			t.Logf("%s output:\n%s", name, out)
		}
	})
	p.launch(t)
	p.waitReady(t)
	return p
}

func (p *proc) launch(t testing.TB) {
	t.Helper()
	cmd := exec.Command(binary(t, p.name))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range p.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
}

func (p *proc) waitReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("%s exited before becoming ready (%v):\n%s", p.name, err, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready:\n%s", p.name, p.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// restart starts the service again on the same port.
func (p *proc) restart(t testing.TB) {
	t.Helper()
	p.launch(t)
	p.waitReady(t)
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		t.Fatalf("%s is not running", p.name)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0:\n%s", p.name, err, p.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit within 20s of SIGTERM", p.name)
	}
}
