package cluster

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestImageVersion(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ image, want string }{
		{"ghcr.io/tandemhq/claims:v1.2.3", "v1.2.3"},
		{"localhost:5000/claims", "latest"},
		{"localhost:5000/claims:v2", "v2"},
		{"claims@sha256:abc", "sha256:abc"},
		{"claims", "latest"},
	} {
		if got := ImageVersion(tc.image); got != tc.want {
			t.Errorf("ImageVersion(%q) = %q, want %q", tc.image, got, tc.want)
		}
	}
}

func TestContainerDefinitions(t *testing.T) {
	t.Parallel()
	spec := ServiceSpec{
		Name: "claims", Image: "ghcr.io/tandemhq/claims:v1", Port: 8082,
		Database: true, DependsOn: []string{"eligibility", "fraud-check"},
	}
	js, err := ContainerDefinitions("us-west-2", "https://us-west-2.api.example.org", spec,
		"arn:aws:secretsmanager:us-west-2:123456789012:secret:tandem/prod/claims-AbCdEf", "/tandem/prod/claims")
	if err != nil {
		t.Fatal(err)
	}
	var got []container
	if err := json.Unmarshal([]byte(js), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("%d containers, want 1", len(got))
	}
	c := got[0]
	wantEnv := []keyValue{
		{"PORT", "8082"}, {"TANDEM_REGION", "us-west-2"}, {"TANDEM_VERSION", "v1"},
		{"ELIGIBILITY_URL", "https://us-west-2.api.example.org"}, {"FRAUD_CHECK_URL", "https://us-west-2.api.example.org"},
	}
	if diff := cmp.Diff(wantEnv, c.Environment); diff != "" {
		t.Errorf("environment (-want +got):\n%s", diff)
	}
	// No cache: no REDIS_URL.
	const arn = "arn:aws:secretsmanager:us-west-2:123456789012:secret:tandem/prod/claims-AbCdEf"
	wantSecrets := []secretRef{
		{"DATABASE_URL", arn + ":DATABASE_URL::"},
		{"DATABASE_READ_URL", arn + ":DATABASE_READ_URL::"},
	}
	if diff := cmp.Diff(wantSecrets, c.Secrets); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	if c.User != TaskUser || !c.ReadonlyRootFilesystem || c.LogConfiguration.Options["awslogs-region"] != "us-west-2" {
		t.Errorf("user %q, read-only root %v, log region %q", c.User, c.ReadonlyRootFilesystem, c.LogConfiguration.Options["awslogs-region"])
	}
	if diff := cmp.Diff([]mountPoint{{SourceVolume: "tmp", ContainerPath: "/tmp"}}, c.MountPoints); diff != "" {
		t.Errorf("mounts (-want +got):\n%s", diff)
	}
}
