package stacks

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadLocalStack(t *testing.T) {
	t.Parallel()
	s, err := Load("Pulumi.local.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if diff := cmp.Diff([]string{"local-a", "local-b"}, s.RegionNames()); diff != "" {
		t.Errorf("regions (-want +got):\n%s", diff)
	}
	if got := s.Primary().Name; got != "local-a" {
		t.Errorf("primary = %q, want local-a", got)
	}
	if diff := cmp.Diff([]string{"eligibility", "claims", "notifications"}, s.ServiceNames()); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if got := s.Deploy.StepBake.Duration; got != 3*time.Second {
		t.Errorf("deploy.stepBake = %s, want 3s", got)
	}
	if got := s.Failover.ProbeInterval.Duration; got != 500*time.Millisecond {
		t.Errorf("failover.probeInterval = %s, want 500ms", got)
	}
	claims, _ := s.Service("claims")
	if diff := cmp.Diff([]string{"eligibility"}, claims.DependsOn); diff != "" {
		t.Errorf("claims.dependsOn (-want +got):\n%s", diff)
	}
}

// mutate loads the local stack's text, applies a textual edit, and returns
// the error Load gives for it.
func loadEdited(t *testing.T, edit func(string) string) error {
	t.Helper()
	raw, err := os.ReadFile("Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	edited := edit(string(raw))
	if edited == string(raw) {
		t.Fatal("the edit changed nothing; the test is out of date with the stack file")
	}
	path := filepath.Join(t.TempDir(), "Pulumi.edited.yaml")
	if err := os.WriteFile(path, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	return err
}

func TestLoadRejectsBadSpecs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(string) string
		want []string // substrings of the error
	}{
		{"wrong role", func(s string) string { return strings.Replace(s, "role: secondary", "role: tertiary", 1) },
			[]string{`regions[1].role: "tertiary" is not a role`, `"secondary"`}},
		{"missing role", func(s string) string { return strings.Replace(s, "        role: secondary\n", "", 1) },
			[]string{"regions[1].role: missing"}},
		{"two primaries", func(s string) string { return strings.Replace(s, "role: secondary", "role: primary", 1) },
			[]string{"exactly one region"}},
		{"port out of range", func(s string) string { return strings.Replace(s, "port: 8082", "port: 70000", 1) },
			[]string{"services[1].port: 70000 is out of range"}},
		{"unknown field", func(s string) string { return strings.Replace(s, "healthPath: /readyz\n", "healthPth: /readyz\n", 1) },
			[]string{`unknown field "healthPth"`}},
		{"wrong type", func(s string) string { return strings.Replace(s, "count: 2", `count: "two"`, 1) },
			[]string{"services.count", "expected int, got string"}},
		{"bad duration", func(s string) string { return strings.Replace(s, "stepBake: 3s", "stepBake: soon", 1) },
			[]string{`"soon"`, "duration"}},
		{"steps not ending at 100", func(s string) string { return strings.Replace(s, "steps: [25, 50, 100]", "steps: [25, 50]", 1) },
			[]string{"deploy.steps", "must be 100"}},
		{"unknown dependency", func(s string) string {
			return strings.Replace(s, "dependsOn: [eligibility]", "dependsOn: [billing]", 1)
		},
			[]string{`services[1].dependsOn: "billing" is not a service`}},
		{"no spec key", func(s string) string { return strings.Replace(s, "tandem:platform:", "tandem:plat:", 1) },
			[]string{`no "tandem:platform" key`}},
		{"failover mode", func(s string) string { return strings.Replace(s, "mode: manual", "mode: sometimes", 1) },
			[]string{`failover.mode: "sometimes" is not a mode`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := loadEdited(t, tc.edit)
			if err == nil {
				t.Fatal("Load accepted an invalid spec")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestValidateListsEveryProblem(t *testing.T) {
	t.Parallel()
	s := &Spec{Environment: "Bad Name", Regions: []Region{{Name: "a", Role: "x"}}}
	s.applyDefaults()
	err := s.Validate()
	ve, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("Validate = %v, want *ValidationError", err)
	}
	if len(ve.Problems) < 3 {
		t.Errorf("want at least 3 problems (environment, role, services), got %q", ve.Problems)
	}
}

func TestValidateSteps(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		steps []int
		ok    bool
	}{
		{[]int{100}, true}, {[]int{10, 50, 100}, true}, {nil, false}, {[]int{50, 25, 100}, false},
		{[]int{0, 100}, false}, {[]int{50, 150}, false}, {[]int{50, 50, 100}, false},
	} {
		if err := ValidateSteps(tc.steps); (err == nil) != tc.ok {
			t.Errorf("ValidateSteps(%v) = %v, want ok=%v", tc.steps, err, tc.ok)
		}
	}
}
