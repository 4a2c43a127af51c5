// Package cache declares tandem's Redis on ElastiCache: a replication group
// in the primary region (Multi-AZ with automatic failover when it has
// replicas), encrypted at rest with the region's customer-managed key and
// in transit with TLS required, protected by an AUTH token, snapshotted
// daily; and, for a two-region stack, a Global Datastore whose secondary
// member lives in the secondary region.
package cache

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/elasticache"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Cache"

// Port is Redis's port.
const Port = 6379

// GlobalOwned is the Global Datastore field a failover changes: promoting
// the secondary makes it the primary member, and `pulumi up` must not try
// to rebuild the datastore around the old one.
var GlobalOwned = []string{"primaryReplicationGroupId"}

// Region is where a replication group lives.
type Region struct {
	Provider *aws.Provider
	Name     string
	VpcID    pulumi.StringInput
	// SubnetIDs are the region's isolated subnets.
	SubnetIDs pulumi.StringArrayInput
	// ClientSecurityGroupID is the service tasks' group, the only one that
	// may connect.
	ClientSecurityGroupID pulumi.StringInput
	DataKeyArn            pulumi.StringInput
	TelemetryKeyArn       pulumi.StringInput
}

// Args configures the cache.
type Args struct {
	Environment string
	Primary     Region
	// Secondary, when set, joins a Global Datastore with the primary.
	Secondary     *Region
	EngineVersion string
	NodeType      string
	// Replicas is the number of replicas beside the primary node in each
	// region.
	Replicas              int
	SnapshotRetentionDays int
	// AuthToken is the password clients present (a secret output).
	AuthToken pulumi.StringInput
	// Protect keeps the replication groups through `pulumi destroy`.
	Protect bool
	// FinalSnapshot keeps a snapshot of the primary group when it is
	// deleted.
	FinalSnapshot    bool
	LogRetentionDays int
}

// Group is one replication group.
type Group struct {
	// ID and Region are known before deployment.
	ID     string
	Region string
	// Nodes is the number of nodes, the primary included.
	Nodes           int
	Arn             pulumi.StringOutput
	PrimaryEndpoint pulumi.StringOutput
}

// Cache is the Redis deployment.
type Cache struct {
	pulumi.ResourceState

	Primary Group
	// Secondary is the Global Datastore member in the secondary region.
	Secondary *Group
	// GlobalID and GlobalArn name the Global Datastore, if any.
	GlobalID  pulumi.StringOutput
	GlobalArn pulumi.StringOutput
}

// GroupID is the replication group id of the cache in a region. Ids are
// fixed so that the operator and on-call find them by name.
func GroupID(environment, region string) string {
	return awsenv.Fit("tandem-"+environment+"-"+region, 40)
}

// MemberIDs are the cache cluster ids ElastiCache gives a replication
// group's nodes; per-node metrics such as replication lag use them.
func MemberIDs(groupID string, nodes int) []string {
	out := make([]string, nodes)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", groupID, i+1)
	}
	return out
}

// New declares the cache.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Cache, error) {
	if args == nil || args.Primary.Provider == nil {
		return nil, errors.New("cache: the primary region's provider is required")
	}
	if args.Secondary != nil && args.Secondary.Provider == nil {
		return nil, errors.New("cache: the secondary region's provider is required")
	}
	if args.AuthToken == nil {
		return nil, errors.New("cache: an AUTH token is required")
	}
	c := &Cache{}
	if err := ctx.RegisterComponentResource(TypeToken, name, c, opts...); err != nil {
		return nil, err
	}
	nodes := 1 + args.Replicas
	// Failover needs a replica to fail over to; Multi-AZ places it in
	// another zone than the primary.
	ha := args.Replicas > 0
	protect := pulumi.Protect(args.Protect)

	pnet, err := newRegion(ctx, name+"-"+args.Primary.Name, args.Primary, args.LogRetentionDays, c)
	if err != nil {
		return nil, err
	}
	pid := GroupID(args.Environment, args.Primary.Name)
	primaryArgs := &elasticache.ReplicationGroupArgs{
		ReplicationGroupId:       pulumi.String(pid),
		Description:              pulumi.String("tandem " + args.Environment + " cache"),
		Engine:                   pulumi.String("redis"),
		EngineVersion:            pulumi.String(args.EngineVersion),
		NodeType:                 pulumi.String(args.NodeType),
		Port:                     pulumi.Int(Port),
		NumCacheClusters:         pulumi.Int(nodes),
		AutomaticFailoverEnabled: pulumi.Bool(ha),
		MultiAzEnabled:           pulumi.Bool(ha),
		SubnetGroupName:          pnet.subnetGroup,
		SecurityGroupIds:         pulumi.StringArray{pnet.securityGroup},
		AtRestEncryptionEnabled:  pulumi.Bool(true),
		KmsKeyId:                 args.Primary.DataKeyArn,
		TransitEncryptionEnabled: pulumi.Bool(true),
		TransitEncryptionMode:    pulumi.String("required"),
		AuthToken:                args.AuthToken,
		AuthTokenUpdateStrategy:  pulumi.String("ROTATE"),
		SnapshotRetentionLimit:   pulumi.Int(args.SnapshotRetentionDays),
		SnapshotWindow:           pulumi.String("03:00-04:00"),
		MaintenanceWindow:        pulumi.String("sun:05:00-sun:06:00"),
		AutoMinorVersionUpgrade:  pulumi.Bool(true),
		LogDeliveryConfigurations: elasticache.ReplicationGroupLogDeliveryConfigurationArray{
			&elasticache.ReplicationGroupLogDeliveryConfigurationArgs{
				Destination:     pnet.slowLog,
				DestinationType: pulumi.String("cloudwatch-logs"),
				LogFormat:       pulumi.String("json"),
				LogType:         pulumi.String("slow-log"),
			},
		},
	}
	if args.FinalSnapshot {
		primaryArgs.FinalSnapshotIdentifier = pulumi.String(pid + "-final")
	}
	primary, err := elasticache.NewReplicationGroup(ctx, name+"-"+args.Primary.Name, primaryArgs,
		pulumi.Parent(c), pulumi.Provider(args.Primary.Provider), protect)
	if err != nil {
		return nil, fmt.Errorf("cache %s: primary replication group: %w", name, err)
	}
	c.Primary = Group{ID: pid, Region: args.Primary.Name, Nodes: nodes, Arn: primary.Arn, PrimaryEndpoint: primary.PrimaryEndpointAddress}

	if sec := args.Secondary; sec != nil {
		global, err := elasticache.NewGlobalReplicationGroup(ctx, name, &elasticache.GlobalReplicationGroupArgs{
			GlobalReplicationGroupIdSuffix:    pulumi.String(awsenv.Fit("tandem-"+args.Environment, 40)),
			GlobalReplicationGroupDescription: pulumi.String("tandem " + args.Environment + " cache across regions"),
			PrimaryReplicationGroupId:         primary.ID(),
			AutomaticFailoverEnabled:          pulumi.Bool(ha),
		}, pulumi.Parent(c), pulumi.Provider(args.Primary.Provider), protect, pulumi.IgnoreChanges(GlobalOwned))
		if err != nil {
			return nil, fmt.Errorf("cache %s: global datastore: %w", name, err)
		}
		c.GlobalID = global.GlobalReplicationGroupId
		c.GlobalArn = global.Arn

		snet, err := newRegion(ctx, name+"-"+sec.Name, *sec, args.LogRetentionDays, c)
		if err != nil {
			return nil, err
		}
		sid := GroupID(args.Environment, sec.Name)
		// A member inherits engine, version, node type and encryption
		// settings from the datastore; it has its own region's key, subnets
		// and security group, and is created through its region's provider.
		secondary, err := elasticache.NewReplicationGroup(ctx, name+"-"+sec.Name, &elasticache.ReplicationGroupArgs{
			ReplicationGroupId:       pulumi.String(sid),
			Description:              pulumi.String("tandem " + args.Environment + " cache, secondary member"),
			GlobalReplicationGroupId: global.GlobalReplicationGroupId,
			NumCacheClusters:         pulumi.Int(nodes),
			AutomaticFailoverEnabled: pulumi.Bool(ha),
			MultiAzEnabled:           pulumi.Bool(ha),
			SubnetGroupName:          snet.subnetGroup,
			SecurityGroupIds:         pulumi.StringArray{snet.securityGroup},
			AtRestEncryptionEnabled:  pulumi.Bool(true),
			KmsKeyId:                 sec.DataKeyArn,
			TransitEncryptionEnabled: pulumi.Bool(true),
			AuthToken:                args.AuthToken,
			SnapshotRetentionLimit:   pulumi.Int(args.SnapshotRetentionDays),
			SnapshotWindow:           pulumi.String("03:00-04:00"),
			MaintenanceWindow:        pulumi.String("sun:05:00-sun:06:00"),
			LogDeliveryConfigurations: elasticache.ReplicationGroupLogDeliveryConfigurationArray{
				&elasticache.ReplicationGroupLogDeliveryConfigurationArgs{
					Destination:     snet.slowLog,
					DestinationType: pulumi.String("cloudwatch-logs"),
					LogFormat:       pulumi.String("json"),
					LogType:         pulumi.String("slow-log"),
				},
			},
		}, pulumi.Parent(c), pulumi.Provider(sec.Provider), protect)
		if err != nil {
			return nil, fmt.Errorf("cache %s: secondary member in %s: %w", name, sec.Name, err)
		}
		c.Secondary = &Group{ID: sid, Region: sec.Name, Nodes: nodes, Arn: secondary.Arn, PrimaryEndpoint: secondary.PrimaryEndpointAddress}
	}

	outputs := pulumi.Map{"primaryArn": c.Primary.Arn, "primaryEndpoint": c.Primary.PrimaryEndpoint}
	if c.Secondary != nil {
		outputs["globalId"] = c.GlobalID
		outputs["secondaryArn"] = c.Secondary.Arn
	}
	if err := ctx.RegisterResourceOutputs(c, outputs); err != nil {
		return nil, err
	}
	return c, nil
}

type regionNet struct {
	subnetGroup   pulumi.StringOutput
	securityGroup pulumi.StringOutput
	slowLog       pulumi.StringOutput
}

// newRegion declares a region's subnet group (its isolated subnets), the
// security group that admits the service tasks only, and the encrypted
// log group of the slow log.
func newRegion(ctx *pulumi.Context, name string, region Region, logRetentionDays int, parent pulumi.Resource) (*regionNet, error) {
	opts := []pulumi.ResourceOption{pulumi.Parent(parent), pulumi.Provider(region.Provider)}
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		VpcId:       region.VpcID,
		Description: pulumi.String("tandem Redis: from the service tasks only"),
		Ingress: ec2.SecurityGroupIngressArray{&ec2.SecurityGroupIngressArgs{
			Description:    pulumi.String("Redis from the service tasks"),
			Protocol:       pulumi.String("tcp"),
			FromPort:       pulumi.Int(Port),
			ToPort:         pulumi.Int(Port),
			SecurityGroups: pulumi.StringArray{region.ClientSecurityGroupID},
		}},
		Tags: pulumi.StringMap{"Name": pulumi.String(name)},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cache %s: security group: %w", name, err)
	}
	subnets, err := elasticache.NewSubnetGroup(ctx, name, &elasticache.SubnetGroupArgs{
		Description: pulumi.String("tandem Redis in the isolated subnets"),
		SubnetIds:   region.SubnetIDs,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cache %s: subnet group: %w", name, err)
	}
	slow, err := cloudwatch.NewLogGroup(ctx, name+"-slow-log", &cloudwatch.LogGroupArgs{
		KmsKeyId:        region.TelemetryKeyArn,
		RetentionInDays: pulumi.Int(logRetentionDays),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("cache %s: slow log group: %w", name, err)
	}
	return &regionNet{subnetGroup: subnets.Name, securityGroup: sg.ID().ToStringOutput(), slowLog: slow.Name}, nil
}
