package network

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPlanLayout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		cidr     string
		zones    int
		public   []string
		private  []string
		isolated []string
	}{
		{
			name:     "dev /16 over three zones",
			cidr:     "10.20.0.0/16",
			zones:    3,
			public:   []string{"10.20.224.0/22", "10.20.228.0/22", "10.20.232.0/22"},
			private:  []string{"10.20.0.0/19", "10.20.32.0/19", "10.20.64.0/19"},
			isolated: []string{"10.20.192.0/22", "10.20.196.0/22", "10.20.200.0/22"},
		},
		{
			name:     "one zone",
			cidr:     "10.0.0.0/16",
			zones:    1,
			public:   []string{"10.0.224.0/22"},
			private:  []string{"10.0.0.0/19"},
			isolated: []string{"10.0.192.0/22"},
		},
		{
			name:  "six zones",
			cidr:  "172.16.0.0/20",
			zones: 6,
			public: []string{
				"172.16.14.0/26", "172.16.14.64/26", "172.16.14.128/26",
				"172.16.14.192/26", "172.16.15.0/26", "172.16.15.64/26",
			},
			private: []string{
				"172.16.0.0/23", "172.16.2.0/23", "172.16.4.0/23",
				"172.16.6.0/23", "172.16.8.0/23", "172.16.10.0/23",
			},
			isolated: []string{
				"172.16.12.0/26", "172.16.12.64/26", "172.16.12.128/26",
				"172.16.12.192/26", "172.16.13.0/26", "172.16.13.64/26",
			},
		},
		{
			name:     "smallest VPC gives /28 public subnets",
			cidr:     "192.168.4.0/22",
			zones:    2,
			public:   []string{"192.168.7.128/28", "192.168.7.144/28"},
			private:  []string{"192.168.4.0/25", "192.168.4.128/25"},
			isolated: []string{"192.168.7.0/28", "192.168.7.16/28"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := PlanLayout(tt.cidr, tt.zones)
			if err != nil {
				t.Fatalf("PlanLayout(%q, %d): %v", tt.cidr, tt.zones, err)
			}
			if got := l.VPC.String(); got != tt.cidr {
				t.Errorf("VPC = %s, want %s", got, tt.cidr)
			}
			if diff := cmp.Diff(tt.public, strs(l.Public)); diff != "" {
				t.Errorf("public subnets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.private, strs(l.Private)); diff != "" {
				t.Errorf("private subnets (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.isolated, strs(l.Isolated)); diff != "" {
				t.Errorf("isolated subnets (-want +got):\n%s", diff)
			}
			if l.Zones() != tt.zones {
				t.Errorf("Zones() = %d, want %d", l.Zones(), tt.zones)
			}
			checkDisjointInside(t, l)
		})
	}
}

// checkDisjointInside checks that every subnet lies inside the VPC and that
// no two subnets overlap, which AWS would reject at create time.
func checkDisjointInside(t *testing.T, l Layout) {
	t.Helper()
	all := append(append(append([]netip.Prefix{}, l.Public...), l.Private...), l.Isolated...)
	for i, a := range all {
		if !l.VPC.Contains(a.Addr()) || a.Bits() < l.VPC.Bits() {
			t.Errorf("subnet %s is not inside VPC %s", a, l.VPC)
		}
		for _, b := range all[i+1:] {
			if a.Overlaps(b) {
				t.Errorf("subnets %s and %s overlap", a, b)
			}
		}
	}
}

func TestPlanLayoutRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		cidr  string
		zones int
		want  string
	}{
		{name: "not a CIDR", cidr: "10.20.0.0", zones: 3, want: "not a CIDR block"},
		{name: "prefix out of range", cidr: "10.20.0.0/33", zones: 3, want: "not a CIDR block"},
		{name: "IPv6", cidr: "fd00::/56", zones: 3, want: "not IPv4"},
		{name: "host bits set", cidr: "10.20.1.0/16", zones: 3, want: "did you mean 10.20.0.0/16"},
		{name: "larger than a /16", cidr: "10.0.0.0/8", zones: 3, want: "larger than AWS allows; use a /16 to /22"},
		{name: "smaller than a /22", cidr: "10.20.0.0/24", zones: 3, want: "too small"},
		{name: "no zones", cidr: "10.20.0.0/16", zones: 0, want: "0 zones is out of range"},
		{name: "more zones than the plan holds", cidr: "10.20.0.0/16", zones: MaxZones + 1, want: "use 1 to 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := PlanLayout(tt.cidr, tt.zones)
			if err == nil {
				t.Fatalf("PlanLayout(%q, %d) = %+v, want an error containing %q", tt.cidr, tt.zones, l, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("PlanLayout(%q, %d) error = %q, want it to contain %q", tt.cidr, tt.zones, err, tt.want)
			}
		})
	}
}

func strs(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}
