package cache

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestGroupIDFitsElastiCache(t *testing.T) {
	t.Parallel()
	if got := GroupID("prod", "us-east-1"); got != "tandem-prod-us-east-1" {
		t.Errorf("GroupID = %q", got)
	}
	long := strings.Repeat("e", 40)
	a, b := GroupID(long, "us-east-1"), GroupID(long, "us-west-2")
	if len(a) > 40 || len(b) > 40 || a == b {
		t.Errorf("GroupID of a 40-byte environment = %q and %q; want distinct ids of at most 40 bytes", a, b)
	}
}

func TestMemberIDs(t *testing.T) {
	t.Parallel()
	want := []string{"tandem-prod-us-east-1-001", "tandem-prod-us-east-1-002", "tandem-prod-us-east-1-003"}
	if diff := cmp.Diff(want, MemberIDs("tandem-prod-us-east-1", 3)); diff != "" {
		t.Errorf("MemberIDs (-want +got):\n%s", diff)
	}
}
