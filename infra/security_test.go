package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// keyArn is the ARN of a region's data or telemetry key.
func keyArn(t *testing.T, rec *recorder, stack, region, kind string) string {
	t.Helper()
	return rec.named(t, tokKey, stack+"-"+region+"-"+kind).str("arn")
}

func TestEncryptionWithCustomerManagedKeys(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			data := func(region string) string { return keyArn(t, rec, stack, region, "data") }
			telemetry := func(region string) string { return keyArn(t, rec, stack, region, "telemetry") }

			for _, k := range rec.ofType(tokKey) {
				if !k.flag("enableKeyRotation") || k.num("deletionWindowInDays") != 30 {
					t.Errorf("key %s: rotation %v, deletion window %v; want rotation and 30 days", k.Name, k.flag("enableKeyRotation"), k.num("deletionWindowInDays"))
				}
			}
			for _, db := range rec.ofType(tokDBInstance) {
				if !db.flag("storageEncrypted") || db.str("kmsKeyId") != data(db.Region) {
					t.Errorf("database %s: encrypted %v with %q, want the data key of %s", db.Name, db.flag("storageEncrypted"), db.str("kmsKeyId"), db.Region)
				}
				if !db.flag("performanceInsightsEnabled") || db.str("performanceInsightsKmsKeyId") != data(db.Region) {
					t.Errorf("database %s: Performance Insights %v with %q, want on with the data key", db.Name, db.flag("performanceInsightsEnabled"), db.str("performanceInsightsKmsKeyId"))
				}
				if db.str("replicateSourceDb") == "" {
					if !db.flag("manageMasterUserPassword") || db.str("masterUserSecretKmsKeyId") != data(db.Region) {
						t.Errorf("database %s: the master password must be managed by RDS and encrypted with the data key", db.Name)
					}
				}
				if _, ok := db.In["password"]; ok {
					t.Errorf("database %s: a password passes through Pulumi", db.Name)
				}
			}
			for _, pg := range rec.ofType(tokDBParameterGroup) {
				forced := false
				for _, p := range pg.list("parameters") {
					if get(p, "name") == "rds.force_ssl" && get(p, "value") == "1" {
						forced = true
					}
				}
				if !forced {
					t.Errorf("parameter group %s does not force TLS", pg.Name)
				}
			}
			for _, rg := range rec.ofType(tokReplicationGroup) {
				if !rg.flag("atRestEncryptionEnabled") || rg.str("kmsKeyId") != data(rg.Region) || !rg.flag("transitEncryptionEnabled") {
					t.Errorf("cache %s: at rest %v with %q, in transit %v; want both, with the data key of %s",
						rg.Name, rg.flag("atRestEncryptionEnabled"), rg.str("kmsKeyId"), rg.flag("transitEncryptionEnabled"), rg.Region)
				}
				if tok := rg.Raw["authToken"]; !tok.IsSecret() || rg.str("authToken") != authToken {
					t.Errorf("cache %s: AUTH token secret %v; want the configured token, marked secret", rg.Name, tok.IsSecret())
				}
			}
			primaryCache := rec.named(t, tokReplicationGroup, stack+"-cache-us-east-1")
			if primaryCache.str("transitEncryptionMode") != "required" {
				t.Errorf("cache transit encryption mode = %q, want required", primaryCache.str("transitEncryptionMode"))
			}
			for _, tbl := range rec.ofType(tokTable) {
				if !tbl.flag("serverSideEncryption.enabled") || tbl.str("serverSideEncryption.kmsKeyArn") != data(tbl.Region) {
					t.Errorf("table %s: encryption %v", tbl.Name, tbl.Out["serverSideEncryption"])
				}
				for _, r := range tbl.list("replicas") {
					if region := get(r, "regionName").(string); get(r, "kmsKeyArn") != data(region) {
						t.Errorf("table replica in %s: key %v, want that region's data key", region, get(r, "kmsKeyArn"))
					}
				}
			}
			for _, s := range rec.ofType(tokSecret) {
				if s.str("kmsKeyId") != data(s.Region) {
					t.Errorf("secret %s: key %q, want the data key", s.Name, s.str("kmsKeyId"))
				}
				for _, r := range s.list("replicas") {
					if region := get(r, "region").(string); get(r, "kmsKeyId") != data(region) {
						t.Errorf("secret %s replica in %s: key %v, want that region's data key", s.Name, region, get(r, "kmsKeyId"))
					}
				}
			}
			for _, g := range rec.ofType(tokLogGroup) {
				if g.str("kmsKeyId") != telemetry(g.Region) || g.num("retentionInDays") == 0 {
					t.Errorf("log group %s: key %q, retention %v; want the telemetry key and a retention", g.Name, g.str("kmsKeyId"), g.num("retentionInDays"))
				}
			}
			for _, tp := range rec.ofType(tokTopic) {
				if tp.str("kmsMasterKeyId") != telemetry(tp.Region) {
					t.Errorf("topic %s: key %q, want the telemetry key", tp.Name, tp.str("kmsMasterKeyId"))
				}
			}
		})
	}
}

func TestNothingPublicThatShouldNotBe(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			for _, s := range rec.ofType(tokSubnet) {
				if v, ok := s.Out["mapPublicIpOnLaunch"].(bool); !ok || v {
					t.Errorf("subnet %s: mapPublicIpOnLaunch = %v, want false", s.Name, s.Out["mapPublicIpOnLaunch"])
				}
			}
			// Databases and caches live in the isolated subnets.
			for _, typ := range []string{"aws:rds/subnetGroup:SubnetGroup", "aws:elasticache/subnetGroup:SubnetGroup"} {
				for _, g := range rec.ofType(typ) {
					ids := g.strs("subnetIds")
					if len(ids) != 3 {
						t.Errorf("%s %s spans %d subnets, want 3", typ, g.Name, len(ids))
					}
					for _, id := range ids {
						if sub, ok := rec.byID(id); !ok || !strings.Contains(sub.Name, "-isolated-") || sub.Region != g.Region {
							t.Errorf("%s %s uses subnet %s, want its region's isolated subnets", typ, g.Name, id)
						}
					}
				}
			}
			for _, db := range rec.ofType(tokDBInstance) {
				if v, ok := db.Out["publiclyAccessible"].(bool); !ok || v {
					t.Errorf("database %s: publiclyAccessible = %v, want false", db.Name, db.Out["publiclyAccessible"])
				}
			}
			for _, svc := range rec.ofType(tokECSService) {
				if v, ok := get(svc.Out, "networkConfiguration.assignPublicIp").(bool); !ok || v {
					t.Errorf("ECS service %s: assignPublicIp = %v, want false", svc.Name, v)
				}
				for _, id := range svc.strs("networkConfiguration.subnets") {
					if sub, ok := rec.byID(id); !ok || !strings.Contains(sub.Name, "-private-") {
						t.Errorf("ECS service %s runs in subnet %s, want private subnets only", svc.Name, id)
					}
				}
			}
			// The only ways in from the internet are the load balancers'
			// HTTP and HTTPS ports.
			for _, r := range rec.ofType(tokSGRule) {
				open := false
				for _, c := range r.strs("cidrBlocks") {
					open = open || c == "0.0.0.0/0"
				}
				if r.str("type") == "ingress" && open {
					sg, _ := rec.byID(r.str("securityGroupId"))
					if !strings.HasSuffix(sg.Name, "-alb") || (r.num("fromPort") != 443 && r.num("fromPort") != 80) || r.num("fromPort") != r.num("toPort") {
						t.Errorf("rule %s opens %s ports %v-%v to the internet", r.Name, sg.Name, r.num("fromPort"), r.num("toPort"))
					}
				}
			}
			for _, sg := range rec.ofType(tokSecurityGroup) {
				for _, in := range sg.list("ingress") {
					cidrs, _ := get(in, "cidrBlocks").([]any)
					for _, c := range cidrs {
						if c == "0.0.0.0/0" {
							t.Errorf("security group %s admits the internet", sg.Name)
						}
					}
				}
				if strings.HasPrefix(sg.Name, stack+"-db-") || strings.HasPrefix(sg.Name, stack+"-cache-") {
					in := sg.list("ingress")
					tasks := rec.named(t, tokSecurityGroup, stack+"-"+sg.Region+"-tasks").ID
					if len(in) != 1 || cmp.Diff([]any{tasks}, get(in[0], "securityGroups")) != "" {
						t.Errorf("data store group %s admits %v, want the tasks' group %s only", sg.Name, in, tasks)
					}
				}
			}
			for _, sg := range rec.ofType(tokDefaultSG) {
				if len(sg.list("ingress")) > 0 || len(sg.list("egress")) > 0 {
					t.Errorf("default security group %s has rules", sg.Name)
				}
			}
			// The isolated tier has no route out.
			for _, rt := range rec.ofType(tokRouteTable) {
				if !strings.HasSuffix(rt.Name, "-isolated") {
					continue
				}
				for _, r := range rec.ofType(tokRoute) {
					if r.str("routeTableId") == rt.ID {
						t.Errorf("isolated route table %s has route %s", rt.Name, r.Name)
					}
				}
			}
			for _, b := range rec.ofType(tokBucket) {
				found := false
				for _, pab := range rec.ofType(tokPublicAccessBlock) {
					if pab.str("bucket") == b.ID {
						found = pab.flag("blockPublicAcls") && pab.flag("blockPublicPolicy") && pab.flag("ignorePublicAcls") && pab.flag("restrictPublicBuckets")
					}
				}
				if !found {
					t.Errorf("bucket %s does not block public access", b.Name)
				}
			}
			for _, d := range policyDocuments(t, rec) {
				for _, st := range d.doc.Statement {
					if st.Effect == "Allow" && strings.Contains(string(st.Principal), `"*"`) {
						t.Errorf("%s: statement %s allows anyone", d.owner, st.Sid)
					}
				}
			}
		})
	}
}

// statement is one statement of a policy document as AWS reads it.
type statement struct {
	Sid       string
	Effect    string
	Principal json.RawMessage
	Action    []string
	NotAction []string
	Resource  []string
	Condition map[string]map[string][]string
}

type ownedDocument struct {
	owner string
	res   registered
	doc   struct{ Statement []statement }
}

// policyDocuments finds every policy document the program declares: trust
// policies, role policies, key, bucket and topic policies.
func policyDocuments(t *testing.T, rec *recorder) []ownedDocument {
	t.Helper()
	var out []ownedDocument
	for _, r := range rec.all() {
		for _, key := range []string{"policy", "assumeRolePolicy"} {
			raw, ok := r.In[key].(string)
			if !ok || raw == "" {
				continue
			}
			d := ownedDocument{owner: r.Type + " " + r.Name + " " + key, res: r}
			if err := json.Unmarshal([]byte(raw), &d.doc); err != nil {
				t.Errorf("%s: %v", d.owner, err)
				continue
			}
			out = append(out, d)
		}
	}
	return out
}

func TestNoWildcardActions(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			docs := policyDocuments(t, rec)
			// Every role has a trust policy, every key and bucket a policy.
			if want := len(rec.ofType(tokRole))*1 + len(rec.ofType(tokRolePolicy)) + len(rec.ofType(tokKey)) + len(rec.ofType("aws:s3/bucketPolicy:BucketPolicy")) + len(rec.ofType("aws:sns/topicPolicy:TopicPolicy")); len(docs) != want {
				t.Errorf("%d policy documents, want %d", len(docs), want)
			}
			for _, d := range docs {
				for _, st := range d.doc.Statement {
					if len(st.NotAction) > 0 {
						t.Errorf("%s: statement %s uses NotAction", d.owner, st.Sid)
					}
					if len(st.Action) == 0 {
						t.Errorf("%s: statement %s has no actions", d.owner, st.Sid)
					}
					for _, a := range st.Action {
						if strings.Contains(a, "*") {
							t.Errorf("%s: statement %s grants %q", d.owner, st.Sid, a)
						}
					}
				}
			}
		})
	}
}

// TestOperatorRoleScope checks that the operator may act on this stack's
// resources only: every resource it is granted is an ARN AWS handed out
// for this stack, a family of resources under one of them, or this
// stack's hosted zone; "*" goes only with calls AWS cannot scope.
func TestOperatorRoleScope(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			role := rec.named(t, tokRole, stack+"-operator-operator")
			// What the operator may be granted: ARNs AWS handed out for this
			// stack; the families ECS and load balancing name under them
			// (the services and tasks of a cluster, the rules of a
			// listener); global table replicas, which carry their table's
			// ARN in their own region; and the stack's hosted zone.
			allowedARNs := rec.arns()
			for _, s := range rec.ofType(tokECSService) {
				allowedARNs[s.ID] = true
			}
			for _, c := range rec.ofType(tokECSCluster) {
				allowedARNs[strings.Replace(c.str("arn"), ":cluster/", ":service/", 1)+"/*"] = true
				allowedARNs[strings.Replace(c.str("arn"), ":cluster/", ":task/", 1)+"/*"] = true
			}
			for _, l := range rec.ofType(tokListener) {
				allowedARNs[strings.Replace(l.str("arn"), ":listener/", ":listener-rule/", 1)+"/*"] = true
			}
			for _, tbl := range rec.ofType(tokTable) {
				for _, r := range tbl.list("replicas") {
					allowedARNs[strings.Replace(tbl.str("arn"), ":"+tbl.Region+":", ":"+get(r, "regionName").(string)+":", 1)] = true
				}
			}
			allowedARNs["arn:aws:route53:::hostedzone/"+zoneID] = true
			scoped := func(res string) bool { return allowedARNs[res] }
			var allowed []statement
			for _, d := range policyDocuments(t, rec) {
				if d.res.Type != tokRolePolicy || d.res.str("role") != role.str("name") {
					continue
				}
				for _, st := range d.doc.Statement {
					allowed = append(allowed, st)
					for _, res := range st.Resource {
						if res == "*" {
							for _, a := range st.Action {
								verb := a[strings.Index(a, ":")+1:]
								if !strings.HasPrefix(verb, "Describe") && !strings.HasPrefix(verb, "Get") && !strings.HasPrefix(verb, "List") && a != "ecs:RegisterTaskDefinition" {
									t.Errorf("statement %s grants %s on every resource", st.Sid, a)
								}
							}
							continue
						}
						if !scoped(res) {
							t.Errorf("statement %s grants %v on %q, which is not this stack's", st.Sid, st.Action, res)
						}
					}
				}
			}
			if len(allowed) == 0 {
				t.Fatal("the operator role has no policies")
			}
			// And it can do its job: shift the weights of every weighted
			// rule, scale every ECS service, read and write its state.
			grants := func(action, arn string) bool {
				for _, st := range allowed {
					for _, a := range st.Action {
						if a != action {
							continue
						}
						for _, res := range st.Resource {
							if res == arn || (strings.HasSuffix(res, "*") && strings.HasPrefix(arn, strings.TrimSuffix(res, "*"))) {
								return true
							}
						}
					}
				}
				return false
			}
			for _, r := range rec.ofType(tokListenerRule) {
				if get(r.Out, "actions[0].forward") != nil && !grants("elasticloadbalancing:ModifyRule", r.str("arn")) {
					t.Errorf("the operator cannot shift the weights of %s", r.Name)
				}
			}
			for _, s := range rec.ofType(tokECSService) {
				if !grants("ecs:UpdateService", s.ID) {
					t.Errorf("the operator cannot update %s (%s)", s.Name, s.ID)
				}
			}
			for _, tbl := range rec.ofType(tokTable) {
				if !grants("dynamodb:PutItem", tbl.str("arn")) {
					t.Errorf("the operator cannot write %s", tbl.Name)
				}
			}
			for _, db := range rec.ofType(tokDBInstance) {
				if !grants("rds:PromoteReadReplica", db.str("arn")) {
					t.Errorf("the operator cannot promote %s", db.Name)
				}
			}
			var trust struct{ Statement []statement }
			if err := json.Unmarshal([]byte(role.str("assumeRolePolicy")), &trust); err != nil {
				t.Fatal(err)
			}
			if got := string(trust.Statement[0].Principal); got != `{"AWS":["arn:aws:iam::`+account+`:root"]}` {
				t.Errorf("operator role trusts %s, want this account only", got)
			}
		})
	}
}

func TestTaskDefinitions(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			secretNames := []string{"PASSWORD", "TOKEN", "SECRET", "DATABASE_URL", "DATABASE_READ_URL", "REDIS_URL"}
			for _, td := range rec.ofType(tokTaskDefinition) {
				var containers []struct {
					Name                   string
					User                   string
					ReadonlyRootFilesystem bool
					Environment            []struct{ Name, Value string }
					Secrets                []struct{ Name, ValueFrom string }
					LogConfiguration       struct {
						LogDriver string
						Options   map[string]string
					}
					LinuxParameters struct{ Capabilities struct{ Drop []string } }
				}
				if err := json.Unmarshal([]byte(td.str("containerDefinitions")), &containers); err != nil {
					t.Fatalf("%s: %v", td.Name, err)
				}
				if len(containers) != 1 {
					t.Fatalf("%s: %d containers, want 1", td.Name, len(containers))
				}
				c := containers[0]
				if u := strings.SplitN(c.User, ":", 2)[0]; u == "" || u == "0" || u == "root" {
					t.Errorf("%s: user %q, want a non-root user", td.Name, c.User)
				}
				if !c.ReadonlyRootFilesystem {
					t.Errorf("%s: root filesystem is writable", td.Name)
				}
				if len(c.LinuxParameters.Capabilities.Drop) != 1 || c.LinuxParameters.Capabilities.Drop[0] != "ALL" {
					t.Errorf("%s: capabilities dropped %v, want ALL", td.Name, c.LinuxParameters.Capabilities.Drop)
				}
				if c.LogConfiguration.LogDriver != "awslogs" || c.LogConfiguration.Options["awslogs-group"] != "/tandem/"+stack+"/"+c.Name ||
					c.LogConfiguration.Options["awslogs-region"] != td.Region {
					t.Errorf("%s: log configuration %+v", td.Name, c.LogConfiguration)
				}
				for _, e := range c.Environment {
					for _, s := range secretNames {
						if strings.Contains(e.Name, s) {
							t.Errorf("%s: %s is plain environment; secrets come from Secrets Manager", td.Name, e.Name)
						}
					}
				}
				secret := ""
				for _, s := range rec.ofType(tokSecret) {
					if s.str("name") == "tandem/"+stack+"/"+c.Name {
						secret = s.str("arn")
					}
				}
				if td.Region != "us-east-1" {
					secret = strings.Replace(secret, ":us-east-1:", ":"+td.Region+":", 1)
				}
				if len(c.Secrets) == 0 {
					t.Errorf("%s: no secrets", td.Name)
				}
				for _, s := range c.Secrets {
					if s.ValueFrom != secret+":"+s.Name+"::" {
						t.Errorf("%s: %s from %q, want the key %s of %s", td.Name, s.Name, s.ValueFrom, s.Name, secret)
					}
				}
				if td.str("networkMode") != "awsvpc" || td.str("taskRoleArn") != "" {
					t.Errorf("%s: network mode %q, task role %q; want awsvpc and no task role", td.Name, td.str("networkMode"), td.str("taskRoleArn"))
				}
			}
		})
	}
}

func TestProtection(t *testing.T) {
	t.Parallel()
	for _, stack := range stackNames {
		t.Run(stack, func(t *testing.T) {
			t.Parallel()
			rec := ranStack(t, stack)
			want := stack == "prod"
			check := func(what string, got bool) {
				t.Helper()
				if got != want {
					t.Errorf("%s = %v, want %v in %s", what, got, want, stack)
				}
			}
			for _, lb := range rec.ofType(tokLoadBalancer) {
				check(lb.Name+" deletion protection", lb.flag("enableDeletionProtection"))
				check(lb.Name+" access logs", lb.flag("accessLogs.enabled"))
			}
			for _, db := range rec.ofType(tokDBInstance) {
				check(db.Name+" deletion protection", db.flag("deletionProtection"))
				check(db.Name+" protected in Pulumi", db.Protect)
			}
			primary := rec.named(t, tokDBInstance, stack+"-db-us-east-1")
			check("final snapshot of the primary database", !primary.flag("skipFinalSnapshot") && primary.str("finalSnapshotIdentifier") != "")
			if primary.num("backupRetentionPeriod") < 1 {
				t.Errorf("primary database keeps no backups")
			}
			cacheGroup := rec.named(t, tokReplicationGroup, stack+"-cache-us-east-1")
			check("final snapshot of the cache", cacheGroup.str("finalSnapshotIdentifier") != "")
			if cacheGroup.num("snapshotRetentionLimit") < 1 {
				t.Errorf("cache keeps no snapshots")
			}
			for _, typ := range []string{tokReplicationGroup, tokGlobalReplication, tokKey, tokSecret} {
				for _, r := range rec.ofType(typ) {
					check(r.Name+" protected in Pulumi", r.Protect)
				}
			}
			for _, tbl := range rec.ofType(tokTable) {
				check(tbl.Name+" deletion protection", tbl.flag("deletionProtectionEnabled"))
				check(tbl.Name+" protected in Pulumi", tbl.Protect)
				if !tbl.flag("pointInTimeRecovery.enabled") {
					t.Errorf("%s has no point-in-time recovery", tbl.Name)
				}
			}
		})
	}
}

// ignores reports whether a resource's ignoreChanges covers a property
// path, as the engine would match it.
func ignores(t *testing.T, r registered, path string) bool {
	t.Helper()
	target, err := resource.ParsePropertyPath(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, ic := range r.IgnoreChanges {
		p, err := resource.ParsePropertyPath(ic)
		if err != nil {
			t.Errorf("%s: ignoreChanges %q does not parse: %v", r.Name, ic, err)
			continue
		}
		if p.Contains(target) {
			return true
		}
	}
	return false
}
