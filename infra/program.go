package main

import (
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/cache"
	"github.com/tandemhq/tandem/infra/cluster"
	"github.com/tandemhq/tandem/infra/control"
	"github.com/tandemhq/tandem/infra/database"
	"github.com/tandemhq/tandem/infra/keys"
	"github.com/tandemhq/tandem/infra/network"
	"github.com/tandemhq/tandem/infra/observability"
	"github.com/tandemhq/tandem/infra/routing"
	"github.com/tandemhq/tandem/infra/secrets"
)

// program declares the platform of the current stack. Everything that can
// be wrong with the stack's config is found before the first resource is
// declared, so a bad stack file fails `pulumi preview` without a partial
// plan.
func program(ctx *pulumi.Context) error {
	in, err := readInputs(ctx)
	if err != nil {
		return fmt.Errorf("stack %s: %w", ctx.Stack(), err)
	}
	return declare(ctx, in)
}

// region is what the program has declared in one region so far.
type region struct {
	regionPlan
	provider *aws.Provider
	keys     *keys.Keys
	network  *network.Network
	cluster  *cluster.Cluster
}

func declare(ctx *pulumi.Context, in *inputs) error {
	spec := in.spec
	env := spec.Environment
	protect := spec.Protection.Deletion()

	// One explicit provider per region: every resource names the region it
	// belongs to, and none can land in the default provider's region.
	var regions []*region
	for _, plan := range in.regions {
		p, err := aws.NewProvider(ctx, "aws-"+plan.Name, &aws.ProviderArgs{
			Region: pulumi.String(plan.Name),
			DefaultTags: &aws.ProviderDefaultTagsArgs{Tags: pulumi.StringMap{
				"tandem:environment": pulumi.String(env),
				"tandem:region":      pulumi.String(plan.Name),
				"tandem:stack":       pulumi.String(ctx.Stack()),
			}},
		})
		if err != nil {
			return fmt.Errorf("provider for %s: %w", plan.Name, err)
		}
		regions = append(regions, &region{regionPlan: plan, provider: p})
	}
	primary := regions[0]
	var secondary *region
	if len(regions) > 1 {
		secondary = regions[1]
	}

	acct, err := lookupAccount(ctx, primary.provider)
	if err != nil {
		return err
	}

	for _, r := range regions {
		name := env + "-" + r.Name
		r.keys, err = keys.New(ctx, name, &keys.Args{
			Provider: r.provider, Account: acct, Region: r.Name, Environment: env, Protect: protect,
		})
		if err != nil {
			return err
		}
		r.network, err = network.New(ctx, name, &network.Args{
			Provider:         r.provider,
			Account:          acct,
			Region:           r.Name,
			Layout:           r.layout,
			NATPerZone:       spec.Network.NATPerAZ,
			TelemetryKeyArn:  r.keys.TelemetryKeyArn,
			LogRetentionDays: spec.Observability.LogRetentionDays,
		})
		if err != nil {
			return err
		}
	}

	secretArgs := &secrets.Args{
		Provider:    primary.provider,
		Environment: env,
		Primary:     secrets.Region{Name: primary.Name, DataKeyArn: primary.keys.DataKeyArn},
		Services:    spec.ServiceNames(),
		Protect:     protect,
	}
	if secondary != nil {
		secretArgs.Replicas = []secrets.Region{{Name: secondary.Name, DataKeyArn: secondary.keys.DataKeyArn}}
	}
	svcSecrets, err := secrets.New(ctx, env+"-secrets", secretArgs)
	if err != nil {
		return err
	}

	for _, r := range regions {
		var svcs []cluster.ServiceSpec
		for _, s := range spec.Services {
			svcs = append(svcs, cluster.ServiceSpec{
				Name: s.Name, Image: s.Image, Port: s.Port, CPU: s.CPU, MemoryMiB: s.MemoryMiB,
				Count: s.Count, MaxCount: s.MaxCount, HealthPath: s.HealthPath, PathPrefix: s.PathPrefix,
				Database: s.Database, Cache: s.Cache, DependsOn: s.DependsOn,
				SecretArn: svcSecrets.Arns[s.Name][r.Name],
			})
		}
		r.cluster, err = cluster.New(ctx, env+"-"+r.Name, &cluster.Args{
			Provider:           r.provider,
			Account:            acct,
			Region:             r.Name,
			Environment:        env,
			Active:             r.primary(),
			VpcID:              r.network.VpcID.ToStringOutput(),
			VpcCIDR:            r.network.VpcCIDR,
			PublicSubnetIDs:    r.network.PublicSubnetIDs,
			PrivateSubnetIDs:   r.network.PrivateSubnetIDs,
			CertificateArn:     r.CertificateARN,
			DeletionProtection: protect,
			AccessLogs:         spec.Protection.Logs(),
			TelemetryKeyArn:    r.keys.TelemetryKeyArn,
			DataKeyArn:         r.keys.DataKeyArn,
			LogRetentionDays:   spec.Observability.LogRetentionDays,
			ReadinessPath:      spec.Routing.HealthCheckPath,
			DrainTimeout:       spec.Deploy.DrainTimeout.Duration,
			BaseURL:            "https://" + routing.RegionalName(spec.Routing.Domain, r.Name),
			Services:           svcs,
		})
		if err != nil {
			return err
		}
	}

	dataRegion := func(r *region) database.Region {
		return database.Region{
			Provider: r.provider, Name: r.Name, VpcID: r.network.VpcID.ToStringOutput(),
			SubnetIDs:             r.network.IsolatedSubnetIDs,
			ClientSecurityGroupID: r.cluster.ServiceSecurityGroupID.ToStringOutput(),
			DataKeyArn:            r.keys.DataKeyArn, TelemetryKeyArn: r.keys.TelemetryKeyArn,
		}
	}
	dbArgs := &database.Args{
		Account:             acct,
		Environment:         env,
		Primary:             dataRegion(primary),
		EngineVersion:       spec.Database.EngineVersion,
		InstanceClass:       spec.Database.InstanceClass,
		AllocatedStorageGB:  spec.Database.AllocatedStorageGB,
		MultiAZ:             spec.Database.MultiAZ,
		ReadReplicas:        spec.Database.ReadReplicas,
		BackupRetentionDays: spec.Database.BackupRetentionDays,
		DeletionProtection:  protect,
		FinalSnapshot:       spec.Protection.Snapshot(),
		LogRetentionDays:    spec.Observability.LogRetentionDays,
	}
	if secondary != nil && spec.Database.CrossRegionReplica {
		sec := dataRegion(secondary)
		dbArgs.Secondary = &sec
	}
	db, err := database.New(ctx, env+"-db", dbArgs)
	if err != nil {
		return err
	}

	cacheRegion := func(r *region) cache.Region {
		d := dataRegion(r)
		return cache.Region{
			Provider: d.Provider, Name: d.Name, VpcID: d.VpcID, SubnetIDs: d.SubnetIDs,
			ClientSecurityGroupID: d.ClientSecurityGroupID, DataKeyArn: d.DataKeyArn, TelemetryKeyArn: d.TelemetryKeyArn,
		}
	}
	cacheArgs := &cache.Args{
		Environment:           env,
		Primary:               cacheRegion(primary),
		EngineVersion:         spec.Cache.EngineVersion,
		NodeType:              spec.Cache.NodeType,
		Replicas:              spec.Cache.Replicas,
		SnapshotRetentionDays: spec.Cache.SnapshotRetentionDays,
		AuthToken:             in.authToken,
		Protect:               protect,
		FinalSnapshot:         spec.Protection.Snapshot(),
		LogRetentionDays:      spec.Observability.LogRetentionDays,
	}
	if secondary != nil && spec.Cache.GlobalDatastore {
		sec := cacheRegion(secondary)
		cacheArgs.Secondary = &sec
	}
	rc, err := cache.New(ctx, env+"-cache", cacheArgs)
	if err != nil {
		return err
	}

	routingArgs := &routing.Args{
		Provider:         primary.provider,
		Domain:           spec.Routing.Domain,
		ZoneID:           spec.Routing.HostedZoneID,
		ReadinessPath:    spec.Routing.HealthCheckPath,
		FailureThreshold: spec.Routing.FailureThreshold,
		Services:         spec.ServiceNames(),
	}
	for _, r := range regions {
		routingArgs.Regions = append(routingArgs.Regions, routing.Region{
			Name: r.Name, Primary: r.primary(),
			LoadBalancerDNS: r.cluster.DNSName, LoadBalancerZoneID: r.cluster.ZoneID,
		})
	}
	rt, err := routing.New(ctx, env+"-routing", routingArgs)
	if err != nil {
		return err
	}

	topics := pulumi.StringMap{}
	for _, r := range regions {
		obsArgs := &observability.Args{
			Provider:              r.provider,
			Account:               acct,
			Region:                r.Name,
			Environment:           env,
			TelemetryKeyArn:       r.keys.TelemetryKeyArn,
			AlarmEmail:            spec.Observability.AlarmEmail,
			LoadBalancerArnSuffix: r.cluster.LoadBalancerArnSuffix,
			MaxErrorRate:          spec.Deploy.MaxErrorRate,
			LatencyThreshold:      spec.Observability.LatencyThreshold.Duration,
			MaxReplicaLag:         spec.Database.MaxReplicaLag.Duration,
		}
		for _, svc := range r.cluster.Services {
			for _, color := range cluster.Colors {
				obsArgs.TargetGroups = append(obsArgs.TargetGroups, observability.TargetGroup{
					Service: svc.Name, Color: color, ArnSuffix: svc.TargetGroupArnSuffixes[color],
				})
			}
		}
		for _, inst := range dbInstances(db, r.Name) {
			obsArgs.DBInstances = append(obsArgs.DBInstances, observability.DBInstance{
				Identifier: inst.Identifier, Replica: inst.Identifier != db.Primary.Identifier,
				AllocatedStorageGB: spec.Database.AllocatedStorageGB,
			})
		}
		if g := cacheGroup(rc, r.Name); g != nil {
			obsArgs.Cache = &observability.CacheGroup{ID: g.ID, MemberIDs: cache.MemberIDs(g.ID, g.Nodes)}
		}
		obs, err := observability.New(ctx, env+"-"+r.Name, obsArgs)
		if err != nil {
			return err
		}
		topics[r.Name] = obs.TopicArn
	}

	// The topology document, the same in every region, so the operator
	// finds the secondary without asking the primary.
	var facts []pulumi.Output
	for _, r := range regions {
		facts = append(facts, regionFactsOf(spec.Routing.Domain, r, db, rc))
	}
	doc := pulumi.All(toInputs(facts)...).ApplyT(func(vs []any) (string, error) {
		var rf []regionFacts
		for _, v := range vs {
			rf = append(rf, v.(regionFacts))
		}
		b, err := json.Marshal(topologyDocument(spec, ctx.Stack(), "https://"+spec.Routing.Domain, rf))
		return string(b), err
	}).(pulumi.StringOutput)

	access := control.Access{
		HostedZoneID:    spec.Routing.HostedZoneID,
		RecordNames:     []string{spec.Routing.Domain},
		HealthCheckArns: append([]pulumi.StringOutput{}, rt.ServiceHealthCheckArns...),
	}
	for _, r := range regions {
		access.ClusterArns = append(access.ClusterArns, r.cluster.Arn)
		access.ListenerArns = append(access.ListenerArns, r.cluster.HTTPSListenerArn)
		access.RecordNames = append(access.RecordNames, routing.RegionalName(spec.Routing.Domain, r.Name))
		access.HealthCheckArns = append(access.HealthCheckArns, rt.RegionHealthCheckArns[r.Name])
		for _, svc := range r.cluster.Services {
			access.ScalableTargetArns = append(access.ScalableTargetArns, svc.ScalableTargetArns...)
			access.ExecutionRoleArns = append(access.ExecutionRoleArns, svc.ExecutionRoleArn)
		}
		for _, inst := range dbInstances(db, r.Name) {
			access.DatabaseArns = append(access.DatabaseArns, inst.Arn)
		}
		if g := cacheGroup(rc, r.Name); g != nil {
			access.CacheArns = append(access.CacheArns, g.Arn)
		}
	}
	if rc.Secondary != nil {
		access.CacheArns = append(access.CacheArns, rc.GlobalArn)
	}
	controlArgs := &control.Args{
		Account:           acct,
		Environment:       env,
		Primary:           control.Region{Provider: primary.provider, Name: primary.Name, DataKeyArn: primary.keys.DataKeyArn, Topology: doc},
		Protect:           protect,
		TrustedPrincipals: spec.Operator.TrustedPrincipals,
		Access:            access,
	}
	if secondary != nil {
		controlArgs.Secondary = &control.Region{Provider: secondary.provider, Name: secondary.Name, DataKeyArn: secondary.keys.DataKeyArn, Topology: doc}
	}
	ops, err := control.New(ctx, env+"-operator", controlArgs)
	if err != nil {
		return err
	}

	exportRegions := pulumi.Map{}
	for _, r := range regions {
		exportRegions[r.Name] = pulumi.Map{
			"vpcId":        r.network.VpcID,
			"clusterName":  pulumi.String(r.cluster.Name),
			"loadBalancer": r.cluster.DNSName,
			"url":          pulumi.String("https://" + routing.RegionalName(spec.Routing.Domain, r.Name)),
		}
	}
	ctx.Export("primaryRegion", pulumi.String(primary.Name))
	ctx.Export("url", pulumi.String("https://"+spec.Routing.Domain))
	ctx.Export("regions", exportRegions)
	ctx.Export("databaseAddress", db.Primary.Address)
	ctx.Export("databaseMasterSecretArn", db.MasterSecretArn)
	ctx.Export("cachePrimaryEndpoint", rc.Primary.PrimaryEndpoint)
	ctx.Export("alarmTopics", topics)
	ctx.Export("operatorRoleArn", ops.RoleArn)
	ctx.Export("stateTable", pulumi.String(ops.TableName))
	ctx.Export("topologyParameter", pulumi.String(ops.ParameterName))
	return nil
}

// lookupAccount asks AWS, through the primary region's provider, which
// account and partition the stack deploys into.
func lookupAccount(ctx *pulumi.Context, provider *aws.Provider) (awsenv.Account, error) {
	id, err := aws.GetCallerIdentity(ctx, &aws.GetCallerIdentityArgs{}, pulumi.Provider(provider))
	if err != nil {
		return awsenv.Account{}, fmt.Errorf("look up the deploying account: %w", err)
	}
	part, err := aws.GetPartition(ctx, &aws.GetPartitionArgs{}, pulumi.Provider(provider))
	if err != nil {
		return awsenv.Account{}, fmt.Errorf("look up the account's partition: %w", err)
	}
	acct := awsenv.Account{ID: id.AccountId, Partition: part.Partition, DNSSuffix: part.DnsSuffix, ReverseDNSPrefix: part.ReverseDnsPrefix}
	if err := acct.Validate(); err != nil {
		return awsenv.Account{}, fmt.Errorf("look up the deploying account: %w", err)
	}
	return acct, nil
}

// dbInstances are the database instances in a region.
func dbInstances(db *database.Database, regionName string) []database.Instance {
	var out []database.Instance
	for _, inst := range append([]database.Instance{db.Primary}, db.Replicas...) {
		if inst.Region == regionName {
			out = append(out, inst)
		}
	}
	if db.CrossRegion != nil && db.CrossRegion.Region == regionName {
		out = append(out, *db.CrossRegion)
	}
	return out
}

// cacheGroup is the replication group in a region, if any.
func cacheGroup(c *cache.Cache, regionName string) *cache.Group {
	if c.Primary.Region == regionName {
		return &c.Primary
	}
	if c.Secondary != nil && c.Secondary.Region == regionName {
		return c.Secondary
	}
	return nil
}

// regionFactsOf resolves a region's topology facts.
func regionFactsOf(domain string, r *region, db *database.Database, c *cache.Cache) pulumi.Output {
	facts := regionFacts{Name: r.Name, Primary: r.primary(), ProxyURL: "https://" + routing.RegionalName(domain, r.Name)}
	dbAddr := pulumi.String("").ToStringOutput()
	if insts := dbInstances(db, r.Name); len(insts) > 0 {
		// The region's first instance is its writer or, in the secondary,
		// the cross-region replica a failover promotes.
		facts.DatabaseServer = insts[0].Identifier
		dbAddr = insts[0].Address
	}
	cacheAddr := pulumi.String("").ToStringOutput()
	if g := cacheGroup(c, r.Name); g != nil {
		facts.CacheServer = g.ID
		cacheAddr = g.PrimaryEndpoint
	}
	return pulumi.All(dbAddr, cacheAddr).ApplyT(func(vs []any) regionFacts {
		f := facts
		if a := vs[0].(string); a != "" {
			f.DatabaseEndpoint = a + ":" + strconv.Itoa(database.Port)
		}
		if a := vs[1].(string); a != "" {
			f.CacheEndpoint = a + ":" + strconv.Itoa(cache.Port)
		}
		return f
	})
}

func toInputs(outs []pulumi.Output) []any {
	in := make([]any, len(outs))
	for i, o := range outs {
		in[i] = o
	}
	return in
}
