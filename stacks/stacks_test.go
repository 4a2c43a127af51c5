package stacks

import (
	"errors"
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

// awsSpec loads the prod stack and sets what an operator sets with `pulumi
// config set --path`, so that it passes ValidateAWS.
func awsSpec(t *testing.T) *Spec {
	t.Helper()
	s, err := Load("Pulumi.prod.yaml")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i := range s.Regions {
		s.Regions[i].CertificateARN = "arn:aws:acm:" + s.Regions[i].Name + ":123456789012:certificate/abc-123"
	}
	s.Routing.Domain = "api.example.org"
	s.Routing.HostedZoneID = "Z0123456789ABC"
	if err := s.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if err := s.ValidateAWS(); err != nil {
		t.Fatalf("ValidateAWS: %v", err)
	}
	return s
}

func TestAWSStacksLoad(t *testing.T) {
	t.Parallel()
	for _, stack := range []string{"dev", "prod"} {
		s, err := Load(Path(".", stack))
		if err != nil {
			t.Fatalf("Load %s: %v", stack, err)
		}
		if s.Environment != stack {
			t.Errorf("%s: environment %q", stack, s.Environment)
		}
		for _, svc := range s.Services {
			if svc.Image == "" || svc.MaxCount < svc.Count {
				t.Errorf("%s: service %s has image %q, maxCount %d for count %d", stack, svc.Name, svc.Image, svc.MaxCount, svc.Count)
			}
		}
	}
	awsSpec(t)
}

func TestAWSFieldsRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(s *Spec)
		want string
	}{
		{"certificate ARN malformed", func(s *Spec) { s.Regions[0].CertificateARN = "arn:aws:iam::123456789012:role/x" },
			"regions[0].certificateArn: \"arn:aws:iam::123456789012:role/x\" is not an ACM certificate ARN"},
		{"certificate of another region", func(s *Spec) { s.Regions[1].CertificateARN = s.Regions[0].CertificateARN },
			"regions[1].certificateArn: the certificate is in us-east-1 but the region is us-west-2"},
		{"maxCount below count", func(s *Spec) { s.Services[0].MaxCount = 1 },
			"services[0].maxCount: 1 is out of range; use 3 (count) to 100"},
		{"backups kept too long", func(s *Spec) { s.Database.BackupRetentionDays = 36 },
			"database.backupRetentionDays: 36 is out of range"},
		{"Redis too old", func(s *Spec) { s.Cache.EngineVersion = "6.2" },
			`cache.engineVersion: "6.2" is too old`},
		{"Redis version malformed", func(s *Spec) { s.Cache.EngineVersion = "latest" },
			`cache.engineVersion: "latest" is not a Redis version`},
		{"snapshots kept too long", func(s *Spec) { s.Cache.SnapshotRetentionDays = 40 },
			"cache.snapshotRetentionDays: 40 is out of range"},
		{"domain with capitals", func(s *Spec) { s.Routing.Domain = "API.example.org" },
			`routing.domain: "API.example.org" is not a lower-case DNS name`},
		{"hosted zone id malformed", func(s *Spec) { s.Routing.HostedZoneID = "zone-1" },
			`routing.hostedZoneId: "zone-1" is not a Route 53 hosted zone id`},
		{"alarm e-mail malformed", func(s *Spec) { s.Observability.AlarmEmail = "On Call <oncall@example.org>" },
			"observability.alarmEmail: \"On Call <oncall@example.org>\" is not a plain e-mail address"},
		{"log retention CloudWatch lacks", func(s *Spec) { s.Observability.LogRetentionDays = 45 },
			"observability.logRetentionDays: 45 is not a CloudWatch Logs retention period"},
		{"latency threshold too long", func(s *Spec) { s.Observability.LatencyThreshold = D(2 * time.Minute) },
			"observability.latencyThreshold: 2m0s is out of range"},
		{"trusted principal not an IAM ARN", func(s *Spec) { s.Operator.TrustedPrincipals = []string{"ci-role"} },
			`operator.trustedPrincipals[0]: "ci-role" is not an IAM role, user or account root ARN`},
		{"three regions", func(s *Spec) {
			s.Regions = append(s.Regions, Region{Name: "eu-west-1", Role: RoleSecondary, VPCCIDR: "10.32.0.0/16",
				CertificateARN: "arn:aws:acm:eu-west-1:123456789012:certificate/abc"})
		}, "regions: 3 regions listed"},
		{"default VPC blocks overlap", func(s *Spec) { s.Regions[0].VPCCIDR, s.Regions[1].VPCCIDR = "", "" },
			"regions[1].vpcCidr: 10.0.0.0/16 overlaps regions[0]'s 10.0.0.0/16"},
		{"no cache replica in the secondary", func(s *Spec) { s.Cache.GlobalDatastore = false },
			"cache.globalDatastore: false, but the stack has a secondary region"},
		{"no instance class", func(s *Spec) { s.Database.InstanceClass = "" }, "database.instanceClass: missing"},
		{"storage below RDS's minimum", func(s *Spec) { s.Database.AllocatedStorageGB = 10 }, "database.allocatedStorageGB: 10 is out of range"},
		{"node type not ElastiCache's", func(s *Spec) { s.Cache.NodeType = "r7g.large" }, `cache.nodeType: "r7g.large" is not an ElastiCache node type`},
		{"CPU Fargate lacks", func(s *Spec) { s.Services[1].CPU = 384 }, "services[1].cpu: 384 is not a Fargate task size"},
		{"memory the CPU size does not take", func(s *Spec) { s.Services[1].MemoryMiB = 1536 },
			"services[1].memoryMiB: 1536 does not fit cpu 512 on Fargate; use 1024 to 4096 in steps of 1024"},
		{"service without an image", func(s *Spec) { s.Services[2].Image = "" }, "services[2].image: missing"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := awsSpec(t)
			tc.edit(s)
			err := errors.Join(s.Validate(), s.ValidateAWS())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("errors = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestAWSDefaults(t *testing.T) {
	t.Parallel()
	s, err := Load("Pulumi.local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A stack that says nothing about protection is protected.
	if !s.Protection.Deletion() || !s.Protection.Snapshot() || !s.Protection.Logs() {
		t.Errorf("protection = %+v, want every flag on by default", s.Protection)
	}
	claims, _ := s.Service("claims")
	if claims.MaxCount != 3*claims.Count {
		t.Errorf("claims.maxCount = %d, want 3 × count %d", claims.MaxCount, claims.Count)
	}
	if s.Database.BackupRetentionDays != 7 || s.Cache.SnapshotRetentionDays != 7 || s.Cache.EngineVersion != "7.1" {
		t.Errorf("backups %d days, snapshots %d days, Redis %q; want 7, 7, 7.1",
			s.Database.BackupRetentionDays, s.Cache.SnapshotRetentionDays, s.Cache.EngineVersion)
	}
	if s.Observability.LogRetentionDays != 30 || s.Observability.LatencyThreshold.Duration != time.Second {
		t.Errorf("observability = %+v, want 30 days and 1s", s.Observability)
	}
	off := false
	p := Protection{DeletionProtection: &off, FinalSnapshot: &off, AccessLogs: &off}
	if p.Deletion() || p.Snapshot() || p.Logs() {
		t.Errorf("explicit false flags read as on: %+v", p)
	}
}
