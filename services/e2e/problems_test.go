package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tandemhq/tandem/internal/testinfra"
)

// TestBadRequestsGetProblems sends malformed, oversized, unknown-field and
// otherwise wrong requests to the running binaries: each is answered with
// a 4xx application/problem+json document, never a 5xx.
func TestBadRequestsGetProblems(t *testing.T) {
	redisURL := testinfra.RedisURL(t)
	elig := start(t, "eligibility", identity(map[string]string{"DATABASE_URL": testinfra.PostgresDSN(t, "eligibility")}))
	claims := start(t, "claims", identity(map[string]string{
		"DATABASE_URL": testinfra.PostgresDSN(t, "claims"), "REDIS_URL": redisURL, "ELIGIBILITY_URL": elig.url,
	}))
	notif := start(t, "notifications", identity(map[string]string{
		"DATABASE_URL": testinfra.PostgresDSN(t, "notifications"), "REDIS_URL": redisURL,
	}))
	valid := claimBody(3)
	huge := `{"memberId":"` + strings.Repeat("m", 70<<10) + `"}`
	tests := []struct {
		name        string
		method, url string
		contentType string
		key         string
		body        string
		want        int
	}{
		{"eligibility malformed", "POST", elig.url + "/v1/eligibility/determinations", "application/json", "", `{"program":`, 400},
		{"eligibility unknown field", "POST", elig.url + "/v1/eligibility/determinations", "application/json", "",
			`{"program":"snap","state":"OH","householdSize":1,"monthlyIncomeCents":0,"ssn":"1"}`, 400},
		{"eligibility oversized", "POST", elig.url + "/v1/eligibility/determinations", "application/json", "", huge, 413},
		{"eligibility wrong media type", "POST", elig.url + "/v1/eligibility/determinations", "text/csv", "", "snap,OH,1,0", 415},
		{"eligibility unknown state", "POST", elig.url + "/v1/eligibility/determinations", "application/json", "",
			`{"program":"snap","state":"ZZ","householdSize":1,"monthlyIncomeCents":0}`, 422},
		{"eligibility impossible household", "POST", elig.url + "/v1/eligibility/determinations", "application/json", "",
			`{"program":"medicaid","state":"OH","householdSize":0,"monthlyIncomeCents":0}`, 422},
		{"eligibility wrong method", "GET", elig.url + "/v1/eligibility/determinations", "", "", "", 405},
		{"claims malformed", "POST", claims.url + "/v1/claims", "application/json", "k1", `{"memberId":"M-1",`, 400},
		{"claims unknown field", "POST", claims.url + "/v1/claims", "application/json", "k2", strings.TrimSuffix(valid, "}") + `,"notes":"x"}`, 400},
		{"claims oversized", "POST", claims.url + "/v1/claims", "application/json", "k3", huge, 413},
		{"claims without key", "POST", claims.url + "/v1/claims", "application/json", "", valid, 400},
		{"claims invalid values", "POST", claims.url + "/v1/claims", "application/json", "k4", strings.Replace(valid, `"state":"AK"`, `"state":"PR"`, 1), 422},
		{"claims list bad status", "GET", claims.url + "/v1/claims?status=lost", "", "", "", 400},
		{"claims unknown id", "GET", claims.url + "/v1/claims/8e1f0c55-4b9c-4d7e-9a53-0b7bb1f1a2c3", "", "", "", 404},
		{"claims unknown route", "GET", claims.url + "/v2/claims", "", "", "", 404},
		{"notifications bad claim id", "GET", notif.url + "/v1/notifications?claimId=1", "", "", "", 400},
		{"notifications unknown parameter", "GET", notif.url + "/v1/notifications?claimId=8e1f0c55-4b9c-4d7e-9a53-0b7bb1f1a2c3&all=1", "", "", "", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, tt.url, strings.NewReader(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			if tt.key != "" {
				req.Header.Set("Idempotency-Key", tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			raw, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.want || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%s %s = %d %s %s, want a %d problem", tt.method, tt.url, resp.StatusCode, resp.Header.Get("Content-Type"), raw, tt.want)
			}
			var p struct {
				Status int    `json:"status"`
				Title  string `json:"title"`
				Detail string `json:"detail"`
			}
			if err := json.Unmarshal(raw, &p); err != nil || p.Status != tt.want || p.Title == "" || p.Detail == "" {
				t.Errorf("problem = %s (%v)", raw, err)
			}
		})
	}
}
