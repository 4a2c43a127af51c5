package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/testinfra"
)

func TestMain(m *testing.M) { testinfra.Main(m) }

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
		{name: "claims", env: []string{"PORT=8080", "DATABASE_URL=postgres://u@127.0.0.1/db", "REDIS_URL=redis://127.0.0.1:6379/0",
			"ELIGIBILITY_URL=http://127.0.0.1:1", "ELIGIBILITY_TIMEOUT=fast", "ELIGIBILITY_RETRIES=-1", "OTEL_TRACES_SAMPLER=sometimes"},
			want: []string{`ELIGIBILITY_TIMEOUT="fast" is not a duration`, `ELIGIBILITY_RETRIES="-1" is not an integer`, `OTEL_TRACES_SAMPLER="sometimes" is not allowed`}},
		{name: "notifications", env: []string{"PORT=8080", "DATABASE_URL=postgres://u@127.0.0.1/db", "REDIS_URL=redis://127.0.0.1:6379/0",
			"NOTIFICATIONS_WEBHOOK_URL=ftp://example.org/in", "STREAM_MAX_DELIVERIES=0"},
			want: []string{"NOTIFICATIONS_WEBHOOK_URL is not a valid http or https URL", `STREAM_MAX_DELIVERIES="0" is not an integer`}},
		{name: "eligibility", env: []string{"PORT=8080", "DATABASE_URL=postgres://u@127.0.0.1/db", "ELIGIBILITY_CACHE_TTL=forever"},
			want: []string{`ELIGIBILITY_CACHE_TTL="forever" is not a duration`}},
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
