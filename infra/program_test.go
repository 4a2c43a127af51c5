package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tandemhq/tandem/operator/topology"
	"github.com/tandemhq/tandem/stacks"
)

// stackNames are the AWS stacks every property is checked on.
var stackNames = []string{"dev", "prod"}

func TestStackFiles(t *testing.T) {
	t.Parallel()
	dev, err := stacks.Load(stacks.Path("../stacks", "dev"))
	if err != nil {
		t.Fatalf("load dev: %v", err)
	}
	if diff := cmp.Diff([]string{"us-east-1"}, dev.RegionNames()); diff != "" {
		t.Errorf("dev regions (-want +got):\n%s", diff)
	}
	if dev.Network.NATPerAZ || dev.Database.CrossRegionReplica || dev.Cache.GlobalDatastore {
		t.Errorf("dev: natPerAz %v, crossRegionReplica %v, globalDatastore %v; a small one-region stack has none",
			dev.Network.NATPerAZ, dev.Database.CrossRegionReplica, dev.Cache.GlobalDatastore)
	}
	if dev.Protection.Deletion() || dev.Protection.Snapshot() || dev.Protection.Logs() {
		t.Errorf("dev protection = %+v; dev is disposable", dev.Protection)
	}

	prod, err := stacks.Load(stacks.Path("../stacks", "prod"))
	if err != nil {
		t.Fatalf("load prod: %v", err)
	}
	wantRegions := []stacks.Region{
		{Name: "us-east-1", Role: stacks.RolePrimary, VPCCIDR: "10.30.0.0/16"},
		{Name: "us-west-2", Role: stacks.RoleSecondary, VPCCIDR: "10.31.0.0/16"},
	}
	if diff := cmp.Diff(wantRegions, prod.Regions); diff != "" {
		t.Errorf("prod regions (-want +got):\n%s", diff)
	}
	if !prod.Network.NATPerAZ || !prod.Database.MultiAZ || !prod.Database.CrossRegionReplica || !prod.Cache.GlobalDatastore || prod.Cache.Replicas < 1 {
		t.Errorf("prod: natPerAz %v, multiAZ %v, crossRegionReplica %v, globalDatastore %v, cache replicas %d; prod is highly available",
			prod.Network.NATPerAZ, prod.Database.MultiAZ, prod.Database.CrossRegionReplica, prod.Cache.GlobalDatastore, prod.Cache.Replicas)
	}
	if !prod.Protection.Deletion() || !prod.Protection.Snapshot() || !prod.Protection.Logs() {
		t.Errorf("prod protection = %+v, want everything on", prod.Protection)
	}

	// What the checked-in files lack is exactly what belongs to one AWS
	// account, and the errors say how to set it.
	for _, tc := range []struct {
		spec *stacks.Spec
		want []string
	}{
		{dev, []string{"regions[0].certificateArn: missing", "routing.domain: missing", "routing.hostedZoneId: missing"}},
		{prod, []string{"regions[0].certificateArn: missing", "regions[1].certificateArn: missing", "routing.domain: missing", "routing.hostedZoneId: missing"}},
	} {
		err := tc.spec.ValidateAWS()
		ve, ok := err.(*stacks.ValidationError)
		if !ok {
			t.Fatalf("%s: ValidateAWS = %v, want a *ValidationError", tc.spec.Environment, err)
		}
		if len(ve.Problems) != len(tc.want) {
			t.Errorf("%s: problems %q, want %d", tc.spec.Environment, ve.Problems, len(tc.want))
		}
		for i, w := range tc.want {
			if i < len(ve.Problems) && (!strings.HasPrefix(ve.Problems[i], w) || !strings.Contains(ve.Problems[i], "pulumi config set --path")) {
				t.Errorf("%s: problem %d = %q, want %q with the pulumi config command", tc.spec.Environment, i, ve.Problems[i], w)
			}
		}
	}
}

// TestResourceCounts pins what each stack declares, by type; docs/infra.md
// carries the same table.
func TestResourceCounts(t *testing.T) {
	t.Parallel()
	// Per region: 3 zones × 3 tiers of subnets; route tables public,
	// isolated and one private per zone; routes to the internet gateway
	// and one per private table; 5 interface and 1 gateway endpoint; keys
	// data and telemetry. Per service and region: 2 target groups, 4
	// listener rules (2 test headers, readiness, path), 2 ECS services
	// with a scaling target and policy each.
	common := map[string]int{
		tokVpc: 1, tokSubnet: 9, tokRouteTable: 5, tokRoute: 4, tokAssociation: 9, tokDefaultSG: 1,
		"aws:ec2/internetGateway:InternetGateway": 1, tokFlowLog: 1, tokEndpoint: 6, tokKey: 2, "aws:kms/alias:Alias": 2,
		tokECSCluster: 1, tokLoadBalancer: 1, tokListener: 2, tokTaskDefinition: 3, tokTargetGroup: 6,
		tokListenerRule: 12, tokECSService: 6, tokScalableTarget: 6, tokScalingPolicy: 6, tokTopic: 1,
		"aws:sns/topicPolicy:TopicPolicy": 1, tokParameter: 1,
	}
	perRegion := func(regions int, extra map[string]int) map[string]int {
		out := map[string]int{}
		for k, v := range common {
			out[k] = v * regions
		}
		for k, v := range extra {
			out[k] += v
		}
		return out
	}
	tests := []struct {
		stack string
		want  map[string]int
	}{
		{"dev", perRegion(1, map[string]int{
			tokProvider: 1, "aws:ec2/eip:Eip": 1, tokNAT: 1,
			// Groups: endpoints, load balancer, tasks, database, cache.
			tokSecurityGroup: 5, tokSGRule: 11,
			tokDBInstance: 1, tokDBParameterGroup: 1, "aws:rds/subnetGroup:SubnetGroup": 1,
			tokReplicationGroup: 1, "aws:elasticache/subnetGroup:SubnetGroup": 1,
			// Flow logs, 3 services, 2 database exports, cache slow log.
			tokLogGroup: 7,
			// Flow logs, 3 execution roles, monitoring, operator.
			tokRole: 6, tokRolePolicy: 7, "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
			tokSecret: 3, tokTable: 1,
			// 3 services + 1 calculated; the region's own name and the
			// platform's name.
			tokHealthCheck: 4, tokRecord: 2,
			// 5xx rate, latency, 6 unhealthy-host, database CPU and
			// storage, cache CPU and lag for 2 nodes.
			tokAlarm: 14,
		})},
		{"prod", perRegion(2, map[string]int{
			tokProvider: 2, "aws:ec2/eip:Eip": 6, tokNAT: 6,
			tokSecurityGroup: 10, tokSGRule: 22,
			tokDBInstance: 3, tokDBParameterGroup: 2, "aws:rds/subnetGroup:SubnetGroup": 2,
			tokReplicationGroup: 2, tokGlobalReplication: 1, "aws:elasticache/subnetGroup:SubnetGroup": 2,
			tokLogGroup: 16,
			tokRole:     10, tokRolePolicy: 11, "aws:iam/rolePolicyAttachment:RolePolicyAttachment": 1,
			tokSecret: 3, tokTable: 1,
			tokHealthCheck: 8, tokRecord: 4,
			tokBucket: 2, tokPublicAccessBlock: 2, "aws:s3/bucketOwnershipControls:BucketOwnershipControls": 2,
			"aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2": 2,
			"aws:s3/bucketLifecycleConfigurationV2:BucketLifecycleConfigurationV2":                       2,
			"aws:s3/bucketPolicy:BucketPolicy":                                                           2,
			// Per region 2 + 6 unhealthy-host; database: primary 2, its
			// replica 3, cross-region replica 3; cache 3 nodes × 2 per region.
			tokAlarm: 16 + 8 + 12,
		})},
	}
	for _, tt := range tests {
		t.Run(tt.stack, func(t *testing.T) {
			t.Parallel()
			got := map[string]int{}
			for _, r := range ranStack(t, tt.stack).all() {
				if r.Custom {
					got[r.Type]++
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("custom resources by type (-want +got):\n%s", diff)
			}
		})
	}
}

func TestProgramRejectsInvalidSpec(t *testing.T) {
	t.Parallel()
	region := func(p map[string]any, i int) map[string]any {
		return p["regions"].([]any)[i].(map[string]any)
	}
	sub := func(p map[string]any, key string) map[string]any { return p[key].(map[string]any) }
	tests := []struct {
		name  string
		stack string
		edit  func(platform map[string]any)
		cfg   func(cfg map[string]string) []string
		want  string
	}{
		{
			name: "region role is neither primary nor secondary", stack: "dev",
			edit: func(p map[string]any) { region(p, 0)["role"] = "tertiary" },
			want: `regions[0].role: "tertiary" is not a role`,
		},
		{
			name: "unknown field", stack: "dev",
			edit: func(p map[string]any) { p["regionz"] = []any{} },
			want: `unknown field "regionz"`,
		},
		{
			name: "azCount out of range", stack: "dev",
			edit: func(p map[string]any) { sub(p, "network")["azCount"] = 7 },
			want: "network.azCount: 7 is out of range",
		},
		{
			name: "dependency on a service the stack lacks", stack: "dev",
			edit: func(p map[string]any) { p["services"].([]any)[1].(map[string]any)["dependsOn"] = []any{"billing"} },
			want: `services[1].dependsOn: "billing" is not a service`,
		},
		{
			name: "vpcCidr is not a CIDR block", stack: "dev",
			edit: func(p map[string]any) { region(p, 0)["vpcCidr"] = "10.20.0.0/33" },
			want: `regions[0].vpcCidr: "10.20.0.0/33" is not a CIDR block`,
		},
		{
			name: "vpcCidr too small for the subnets", stack: "dev",
			edit: func(p map[string]any) { region(p, 0)["vpcCidr"] = "10.20.0.0/24" },
			want: `regions[0].vpcCidr: "10.20.0.0/24" is too small`,
		},
		{
			name: "regions' VPCs overlap", stack: "prod",
			edit: func(p map[string]any) { region(p, 1)["vpcCidr"] = "10.30.0.0/16" },
			want: "regions[1].vpcCidr: 10.30.0.0/16 overlaps regions[0]'s",
		},
		{
			name: "certificate of another region", stack: "prod",
			edit: func(p map[string]any) { region(p, 1)["certificateArn"] = certificateARN("us-east-1") },
			want: "regions[1].certificateArn: the certificate is in us-east-1 but the region is us-west-2",
		},
		{
			name: "no certificate", stack: "prod",
			edit: func(p map[string]any) { delete(region(p, 0), "certificateArn") },
			want: "regions[0].certificateArn: missing",
		},
		{
			name: "no domain", stack: "dev",
			edit: func(p map[string]any) { delete(sub(p, "routing"), "domain") },
			want: "routing.domain: missing",
		},
		{
			name: "not an AWS region", stack: "dev",
			edit: func(p map[string]any) {
				region(p, 0)["name"] = "local-a"
				delete(region(p, 0), "certificateArn")
			},
			want: `regions[0].name: "local-a" is not an AWS region`,
		},
		{
			name: "burstable node in a Global Datastore", stack: "prod",
			edit: func(p map[string]any) { sub(p, "cache")["nodeType"] = "cache.t4g.small" },
			want: "cache.nodeType: cache.t4g.small cannot join a Global Datastore",
		},
		{
			name: "secondary region without a database replica", stack: "prod",
			edit: func(p map[string]any) { sub(p, "database")["crossRegionReplica"] = false },
			want: "database.crossRegionReplica: false, but the stack has a secondary region",
		},
		{
			name: "task size Fargate does not offer", stack: "dev",
			edit: func(p map[string]any) { p["services"].([]any)[0].(map[string]any)["memoryMiB"] = 4096 },
			want: "services[0].memoryMiB: 4096 does not fit cpu 256 on Fargate",
		},
		{
			name: "service without an image", stack: "dev",
			edit: func(p map[string]any) { delete(p["services"].([]any)[2].(map[string]any), "image") },
			want: "services[2].image: missing",
		},
		{
			name: "bad log retention", stack: "dev",
			edit: func(p map[string]any) { sub(p, "observability")["logRetentionDays"] = 10 },
			want: "observability.logRetentionDays: 10 is not a CloudWatch Logs retention period",
		},
		{
			name: "no AUTH token", stack: "dev",
			cfg:  func(cfg map[string]string) []string { delete(cfg, AuthTokenKey); return nil },
			want: AuthTokenKey + ": missing",
		},
		{
			name: "AUTH token in plain text", stack: "dev",
			cfg:  func(cfg map[string]string) []string { return []string{} },
			want: AuthTokenKey + ": stored in plain text",
		},
		{
			name: "AUTH token with a character ElastiCache refuses", stack: "dev",
			cfg: func(cfg map[string]string) []string {
				cfg[AuthTokenKey] = "0123456789abcdef@0123"
				return nil
			},
			want: AuthTokenKey + `: contains '@'`,
		},
		{
			name: "no platform spec", stack: "dev",
			cfg:  func(cfg map[string]string) []string { delete(cfg, stacks.ConfigKey); return nil },
			want: "tandem:platform: missing from the stack's config",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := stackConfig(tt.stack, tt.edit)
			if err != nil {
				t.Fatal(err)
			}
			var secretKeys []string
			if tt.cfg != nil {
				secretKeys = tt.cfg(cfg)
			}
			rec, err := run(tt.stack, cfg, mocks{rec: &recorder{}}, secretKeys...)
			assertFailedEmpty(t, rec, err, "stack "+tt.stack+": ", tt.want)
		})
	}

	t.Run("checked-in prod file before its account values are set", func(t *testing.T) {
		t.Parallel()
		cfg, err := stackConfig("prod", func(p map[string]any) {
			for i := range p["regions"].([]any) {
				delete(region(p, i), "certificateArn")
			}
			delete(sub(p, "routing"), "domain")
			delete(sub(p, "routing"), "hostedZoneId")
		})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := run("prod", cfg, mocks{rec: &recorder{}})
		assertFailedEmpty(t, rec, err, "stack prod: ", "regions[1].certificateArn: missing")
	})
}

// assertFailedEmpty checks that the program failed with an error that
// starts with prefix and contains want, and asked nothing of the engine or
// the provider.
func assertFailedEmpty(t *testing.T, rec *recorder, err error, prefix, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("program succeeded, want an error containing %q", want)
	}
	if !strings.Contains(err.Error(), prefix) || !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to start with %q and contain %q", err, prefix, want)
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
	cfg, err := stackConfig("dev", nil)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := run("dev", cfg, mocks{rec: &recorder{}, zones: []string{"us-east-1b", "us-east-1a"}})
	if err == nil {
		t.Fatal("program succeeded with 2 zones for azCount 3, want an error")
	}
	want := "network.azCount: 3 zones wanted but us-east-1 offers 2 (us-east-1a, us-east-1b)"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error = %q, want it to contain %q", err, want)
	}
	for _, r := range rec.ofType(tokVpc) {
		t.Errorf("declared %s %s although the region lacks zones", r.Type, r.Name)
	}
}

func TestTopologyDocument(t *testing.T) {
	t.Parallel()
	spec, err := stacks.Load(stacks.Path("../stacks", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	got := topologyDocument(spec, "prod", "https://api.tandem.test", []regionFacts{
		{Name: "us-east-1", Primary: true, ProxyURL: "https://us-east-1.api.tandem.test",
			DatabaseEndpoint: "db1:5432", DatabaseServer: "tandem-prod-us-east-1", CacheEndpoint: "c1:6379", CacheServer: "tandem-prod-us-east-1"},
		{Name: "us-west-2", ProxyURL: "https://us-west-2.api.tandem.test",
			DatabaseEndpoint: "db2:5432", DatabaseServer: "tandem-prod-us-west-2", CacheEndpoint: "c2:6379", CacheServer: "tandem-prod-us-west-2"},
	})
	services := func(active bool) []topology.ServiceStatus {
		var out []topology.ServiceStatus
		for _, s := range []struct {
			name  string
			count int
		}{{"eligibility", 3}, {"claims", 3}, {"notifications", 2}} {
			tasks := 0
			if active {
				tasks = s.count
			}
			out = append(out, topology.ServiceStatus{
				Name:    s.name,
				Weights: topology.Weights{Blue: 100},
				Colors: map[string]topology.ColorStatus{
					topology.Blue:  {Version: "v1", Tasks: tasks},
					topology.Green: {Version: "v1"},
				},
			})
		}
		return out
	}
	want := topology.Status{
		Stack:        "prod",
		ActiveRegion: "us-east-1",
		FrontDoor:    topology.FrontDoor{URL: "https://api.tandem.test", ActiveRegion: "us-east-1"},
		Regions: []topology.RegionStatus{
			{
				Name: "us-east-1", Role: stacks.RolePrimary, ProxyURL: "https://us-east-1.api.tandem.test",
				Database: topology.DataStatus{Role: topology.RolePrimary, Endpoint: "db1:5432", Server: "tandem-prod-us-east-1"},
				Cache:    topology.DataStatus{Role: topology.RolePrimary, Endpoint: "c1:6379", Server: "tandem-prod-us-east-1"},
				Services: services(true),
			},
			{
				Name: "us-west-2", Role: stacks.RoleSecondary, ProxyURL: "https://us-west-2.api.tandem.test",
				Database: topology.DataStatus{Role: topology.RoleReplica, Endpoint: "db2:5432", Server: "tandem-prod-us-west-2"},
				Cache:    topology.DataStatus{Role: topology.RoleReplica, Endpoint: "c2:6379", Server: "tandem-prod-us-west-2"},
				Services: services(false),
			},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("topology (-want +got):\n%s", diff)
	}
}

// TestTopologyPublished checks the document in SSM: one parameter per
// region through that region's provider, the same document everywhere,
// of the operator's type, filled from the resources' real outputs.
func TestTopologyPublished(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			params := rec.ofType(tokParameter)
			regions := map[string]bool{}
			var first string
			for _, p := range params {
				regions[p.Region] = true
				if got, want := p.str("name"), "/tandem/"+stack+"/topology"; got != want {
					t.Errorf("parameter name = %q, want %q", got, want)
				}
				if p.str("type") != "String" {
					t.Errorf("parameter type = %q; the document is not secret", p.str("type"))
				}
				if first == "" {
					first = p.str("value")
				} else if p.str("value") != first {
					t.Errorf("the document in %s differs from the first region's", p.Region)
				}
			}
			for _, prov := range rec.ofType(tokProvider) {
				if !regions[prov.str("region")] {
					t.Errorf("no topology parameter in %s", prov.str("region"))
				}
			}
			var st topology.Status
			dec := json.NewDecoder(strings.NewReader(first))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&st); err != nil {
				t.Fatalf("the document is not a topology.Status: %v", err)
			}
			if st.Stack != stack || st.ActiveRegion != "us-east-1" || st.FrontDoor.URL != "https://"+domains[stack] {
				t.Errorf("stack %q, active region %q, front door %q", st.Stack, st.ActiveRegion, st.FrontDoor.URL)
			}
			if len(st.Regions) != len(regions) {
				t.Fatalf("%d regions in the document, want %d", len(st.Regions), len(regions))
			}
			for _, r := range st.Regions {
				db := rec.named(t, tokDBInstance, stack+"-db-"+r.Name)
				if want := db.str("address") + ":5432"; r.Database.Endpoint != want || r.Database.Server != db.str("identifier") {
					t.Errorf("%s database = %+v, want endpoint %s of %s", r.Name, r.Database, want, db.str("identifier"))
				}
				rg := rec.named(t, tokReplicationGroup, stack+"-cache-"+r.Name)
				if want := rg.str("primaryEndpointAddress") + ":6379"; r.Cache.Endpoint != want {
					t.Errorf("%s cache endpoint = %q, want %q", r.Name, r.Cache.Endpoint, want)
				}
				if want := "https://" + r.Name + "." + domains[stack]; r.ProxyURL != want {
					t.Errorf("%s proxy URL = %q, want %q", r.Name, r.ProxyURL, want)
				}
				if len(r.Services) != 3 {
					t.Errorf("%s has %d services, want 3", r.Name, len(r.Services))
				}
			}
		})
	}
}
