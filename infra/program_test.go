package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/stacks"
)

var devStack = stacks.Path("../stacks", "dev")

// usEast1Zones is what the mocked region answers when asked for its zones,
// deliberately out of order: the program must not rely on the API's order.
var usEast1Zones = []string{"us-east-1c", "us-east-1a", "us-east-1f", "us-east-1b", "us-east-1d", "us-east-1e"}

const (
	tokProvider    = "pulumi:providers:aws"
	tokVpc         = "aws:ec2/vpc:Vpc"
	tokSubnet      = "aws:ec2/subnet:Subnet"
	tokIGW         = "aws:ec2/internetGateway:InternetGateway"
	tokRouteTable  = "aws:ec2/routeTable:RouteTable"
	tokRoute       = "aws:ec2/route:Route"
	tokAssociation = "aws:ec2/routeTableAssociation:RouteTableAssociation"
	tokDefaultSG   = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
	tokECSCluster  = "aws:ecs/cluster:Cluster"
	tokGetAZs      = "aws:index/getAvailabilityZones:getAvailabilityZones"
)

// registered is one resource the program registered with the engine.
type registered struct {
	Type     string
	Name     string
	Custom   bool
	Parent   resource.URN
	Provider string
	Inputs   resource.PropertyMap
}

// recorder collects what the program asked of the engine; the mocks are
// called from several goroutines.
type recorder struct {
	mu        sync.Mutex
	resources []registered
	invokes   []pulumi.MockCallArgs
}

func (r *recorder) all() []registered {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]registered(nil), r.resources...)
}

func (r *recorder) calls() []pulumi.MockCallArgs {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]pulumi.MockCallArgs(nil), r.invokes...)
}

func (r *recorder) ofType(typ string) []registered {
	var out []registered
	for _, res := range r.all() {
		if res.Type == typ {
			out = append(out, res)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// mocks stands in for the engine and the AWS provider: resources get an id
// derived from their name and echo their inputs as state, and the region
// answers a zone listing with zones.
type mocks struct {
	rec   *recorder
	zones []string
}

func (m mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	res := registered{
		Type:     args.TypeToken,
		Name:     args.Name,
		Custom:   args.Custom,
		Provider: args.Provider,
		Inputs:   args.Inputs,
	}
	if args.RegisterRPC != nil {
		res.Parent = resource.URN(args.RegisterRPC.GetParent())
	}
	m.rec.mu.Lock()
	m.rec.resources = append(m.rec.resources, res)
	m.rec.mu.Unlock()

	state := args.Inputs.Copy()
	if args.TypeToken == tokECSCluster {
		state["name"] = resource.NewStringProperty(args.Name)
		state["arn"] = resource.NewStringProperty("arn:aws:ecs:us-east-1:123456789012:cluster/" + args.Name)
	}
	return mockID(args.Name), state, nil
}

func (m mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.rec.mu.Lock()
	m.rec.invokes = append(m.rec.invokes, args)
	m.rec.mu.Unlock()
	if args.Token != tokGetAZs {
		return nil, fmt.Errorf("unexpected invoke %s", args.Token)
	}
	names := make([]resource.PropertyValue, len(m.zones))
	for i, z := range m.zones {
		names[i] = resource.NewStringProperty(z)
	}
	return resource.PropertyMap{
		"id":    resource.NewStringProperty("us-east-1"),
		"names": resource.NewArrayProperty(names),
	}, nil
}

func mockID(name string) string { return name + "-id" }

// stackConfig reads the dev stack file and returns its config the way the
// Pulumi CLI hands it to a program: a map from "namespace:key" to a string,
// with object values encoded as JSON. edit, if not nil, changes the
// tandem:platform object first.
func stackConfig(t *testing.T, edit func(platform map[string]any)) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(devStack)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Config map[string]any `yaml:"config"`
	}
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", devStack, err)
	}
	if edit != nil {
		platform, ok := doc.Config[stacks.ConfigKey].(map[string]any)
		if !ok {
			t.Fatalf("%s: %s is a %T, not an object", devStack, stacks.ConfigKey, doc.Config[stacks.ConfigKey])
		}
		edit(platform)
	}
	cfg := map[string]string{}
	for k, v := range doc.Config {
		if s, ok := v.(string); ok {
			cfg[k] = s
			continue
		}
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("config %s: %v", k, err)
		}
		cfg[k] = string(js)
	}
	return cfg
}

// withConfig supplies stack config. The CLI passes the same map in the
// PULUMI_CONFIG environment variable, which RunErr decodes into
// RunInfo.Config; setting the field directly keeps tests parallel.
func withConfig(cfg map[string]string) pulumi.RunOption {
	return func(info *pulumi.RunInfo) { info.Config = cfg }
}

func run(t *testing.T, cfg map[string]string, zones []string) (*recorder, error) {
	t.Helper()
	rec := &recorder{}
	err := pulumi.RunErr(program, pulumi.WithMocks("tandem", "dev", mocks{rec: rec, zones: zones}), withConfig(cfg))
	return rec, err
}

func urn(parentType, typ, name string) resource.URN {
	return resource.NewURN("dev", "tandem", tokens.Type(parentType), tokens.Type(typ), name)
}

func TestDevStackValidates(t *testing.T) {
	t.Parallel()
	spec, err := stacks.Load(devStack)
	if err != nil {
		t.Fatalf("stacks.Load: %v", err)
	}
	if spec.Environment != "dev" {
		t.Errorf("environment = %q, want dev", spec.Environment)
	}
	wantRegions := []stacks.Region{{Name: "us-east-1", Role: stacks.RolePrimary, VPCCIDR: "10.20.0.0/16"}}
	if diff := cmp.Diff(wantRegions, spec.Regions); diff != "" {
		t.Errorf("regions (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stacks.Network{AZCount: 3, NATPerAZ: false}, spec.Network); diff != "" {
		t.Errorf("network (-want +got):\n%s", diff)
	}
	svc := func(name string, port int, database, cache bool, deps ...string) stacks.Service {
		return stacks.Service{
			Name: name, Port: port, Count: 1, HealthPath: "/readyz", PathPrefix: "/v1/" + name,
			CPU: 256, MemoryMiB: 512, Database: database, Cache: cache, DependsOn: deps,
		}
	}
	wantServices := []stacks.Service{
		svc("eligibility", 8081, true, false),
		svc("claims", 8082, true, true, "eligibility"),
		svc("notifications", 8083, true, true),
	}
	if diff := cmp.Diff(wantServices, spec.Services); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if spec.Database.CrossRegionReplica || spec.Cache.GlobalDatastore {
		t.Errorf("crossRegionReplica = %v, globalDatastore = %v; a one-region stack has neither",
			spec.Database.CrossRegionReplica, spec.Cache.GlobalDatastore)
	}
}

func TestProgramDevStack(t *testing.T) {
	t.Parallel()
	rec, err := run(t, stackConfig(t, nil), usEast1Zones)
	if err != nil {
		t.Fatalf("program: %v", err)
	}
	const name = "dev-us-east-1"

	t.Run("resources", func(t *testing.T) {
		got := map[string]int{}
		for _, r := range rec.all() {
			got[r.Type]++
		}
		want := map[string]int{
			tokProvider:            1,
			"tandem:infra:Network": 1,
			"tandem:infra:Cluster": 1,
			tokVpc:                 1,
			tokDefaultSG:           1,
			tokIGW:                 1,
			tokRouteTable:          1 + 3, // public, and one private per zone
			tokRoute:               1,
			tokSubnet:              2 * 3,
			tokAssociation:         2 * 3,
			tokECSCluster:          1,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("resources by type (-want +got):\n%s", diff)
		}
	})

	t.Run("vpc", func(t *testing.T) {
		vpcs := rec.ofType(tokVpc)
		if len(vpcs) != 1 {
			t.Fatalf("%d VPCs, want 1", len(vpcs))
		}
		in := vpcs[0].Inputs
		if got := str(in, "cidrBlock"); got != "10.20.0.0/16" {
			t.Errorf("cidrBlock = %q, want 10.20.0.0/16", got)
		}
		for _, k := range []resource.PropertyKey{"enableDnsSupport", "enableDnsHostnames"} {
			if v, ok := in[k]; !ok || !v.IsBool() || !v.BoolValue() {
				t.Errorf("%s = %v, want true", k, v)
			}
		}
	})

	t.Run("subnets", func(t *testing.T) {
		type subnet struct{ Tier, Zone, CIDR, VPC string }
		var got []subnet
		for _, s := range rec.ofType(tokSubnet) {
			tags := s.Inputs["tags"]
			tier := ""
			if tags.IsObject() {
				tier = str(tags.ObjectValue(), "tandem:tier")
			}
			got = append(got, subnet{tier, str(s.Inputs, "availabilityZone"), str(s.Inputs, "cidrBlock"), str(s.Inputs, "vpcId")})
		}
		vpc := mockID(name + "-vpc")
		want := []subnet{
			{"private", "us-east-1a", "10.20.0.0/19", vpc},
			{"private", "us-east-1b", "10.20.32.0/19", vpc},
			{"private", "us-east-1c", "10.20.64.0/19", vpc},
			{"public", "us-east-1a", "10.20.224.0/22", vpc},
			{"public", "us-east-1b", "10.20.228.0/22", vpc},
			{"public", "us-east-1c", "10.20.232.0/22", vpc},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("subnets (-want +got):\n%s", diff)
		}
	})

	t.Run("public subnets route to the internet gateway", func(t *testing.T) {
		routes := rec.ofType(tokRoute)
		if len(routes) != 1 {
			t.Fatalf("%d routes, want 1", len(routes))
		}
		in := routes[0].Inputs
		if got, want := str(in, "gatewayId"), mockID(name+"-igw"); got != want {
			t.Errorf("route gatewayId = %q, want %q", got, want)
		}
		if got := str(in, "destinationCidrBlock"); got != "0.0.0.0/0" {
			t.Errorf("route destination = %q, want 0.0.0.0/0", got)
		}
		publicRT := mockID(name + "-public")
		var public int
		for _, a := range rec.ofType(tokAssociation) {
			isPublic := strings.HasPrefix(a.Name, name+"-public-")
			if isPublic {
				public++
			}
			if onPublicRT := str(a.Inputs, "routeTableId") == publicRT; onPublicRT != isPublic {
				t.Errorf("association %s uses route table %q; only public subnets use %q",
					a.Name, str(a.Inputs, "routeTableId"), publicRT)
			}
		}
		if public != 3 {
			t.Errorf("%d public subnets associated with the public route table, want 3", public)
		}
	})

	t.Run("ecs cluster has container insights", func(t *testing.T) {
		clusters := rec.ofType(tokECSCluster)
		if len(clusters) != 1 {
			t.Fatalf("%d ECS clusters, want 1", len(clusters))
		}
		settings := map[string]string{}
		if s := clusters[0].Inputs["settings"]; s.IsArray() {
			for _, v := range s.ArrayValue() {
				if v.IsObject() {
					settings[str(v.ObjectValue(), "name")] = str(v.ObjectValue(), "value")
				}
			}
		}
		if diff := cmp.Diff(map[string]string{"containerInsights": "enabled"}, settings); diff != "" {
			t.Errorf("cluster settings (-want +got):\n%s", diff)
		}
	})

	t.Run("default security group has no rules", func(t *testing.T) {
		sgs := rec.ofType(tokDefaultSG)
		if len(sgs) != 1 {
			t.Fatalf("%d default security groups, want 1", len(sgs))
		}
		in := sgs[0].Inputs
		if got, want := str(in, "vpcId"), mockID(name+"-vpc"); got != want {
			t.Errorf("vpcId = %q, want %q", got, want)
		}
		for _, k := range []resource.PropertyKey{"ingress", "egress"} {
			if v, ok := in[k]; ok && !v.IsNull() && !(v.IsArray() && len(v.ArrayValue()) == 0) {
				t.Errorf("%s = %v, want no rules", k, v)
			}
		}
	})

	t.Run("children are parented under their component", func(t *testing.T) {
		stack := urn("", "pulumi:pulumi:Stack", "tandem-dev")
		network := urn("", "tandem:infra:Network", name)
		cluster := urn("", "tandem:infra:Cluster", name)
		parents := []struct {
			typePrefix string
			want       resource.URN
		}{
			{"tandem:infra:", stack},
			{"pulumi:providers:", stack},
			{"aws:ec2/", network},
			{"aws:ecs/", cluster},
		}
		for _, r := range rec.all() {
			var want resource.URN
			for _, p := range parents {
				if strings.HasPrefix(r.Type, p.typePrefix) {
					want = p.want
					break
				}
			}
			if want == "" {
				t.Errorf("%s %s: no parent expected for this type; add it to the table", r.Type, r.Name)
				continue
			}
			if r.Parent != want {
				t.Errorf("%s %s: parent = %q, want %q", r.Type, r.Name, r.Parent, want)
			}
		}
	})

	t.Run("aws resources use the region provider", func(t *testing.T) {
		providers := rec.ofType(tokProvider)
		if len(providers) != 1 {
			t.Fatalf("%d AWS providers, want 1", len(providers))
		}
		if got := str(providers[0].Inputs, "region"); got != "us-east-1" {
			t.Errorf("provider region = %q, want us-east-1", got)
		}
		ref := string(urn("", tokProvider, "aws-us-east-1")) + "::" + mockID("aws-us-east-1")
		for _, r := range rec.all() {
			if r.Custom && strings.HasPrefix(r.Type, "aws:") && r.Provider != ref {
				t.Errorf("%s %s: provider = %q, want %q", r.Type, r.Name, r.Provider, ref)
			}
		}
		for _, c := range rec.calls() {
			if c.Provider != ref {
				t.Errorf("invoke %s: provider = %q, want %q", c.Token, c.Provider, ref)
			}
		}
	})
}

func TestProgramRejectsInvalidSpec(t *testing.T) {
	t.Parallel()
	region := func(p map[string]any) map[string]any {
		return p["regions"].([]any)[0].(map[string]any)
	}
	tests := []struct {
		name string
		edit func(platform map[string]any)
		want string
	}{
		{
			name: "region role is neither primary nor secondary",
			edit: func(p map[string]any) { region(p)["role"] = "tertiary" },
			want: `regions[0].role: "tertiary" is not a role`,
		},
		{
			name: "unknown field",
			edit: func(p map[string]any) { p["regionz"] = []any{} },
			want: `unknown field "regionz"`,
		},
		{
			name: "azCount out of range",
			edit: func(p map[string]any) { p["network"].(map[string]any)["azCount"] = 7 },
			want: "network.azCount: 7 is out of range",
		},
		{
			name: "dependency on a service the stack lacks",
			edit: func(p map[string]any) {
				p["services"].([]any)[1].(map[string]any)["dependsOn"] = []any{"billing"}
			},
			want: `services[1].dependsOn: "billing" is not a service`,
		},
		{
			name: "vpcCidr is not a CIDR block",
			edit: func(p map[string]any) { region(p)["vpcCidr"] = "10.20.0.0/33" },
			want: "regions[0].vpcCidr: \"10.20.0.0/33\" is not a CIDR block",
		},
		{
			name: "vpcCidr too small for the subnets",
			edit: func(p map[string]any) { region(p)["vpcCidr"] = "10.20.0.0/24" },
			want: "regions[0].vpcCidr: \"10.20.0.0/24\" is too small",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec, err := run(t, stackConfig(t, tt.edit), usEast1Zones)
			assertFailedEmpty(t, rec, err, tt.want)
		})
	}

	t.Run("no platform spec", func(t *testing.T) {
		t.Parallel()
		cfg := stackConfig(t, nil)
		delete(cfg, stacks.ConfigKey)
		rec, err := run(t, cfg, usEast1Zones)
		assertFailedEmpty(t, rec, err, "tandem:platform: missing from the stack's config")
	})
}

// assertFailedEmpty checks that the program failed with an error containing
// want and asked nothing of the engine or the provider.
func assertFailedEmpty(t *testing.T, rec *recorder, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("program succeeded, want an error containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
	for _, r := range rec.all() {
		t.Errorf("registered %s %s before rejecting the spec", r.Type, r.Name)
	}
	for _, c := range rec.calls() {
		t.Errorf("invoked %s before rejecting the spec", c.Token)
	}
}

func TestProgramRegionWithTooFewZones(t *testing.T) {
	t.Parallel()
	rec, err := run(t, stackConfig(t, nil), []string{"us-east-1b", "us-east-1a"})
	if err == nil {
		t.Fatal("program succeeded with 2 zones for azCount 3, want an error")
	}
	want := "network.azCount: 3 zones wanted but us-east-1 offers 2 (us-east-1a, us-east-1b)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
	for _, r := range rec.all() {
		if strings.HasPrefix(r.Type, "aws:ec2/") {
			t.Errorf("declared %s %s although the region lacks zones", r.Type, r.Name)
		}
	}
}

// str returns a string property, or "" when it is absent or not a string.
func str(m resource.PropertyMap, key resource.PropertyKey) string {
	if v, ok := m[key]; ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}
