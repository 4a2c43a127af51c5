package main

import (
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestHighAvailability(t *testing.T) {
	t.Parallel()
	tests := []struct {
		stack        string
		dbMultiAZ    bool
		cacheNodes   float64
		natsByRegion int
		readReplicas int
	}{
		{"dev", false, 2, 1, 0},
		{"prod", true, 3, 3, 1},
	}
	for _, tt := range tests {
		t.Run(tt.stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, tt.stack)
			primary := rec.named(t, tokDBInstance, tt.stack+"-db-us-east-1")
			if primary.flag("multiAz") != tt.dbMultiAZ {
				t.Errorf("primary database multiAz = %v, want %v", primary.flag("multiAz"), tt.dbMultiAZ)
			}
			var replicas []registered
			for _, db := range rec.inRegion(tokDBInstance, "us-east-1") {
				if db.str("replicateSourceDb") != "" {
					replicas = append(replicas, db)
					// With a subnet group of its own, a replica names its
					// source by ARN.
					if db.str("replicateSourceDb") != primary.str("arn") || db.str("dbSubnetGroupName") == "" {
						t.Errorf("read replica %s replicates %q in subnet group %q, want %q", db.Name, db.str("replicateSourceDb"), db.str("dbSubnetGroupName"), primary.str("arn"))
					}
				}
			}
			if len(replicas) != tt.readReplicas {
				t.Errorf("%d in-region read replicas, want %d", len(replicas), tt.readReplicas)
			}
			// Both stacks' caches have a replica, so both fail over on their
			// own, in another zone.
			for _, rg := range rec.ofType(tokReplicationGroup) {
				if !rg.flag("automaticFailoverEnabled") || !rg.flag("multiAzEnabled") || rg.num("numCacheClusters") != tt.cacheNodes {
					t.Errorf("cache %s: automatic failover %v, Multi-AZ %v, %v nodes; want on, on, %v",
						rg.Name, rg.flag("automaticFailoverEnabled"), rg.flag("multiAzEnabled"), rg.num("numCacheClusters"), tt.cacheNodes)
				}
			}
			for _, prov := range rec.ofType(tokProvider) {
				region := prov.str("region")
				nats := rec.inRegion(tokNAT, region)
				if len(nats) != tt.natsByRegion {
					t.Errorf("%s: %d NAT gateways, want %d", region, len(nats), tt.natsByRegion)
				}
				zones := map[string]map[string]bool{}
				for _, s := range rec.inRegion(tokSubnet, region) {
					tier := s.str(`tags["tandem:tier"]`)
					if zones[tier] == nil {
						zones[tier] = map[string]bool{}
					}
					zones[tier][s.str("availabilityZone")] = true
				}
				for _, tier := range []string{"public", "private", "isolated"} {
					if len(zones[tier]) != 3 {
						t.Errorf("%s: %s subnets in %d zones, want 3", region, tier, len(zones[tier]))
					}
				}
				// With a NAT gateway per zone, each private route table
				// routes to the gateway of its own zone.
				if tt.natsByRegion == 3 {
					for _, r := range rec.inRegion(tokRoute, region) {
						if !strings.HasSuffix(r.Name, "-nat") {
							continue
						}
						zone := strings.TrimSuffix(r.Name[strings.Index(r.Name, "-private-")+len("-private-"):], "-nat")
						nat, _ := rec.byID(r.str("natGatewayId"))
						if !strings.HasSuffix(nat.Name, "-nat-"+zone) {
							t.Errorf("route %s goes to %s, want the NAT gateway in %s", r.Name, nat.Name, zone)
						}
					}
				}
			}
		})
	}
}

// TestSecondaryRegion checks that what lives in the secondary region is
// declared through the secondary region's provider and refers to the
// primary by the identifiers AWS requires across regions.
func TestSecondaryRegion(t *testing.T) {
	t.Parallel()
	rec := ranStack(t, "prod")
	west := providerRef("prod", "us-west-2")
	westData := keyArn(t, rec, "prod", "us-west-2", "data")
	primary := rec.named(t, tokDBInstance, "prod-db-us-east-1")

	replica := rec.named(t, tokDBInstance, "prod-db-us-west-2")
	if replica.Provider != west {
		t.Errorf("cross-region replica provider = %q, want %q", replica.Provider, west)
	}
	if replica.str("replicateSourceDb") != primary.str("arn") {
		t.Errorf("cross-region replica source = %q, want the primary's ARN %q", replica.str("replicateSourceDb"), primary.str("arn"))
	}
	if replica.str("kmsKeyId") != westData {
		t.Errorf("cross-region replica key = %q, want us-west-2's data key %q", replica.str("kmsKeyId"), westData)
	}
	subnets := rec.named(t, "aws:rds/subnetGroup:SubnetGroup", "prod-db-us-west-2")
	if replica.str("dbSubnetGroupName") != subnets.str("name") || subnets.Region != "us-west-2" {
		t.Errorf("cross-region replica subnet group = %q, want us-west-2's", replica.str("dbSubnetGroupName"))
	}
	if !replica.flag("multiAz") {
		t.Error("cross-region replica is not Multi-AZ; it would not be highly available once promoted")
	}

	global := rec.named(t, tokGlobalReplication, "prod-cache")
	primaryCache := rec.named(t, tokReplicationGroup, "prod-cache-us-east-1")
	if global.str("primaryReplicationGroupId") != primaryCache.ID || global.Region != "us-east-1" {
		t.Errorf("global datastore primary = %q in %s, want %q in us-east-1", global.str("primaryReplicationGroupId"), global.Region, primaryCache.ID)
	}
	member := rec.named(t, tokReplicationGroup, "prod-cache-us-west-2")
	if member.Provider != west {
		t.Errorf("cache member provider = %q, want %q", member.Provider, west)
	}
	if member.str("globalReplicationGroupId") != global.str("globalReplicationGroupId") {
		t.Errorf("cache member joins %q, want %q", member.str("globalReplicationGroupId"), global.str("globalReplicationGroupId"))
	}
	if sg := rec.named(t, "aws:elasticache/subnetGroup:SubnetGroup", "prod-cache-us-west-2"); member.str("subnetGroupName") != sg.str("name") || sg.Region != "us-west-2" {
		t.Errorf("cache member subnet group = %q, want us-west-2's %q", member.str("subnetGroupName"), sg.str("name"))
	}
	if member.str("kmsKeyId") != westData {
		t.Errorf("cache member key = %q, want us-west-2's data key", member.str("kmsKeyId"))
	}
	for _, k := range []string{"engine", "engineVersion", "nodeType"} {
		if _, ok := member.In[k]; ok {
			t.Errorf("cache member sets %s; a Global Datastore member inherits it", k)
		}
	}

	table := rec.ofType(tokTable)[0]
	if diff := cmp.Diff([]string{"us-west-2"}, []string{table.str("replicas[0].regionName")}); diff != "" || len(table.list("replicas")) != 1 {
		t.Errorf("state table replicas %v, want one in us-west-2", table.Out["replicas"])
	}
	for _, s := range rec.ofType(tokSecret) {
		if s.str("replicas[0].region") != "us-west-2" {
			t.Errorf("secret %s is not replicated to us-west-2", s.Name)
		}
	}
	// The standby region runs no fleet until the operator fails over.
	for _, svc := range rec.inRegion(tokECSService, "us-west-2") {
		if svc.num("desiredCount") != 0 {
			t.Errorf("standby ECS service %s desires %v tasks, want 0", svc.Name, svc.num("desiredCount"))
		}
	}
}

func TestFailoverRouting(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			domain := domains[stack]
			services := []string{"claims", "eligibility", "notifications"}
			var platformRecords []registered
			for _, r := range rec.ofType(tokRecord) {
				if r.str("zoneId") != zoneID {
					t.Errorf("record %s in zone %q, want %q", r.Name, r.str("zoneId"), zoneID)
				}
				if r.str("name") == domain {
					platformRecords = append(platformRecords, r)
				}
			}
			regions := rec.ofType(tokProvider)
			if len(platformRecords) != len(regions) {
				t.Fatalf("%d records for %s, want one per region", len(platformRecords), domain)
			}
			for _, prov := range regions {
				region := prov.str("region")
				alb := rec.inRegion(tokLoadBalancer, region)[0]
				var checkIDs []string
				for _, svc := range services {
					hc := rec.named(t, tokHealthCheck, stack+"-routing-"+region+"-"+svc)
					if hc.str("type") != "HTTPS" || hc.str("fqdn") != alb.str("dnsName") || hc.num("port") != 443 ||
						hc.str("resourcePath") != "/readyz?service="+svc || hc.num("failureThreshold") != 3 {
						t.Errorf("health check of %s in %s: %s %s:%v%s threshold %v", svc, region,
							hc.str("type"), hc.str("fqdn"), hc.num("port"), hc.str("resourcePath"), hc.num("failureThreshold"))
					}
					checkIDs = append(checkIDs, hc.ID)
					// The load balancer answers the check's path and query
					// from the service's own targets.
					found := false
					for _, rule := range rec.inRegion(tokListenerRule, region) {
						if rule.str("conditions[0].pathPattern.values[0]") == "/readyz" &&
							rule.str("conditions[1].queryStrings[0].key") == "service" && rule.str("conditions[1].queryStrings[0].value") == svc {
							found = true
							if tg, _ := rec.byArn(rule.str("actions[0].forward.targetGroups[0].arn")); !strings.Contains(tg.Name, "-"+svc+"-") {
								t.Errorf("readiness rule of %s forwards to %s", svc, tg.Name)
							}
						}
					}
					if !found {
						t.Errorf("no readiness rule for %s in %s", svc, region)
					}
				}
				calc := rec.named(t, tokHealthCheck, stack+"-routing-"+region)
				children := calc.strs("childHealthchecks")
				sort.Strings(children)
				sort.Strings(checkIDs)
				if calc.str("type") != "CALCULATED" || calc.num("childHealthThreshold") != float64(len(services)) || cmp.Diff(checkIDs, children) != "" {
					t.Errorf("region check of %s: %s of %v needs %v, want CALCULATED of %v needing all", region, calc.str("type"), children, calc.num("childHealthThreshold"), checkIDs)
				}

				var rec53 registered
				for _, r := range platformRecords {
					if r.str("aliases[0].name") == alb.str("dnsName") {
						rec53 = r
					}
				}
				if rec53.Name == "" {
					t.Fatalf("no record of %s points at %s's load balancer", domain, region)
				}
				if rec53.str("aliases[0].zoneId") != alb.str("zoneId") || !rec53.flag("aliases[0].evaluateTargetHealth") {
					t.Errorf("record for %s: alias %v", region, rec53.Out["aliases"])
				}
				if len(regions) > 1 {
					role := "SECONDARY"
					if region == "us-east-1" {
						role = "PRIMARY"
					}
					if rec53.str("failoverRoutingPolicies[0].type") != role || rec53.str("healthCheckId") != calc.ID || rec53.str("setIdentifier") != region {
						t.Errorf("record for %s: failover %q, health check %q, set %q; want %s tied to %s",
							region, rec53.str("failoverRoutingPolicies[0].type"), rec53.str("healthCheckId"), rec53.str("setIdentifier"), role, calc.ID)
					}
				} else if rec53.list("failoverRoutingPolicies") != nil {
					t.Errorf("one-region stack has a failover record")
				}
				own := rec.named(t, tokRecord, stack+"-routing-"+region)
				if own.str("name") != region+"."+domain || own.str("aliases[0].name") != alb.str("dnsName") {
					t.Errorf("regional record %s -> %s, want %s.%s -> %s", own.str("name"), own.str("aliases[0].name"), region, domain, alb.str("dnsName"))
				}
			}
		})
	}
}

// byArn finds a resource by the ARN the mocks gave it.
func (r *recorder) byArn(arn string) (registered, bool) {
	for _, res := range r.all() {
		if res.str("arn") == arn {
			return res, true
		}
	}
	return registered{}, false
}

// TestOperatorOwnedFieldsIgnored checks, on the register calls the engine
// receives, that `pulumi up` leaves alone what the operator changes during
// a deploy or a failover, and nothing else.
func TestOperatorOwnedFieldsIgnored(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			spec := map[string]float64{}
			for _, s := range rec.ofType(tokTaskDefinition) {
				spec[s.str("family")] = 0
			}
			weighted := 0
			for _, r := range rec.ofType(tokListenerRule) {
				if get(r.Out, "actions[0].forward") == nil {
					if len(r.IgnoreChanges) > 0 {
						t.Errorf("test-traffic rule %s ignores %v; nothing in it is the operator's", r.Name, r.IgnoreChanges)
					}
					continue
				}
				weighted++
				for _, path := range []string{"actions[0].forward.targetGroups[0].weight", "actions[0].forward.targetGroups[1].weight"} {
					if !ignores(t, r, path) {
						t.Errorf("rule %s: %s is not ignored (ignoreChanges %v)", r.Name, path, r.IgnoreChanges)
					}
				}
				weights := map[string]float64{}
				for i := range r.list("actions[0].forward.targetGroups") {
					p := "actions[0].forward.targetGroups[" + string(rune('0'+i)) + "]"
					tg, _ := rec.byArn(r.str(p + ".arn"))
					weights[tg.str(`tags["tandem:color"]`)] = r.num(p + ".weight")
				}
				if diff := cmp.Diff(map[string]float64{"blue": 100, "green": 0}, weights); diff != "" {
					t.Errorf("rule %s initial weights (-want +got):\n%s", r.Name, diff)
				}
			}
			if want := 2 * 3 * len(rec.ofType(tokProvider)); weighted != want {
				t.Errorf("%d weighted rules, want %d (path and readiness per service and region)", weighted, want)
			}
			for _, s := range rec.ofType(tokECSService) {
				for _, f := range []string{"taskDefinition", "desiredCount"} {
					if !ignores(t, s, f) {
						t.Errorf("ECS service %s: %s is not ignored", s.Name, f)
					}
				}
				if ignores(t, s, "networkConfiguration") || ignores(t, s, "loadBalancers") {
					t.Errorf("ECS service %s ignores more than the operator owns: %v", s.Name, s.IgnoreChanges)
				}
			}
			for _, s := range rec.ofType(tokScalableTarget) {
				for _, f := range []string{"minCapacity", "maxCapacity"} {
					if !ignores(t, s, f) {
						t.Errorf("scaling target %s: %s is not ignored", s.Name, f)
					}
				}
			}
			for _, typ := range []string{tokTaskDefinition, tokTargetGroup, tokLoadBalancer, tokListener} {
				for _, r := range rec.ofType(typ) {
					if len(r.IgnoreChanges) > 0 {
						t.Errorf("%s %s ignores %v; it is not the operator's", typ, r.Name, r.IgnoreChanges)
					}
				}
			}
			for _, db := range rec.ofType(tokDBInstance) {
				if replica := db.str("replicateSourceDb") != ""; replica != ignores(t, db, "replicateSourceDb") {
					t.Errorf("database %s: replica %v but replicateSourceDb ignored %v; promotion is the operator's", db.Name, replica, !replica)
				}
			}
			for _, g := range rec.ofType(tokGlobalReplication) {
				if !ignores(t, g, "primaryReplicationGroupId") {
					t.Errorf("global datastore %s: the primary member is not ignored", g.Name)
				}
			}
			for _, hc := range rec.ofType(tokHealthCheck) {
				calculated := hc.str("type") == "CALCULATED"
				for _, f := range []string{"invertHealthcheck", "disabled"} {
					if ignores(t, hc, f) != calculated {
						t.Errorf("health check %s (%s): %s ignored %v", hc.Name, hc.str("type"), f, !calculated)
					}
				}
			}
		})
	}
}

func TestProvidersAndParents(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			stackURN := urn(stack, "", "pulumi:pulumi:Stack", "tandem-"+stack)
			regions := map[string]string{}
			for _, p := range rec.ofType(tokProvider) {
				regions[p.str("region")] = providerRef(stack, p.str("region"))
				if p.Parent != stackURN {
					t.Errorf("provider %s: parent %q, want the stack", p.Name, p.Parent)
				}
			}
			wantRegions := map[string]bool{"us-east-1": true}
			if stack == "prod" {
				wantRegions["us-west-2"] = true
			}
			if len(regions) != len(wantRegions) {
				t.Errorf("providers for %v, want %v", regions, wantRegions)
			}
			for _, r := range rec.all() {
				switch {
				case r.Type == tokProvider:
				case strings.HasPrefix(r.Type, "tandem:infra:"):
					if r.Parent != stackURN && !strings.Contains(string(r.Parent), "tandem:infra:Cluster") {
						t.Errorf("component %s %s: parent %q", r.Type, r.Name, r.Parent)
					}
				default:
					if !strings.Contains(string(r.Parent), "tandem:infra:") {
						t.Errorf("%s %s: parent %q, want a tandem component", r.Type, r.Name, r.Parent)
					}
					if !wantRegions[r.Region] || r.Provider != regions[r.Region] {
						t.Errorf("%s %s: provider %q, want a region provider", r.Type, r.Name, r.Provider)
					}
					// Children of a regional component use that region's
					// provider.
					parent := r.Parent.Name()
					for region := range wantRegions {
						if strings.HasPrefix(parent, stack+"-"+region) && r.Region != region {
							t.Errorf("%s %s under %s is declared in %s", r.Type, r.Name, parent, r.Region)
						}
					}
				}
			}
			for _, c := range rec.calls() {
				if !slices.Contains(mapValues(regions), c.Provider) {
					t.Errorf("invoke %s: provider %q, want a region provider", c.Token, c.Provider)
				}
			}
		})
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestLoadBalancers(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			for _, alb := range rec.ofType(tokLoadBalancer) {
				if !alb.flag("dropInvalidHeaderFields") || alb.str("loadBalancerType") != "application" {
					t.Errorf("%s: drop invalid headers %v, type %q", alb.Name, alb.flag("dropInvalidHeaderFields"), alb.str("loadBalancerType"))
				}
				for _, id := range alb.strs("subnets") {
					if sub, _ := rec.byID(id); !strings.Contains(sub.Name, "-public-") {
						t.Errorf("%s in subnet %s, want public subnets", alb.Name, sub.Name)
					}
				}
				var listeners []registered
				for _, l := range rec.ofType(tokListener) {
					if l.str("loadBalancerArn") == alb.str("arn") {
						listeners = append(listeners, l)
					}
				}
				if len(listeners) != 2 {
					t.Fatalf("%s: %d listeners, want HTTPS and HTTP", alb.Name, len(listeners))
				}
				for _, l := range listeners {
					switch l.num("port") {
					case 443:
						if l.str("protocol") != "HTTPS" || l.str("certificateArn") != certificateARN(alb.Region) || !strings.HasPrefix(l.str("sslPolicy"), "ELBSecurityPolicy-TLS13-") {
							t.Errorf("%s HTTPS listener: %s with %q and %q", alb.Name, l.str("protocol"), l.str("certificateArn"), l.str("sslPolicy"))
						}
					case 80:
						if l.str("defaultActions[0].type") != "redirect" || l.str("defaultActions[0].redirect.protocol") != "HTTPS" ||
							l.str("defaultActions[0].redirect.statusCode") != "HTTP_301" {
							t.Errorf("%s HTTP listener does not redirect to HTTPS: %v", alb.Name, l.Out["defaultActions"])
						}
					default:
						t.Errorf("%s listens on %v", alb.Name, l.num("port"))
					}
				}
				if stack == "prod" {
					var bucket registered
					for _, b := range rec.ofType(tokBucket) {
						if b.str("bucket") == alb.str("accessLogs.bucket") {
							bucket = b
						}
					}
					if !alb.flag("accessLogs.enabled") || bucket.Region != alb.Region {
						t.Errorf("%s logs to %q, want a bucket of its region", alb.Name, alb.str("accessLogs.bucket"))
					}
				}
			}
		})
	}
}

func TestNetworkEndpointsAndFlowLogs(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			for _, vpc := range rec.ofType(tokVpc) {
				var flows []registered
				for _, f := range rec.ofType(tokFlowLog) {
					if f.str("vpcId") == vpc.ID {
						flows = append(flows, f)
					}
				}
				if len(flows) != 1 || flows[0].str("trafficType") != "ALL" || flows[0].str("logDestinationType") != "cloud-watch-logs" {
					t.Errorf("%s: flow logs %v, want one of ALL traffic to CloudWatch Logs", vpc.Name, flows)
				}
				var names []string
				for _, e := range rec.ofType(tokEndpoint) {
					if e.str("vpcId") != vpc.ID {
						continue
					}
					names = append(names, e.str("serviceName")+" "+e.str("vpcEndpointType"))
					if e.str("vpcEndpointType") == "Interface" && !e.flag("privateDnsEnabled") {
						t.Errorf("endpoint %s has no private DNS", e.Name)
					}
				}
				sort.Strings(names)
				p := "com.amazonaws." + vpc.Region + "."
				want := []string{p + "ecr.api Interface", p + "ecr.dkr Interface", p + "logs Interface", p + "s3 Gateway", p + "secretsmanager Interface", p + "ssm Interface"}
				if diff := cmp.Diff(want, names); diff != "" {
					t.Errorf("%s endpoints (-want +got):\n%s", vpc.Name, diff)
				}
			}
		})
	}
}

func TestAlarms(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			for _, prov := range rec.ofType(tokProvider) {
				region := prov.str("region")
				topics := rec.inRegion(tokTopic, region)
				if len(topics) != 1 {
					t.Fatalf("%s: %d alarm topics, want 1", region, len(topics))
				}
				topic := topics[0].str("arn")
				metrics := map[string]int{}
				dims := map[string]bool{}
				for _, a := range rec.inRegion(tokAlarm, region) {
					if diff := cmp.Diff([]string{topic}, a.strs("alarmActions")); diff != "" || cmp.Diff([]string{topic}, a.strs("okActions")) != "" {
						t.Errorf("alarm %s notifies %v / %v, want %s", a.Name, a.strs("alarmActions"), a.strs("okActions"), topic)
					}
					metric := a.str("metricName")
					if metric == "" {
						metric = "5xx rate"
					}
					metrics[metric]++
					for _, v := range []string{"TargetGroup", "DBInstanceIdentifier", "CacheClusterId"} {
						if d := a.str(`dimensions["` + v + `"]`); d != "" {
							dims[metric+" "+d] = true
						}
					}
				}
				for _, tg := range rec.inRegion(tokTargetGroup, region) {
					if !dims["UnHealthyHostCount "+tg.str("arnSuffix")] {
						t.Errorf("no unhealthy-host alarm for %s", tg.Name)
					}
				}
				for _, db := range rec.inRegion(tokDBInstance, region) {
					id := db.str("identifier")
					for _, m := range []string{"CPUUtilization", "FreeStorageSpace"} {
						if !dims[m+" "+id] {
							t.Errorf("no %s alarm for %s", m, id)
						}
					}
					if replica := db.str("replicateSourceDb") != ""; replica != dims["ReplicaLag "+id] {
						t.Errorf("%s: replica %v, replica lag alarm %v", id, replica, dims["ReplicaLag "+id])
					}
				}
				for _, rg := range rec.inRegion(tokReplicationGroup, region) {
					for i := 1; i <= int(rg.num("numCacheClusters")); i++ {
						member := rg.str("replicationGroupId") + "-00" + string(rune('0'+i))
						if !dims["ReplicationLag "+member] || !dims["EngineCPUUtilization "+member] {
							t.Errorf("no replication lag or CPU alarm for cache node %s", member)
						}
					}
				}
				if metrics["5xx rate"] != 1 || metrics["TargetResponseTime"] != 1 {
					t.Errorf("%s: alarms by metric %v, want one 5xx rate and one latency alarm", region, metrics)
				}
			}
		})
	}
}
