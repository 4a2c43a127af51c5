package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

func binary(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(testinfra.ServiceBinaries(t), name)
}

func freePort(t *testing.T) int {
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
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan error
}

func start(t *testing.T, name string, env map[string]string) *proc {
	t.Helper()
	port := freePort(t)
	env["HOST"], env["PORT"] = "127.0.0.1", fmt.Sprint(port)
	cmd := exec.Command(binary(t, name))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &proc{name: name, url: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd, out: &syncBuffer{}, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", name, p.out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.url + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never became ready:\n%s", name, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("%s exited with %v after SIGTERM, want 0:\n%s", p.name, err, p.out)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit within 20s of SIGTERM", p.name)
	}
}

type claim struct {
	ID     string `json:"id"`
	Status string `json:"status"`
}

func submit(t *testing.T, claimsURL, key string, income int) (claim, *http.Response) {
	t.Helper()
	body := fmt.Sprintf(`{"memberId":"M-7","state":"OH","householdSize":1,"monthlyIncomeCents":%d,`+
		`"serviceDate":"2026-11-02","procedureCode":"99213","amountCents":12500}`, income)
	req, err := http.NewRequest(http.MethodPost, claimsURL+"/v1/claims", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST /v1/claims = %d %s", resp.StatusCode, raw)
	}
	var c claim
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	return c, resp
}

func waitForNotification(t *testing.T, notificationsURL, claimID, status string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(notificationsURL + "/v1/notifications?claimId=" + claimID)
		if err == nil {
			var body struct {
				Notifications []struct {
					Status string `json:"status"`
				} `json:"notifications"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			for _, n := range body.Notifications {
				if n.Status == status {
					return
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s notification for claim %s", status, claimID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestClaimToNotification(t *testing.T) {
	redisURL := testinfra.RedisURL(t)
	identity := func(env map[string]string) map[string]string {
		env["TANDEM_REGION"], env["TANDEM_COLOR"], env["TANDEM_VERSION"] = "us-east-2", "blue", "e2e"
		return env
	}
	elig := start(t, "eligibility", identity(map[string]string{"DATABASE_URL": testinfra.PostgresDSN(t, "eligibility")}))
	claims := start(t, "claims", identity(map[string]string{
		"DATABASE_URL": testinfra.PostgresDSN(t, "claims"), "REDIS_URL": redisURL, "ELIGIBILITY_URL": elig.url,
	}))
	notifications := start(t, "notifications", identity(map[string]string{
		"DATABASE_URL": testinfra.PostgresDSN(t, "notifications"), "REDIS_URL": redisURL,
	}))

	// $1,500 a month is under the 2025 Medicaid limit for one ($1,799.75).
	approved, resp := submit(t, claims.url, "e2e-approved", 150000)
	if approved.Status != "approved" {
		t.Errorf("status = %s, want approved", approved.Status)
	}
	if resp.Header.Get("X-Tandem-Region") != "us-east-2" || resp.Header.Get("X-Tandem-Version") != "e2e" {
		t.Errorf("identity headers = %v", resp.Header)
	}
	denied, _ := submit(t, claims.url, "e2e-denied", 179975+100)
	if denied.Status != "denied" {
		t.Errorf("status = %s, want denied", denied.Status)
	}
	replayed, resp := submit(t, claims.url, "e2e-approved", 150000)
	if replayed.ID != approved.ID || resp.Header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("replay = %+v %v, want claim %s replayed", replayed, resp.Header, approved.ID)
	}
	waitForNotification(t, notifications.url, approved.ID, "approved")
	waitForNotification(t, notifications.url, denied.ID, "denied")

	// Eligibility goes away: claims pends instead of failing.
	elig.stop(t)
	pended, _ := submit(t, claims.url, "e2e-pended", 150000)
	if pended.Status != "pended" {
		t.Errorf("status with eligibility down = %s, want pended", pended.Status)
	}
	waitForNotification(t, notifications.url, pended.ID, "pended")

	claims.stop(t)
	notifications.stop(t)
}

func TestMissingEnvironmentFailsFast(t *testing.T) {
	for _, tt := range []struct {
		name string
		env  []string
		want []string
	}{
		{name: "claims", want: []string{"PORT is required", "DATABASE_URL is required", "REDIS_URL is required", "ELIGIBILITY_URL is required"}},
		{name: "eligibility", env: []string{"PORT=8080", "DATABASE_URL=postgres://u@127.0.0.1/db", "TANDEM_FAULT_ERROR_RATE=often"},
			want: []string{`TANDEM_FAULT_ERROR_RATE="often" is not a fraction`}},
		{name: "notifications", env: []string{"PORT=0"}, want: []string{`PORT="0" is not a TCP port`, "REDIS_URL is required"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(binary(t, tt.name))
			cmd.Env = tt.env
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 2 {
				t.Fatalf("exit = %v, want code 2\n%s", err, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
