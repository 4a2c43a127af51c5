package awsenv

import (
	"strings"
	"testing"
)

var account = Account{ID: "123456789012", Partition: "aws", DNSSuffix: "amazonaws.com", ReverseDNSPrefix: "com.amazonaws"}

func TestNames(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, got, want string }{
		{"regional ARN", account.ARN("ssm", "us-west-2", "parameter/tandem/prod/topology"), "arn:aws:ssm:us-west-2:123456789012:parameter/tandem/prod/topology"},
		{"global ARN", account.GlobalARN("route53", "hostedzone/Z1"), "arn:aws:route53:::hostedzone/Z1"},
		{"root", account.Root(), "arn:aws:iam::123456789012:root"},
		{"service principal", account.ServicePrincipal("ecs-tasks"), "ecs-tasks.amazonaws.com"},
		{"regional principal", account.RegionalServicePrincipal("logs", "us-east-1"), "logs.us-east-1.amazonaws.com"},
		{"endpoint service", account.EndpointService("us-east-1", "ecr.api"), "com.amazonaws.us-east-1.ecr.api"},
		{"managed policy", account.ManagedPolicy("service-role/AmazonRDSEnhancedMonitoringRole"), "arn:aws:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s = %q, want %q", tt.name, tt.got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := account.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", account, err)
	}
	bad := account
	bad.ID = "1234"
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "12 digits") {
		t.Errorf("Validate(id 1234) = %v, want an error about 12 digits", err)
	}
	bad = account
	bad.DNSSuffix = ""
	if err := bad.Validate(); err == nil {
		t.Error("Validate accepted an account without a DNS suffix")
	}
}

func TestSwapRegion(t *testing.T) {
	t.Parallel()
	got, err := SwapRegion("arn:aws:secretsmanager:us-east-1:123456789012:secret:tandem/prod/claims-AbCdEf", "us-west-2")
	if err != nil {
		t.Fatal(err)
	}
	if want := "arn:aws:secretsmanager:us-west-2:123456789012:secret:tandem/prod/claims-AbCdEf"; got != want {
		t.Errorf("SwapRegion = %q, want %q", got, want)
	}
	for _, arn := range []string{"arn:aws:iam::123456789012:role/x", "not-an-arn"} {
		if _, err := SwapRegion(arn, "us-west-2"); err == nil {
			t.Errorf("SwapRegion(%q) succeeded, want an error", arn)
		}
	}
}

func TestFit(t *testing.T) {
	t.Parallel()
	if got := Fit("tandem-prod-us-east-1", 40); got != "tandem-prod-us-east-1" {
		t.Errorf("Fit kept a short name as %q", got)
	}
	long1 := "tandem-" + strings.Repeat("a", 40) + "-us-east-1"
	long2 := "tandem-" + strings.Repeat("a", 40) + "-us-west-2"
	a, b := Fit(long1, 40), Fit(long2, 40)
	if len(a) > 40 || len(b) > 40 {
		t.Errorf("Fit gave %q (%d) and %q (%d), want at most 40 bytes", a, len(a), b, len(b))
	}
	if a == b {
		t.Errorf("Fit gave %q for two different names", a)
	}
	if Fit(long1, 40) != a {
		t.Error("Fit is not deterministic")
	}
	if strings.Contains(Fit("ab-"+strings.Repeat("c", 40), 10), "--") {
		t.Error("Fit left a double dash")
	}
}
