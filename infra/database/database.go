// Package database declares tandem's PostgreSQL on RDS: a Multi-AZ primary
// in the primary region with in-region read replicas, and a cross-region
// read replica in the secondary region that a failover promotes. Storage,
// Performance Insights and the managed master password are encrypted with
// each region's customer-managed key; TLS is forced by a parameter group;
// nothing is publicly accessible and only the service tasks' security
// group may connect.
package database

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/rds"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Database"

// Port is PostgreSQL's port.
const Port = 5432

// LogExports are the logs every instance ships to CloudWatch Logs.
var LogExports = []string{"postgresql", "upgrade"}

// ReplicaOwned is the replica field a failover changes: promotion turns a
// replica into a standalone primary, and `pulumi up` must not make it a
// replica again.
var ReplicaOwned = []string{"replicateSourceDb"}

// Region is where instances of the database live.
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

// Args configures the database.
type Args struct {
	Account     awsenv.Account
	Environment string
	Primary     Region
	// Secondary, when set, holds the cross-region replica.
	Secondary           *Region
	EngineVersion       string
	InstanceClass       string
	AllocatedStorageGB  int
	MultiAZ             bool
	ReadReplicas        int
	BackupRetentionDays int
	// DeletionProtection protects every instance from deletion, in AWS and
	// in Pulumi.
	DeletionProtection bool
	// FinalSnapshot keeps a snapshot of the primary when it is deleted.
	FinalSnapshot    bool
	LogRetentionDays int
}

// Instance is one database instance.
type Instance struct {
	// Identifier and Region are known before deployment.
	Identifier string
	Region     string
	Arn        pulumi.StringOutput
	Address    pulumi.StringOutput
}

// Database is the PostgreSQL deployment.
type Database struct {
	pulumi.ResourceState

	Primary Instance
	// Replicas are the in-region read replicas.
	Replicas []Instance
	// CrossRegion is the replica in the secondary region, if any.
	CrossRegion *Instance
	// MasterSecretArn is the Secrets Manager secret RDS manages for the
	// master user.
	MasterSecretArn pulumi.StringOutput
}

// Identifier is the instance identifier of a database in a region; the
// n-th in-region replica appends -r<n>. Identifiers are fixed so that the
// operator and on-call find instances by name.
func Identifier(environment, region string, replica int) string {
	id := "tandem-" + environment + "-" + region
	if replica > 0 {
		id = fmt.Sprintf("%s-r%d", id, replica)
	}
	return awsenv.Fit(id, 63)
}

// New declares the database.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Database, error) {
	if args == nil || args.Primary.Provider == nil {
		return nil, errors.New("database: the primary region's provider is required")
	}
	if args.Secondary != nil && args.Secondary.Provider == nil {
		return nil, errors.New("database: the secondary region's provider is required")
	}
	d := &Database{}
	if err := ctx.RegisterComponentResource(TypeToken, name, d, opts...); err != nil {
		return nil, err
	}
	family := "postgres" + strings.SplitN(args.EngineVersion, ".", 2)[0]

	// Enhanced monitoring publishes OS metrics through this role; IAM is
	// global, so one role serves both regions.
	acct := args.Account
	trust, err := policy.AssumeRole(policy.Service, policy.Strings(acct.ServicePrincipal("monitoring.rds")),
		policy.Condition{Test: "StringEquals", Variable: "aws:SourceAccount", Values: policy.Strings(acct.ID)})
	if err != nil {
		return nil, fmt.Errorf("database %s: monitoring trust policy: %w", name, err)
	}
	monitoring, err := iam.NewRole(ctx, name+"-monitoring", &iam.RoleArgs{
		Description:      pulumi.String("RDS enhanced monitoring of tandem " + args.Environment),
		AssumeRolePolicy: trust,
	}, pulumi.Parent(d), pulumi.Provider(args.Primary.Provider))
	if err != nil {
		return nil, fmt.Errorf("database %s: monitoring role: %w", name, err)
	}
	if _, err := iam.NewRolePolicyAttachment(ctx, name+"-monitoring", &iam.RolePolicyAttachmentArgs{
		Role:      monitoring.Name,
		PolicyArn: pulumi.String(acct.ManagedPolicy("service-role/AmazonRDSEnhancedMonitoringRole")),
	}, pulumi.Parent(d), pulumi.Provider(args.Primary.Provider)); err != nil {
		return nil, fmt.Errorf("database %s: monitoring role policy: %w", name, err)
	}

	primaryNet, err := newRegion(ctx, name+"-"+args.Primary.Name, args, args.Primary, family, d)
	if err != nil {
		return nil, err
	}
	protect := pulumi.Protect(args.DeletionProtection)
	child := []pulumi.ResourceOption{pulumi.Parent(d), pulumi.Provider(args.Primary.Provider), protect}

	id := Identifier(args.Environment, args.Primary.Name, 0)
	logs, err := newLogGroups(ctx, name+"-"+args.Primary.Name, id, args, args.Primary, d)
	if err != nil {
		return nil, err
	}
	primaryArgs := &rds.InstanceArgs{
		Identifier:          pulumi.String(id),
		Engine:              pulumi.String("postgres"),
		EngineVersion:       pulumi.String(args.EngineVersion),
		InstanceClass:       pulumi.String(args.InstanceClass),
		AllocatedStorage:    pulumi.Int(args.AllocatedStorageGB),
		MaxAllocatedStorage: pulumi.Int(4 * args.AllocatedStorageGB),
		StorageType:         pulumi.String("gp3"),
		StorageEncrypted:    pulumi.Bool(true),
		KmsKeyId:            args.Primary.DataKeyArn,
		MultiAz:             pulumi.Bool(args.MultiAZ),
		Username:            pulumi.String("tandem_admin"),
		// RDS generates the master password, keeps it in Secrets Manager
		// encrypted with the data key, and rotates it; it never passes
		// through Pulumi.
		ManageMasterUserPassword:           pulumi.Bool(true),
		MasterUserSecretKmsKeyId:           args.Primary.DataKeyArn,
		IamDatabaseAuthenticationEnabled:   pulumi.Bool(true),
		DbSubnetGroupName:                  primaryNet.subnetGroup,
		VpcSecurityGroupIds:                pulumi.StringArray{primaryNet.securityGroup},
		ParameterGroupName:                 primaryNet.parameterGroup,
		PubliclyAccessible:                 pulumi.Bool(false),
		BackupRetentionPeriod:              pulumi.Int(args.BackupRetentionDays),
		BackupWindow:                       pulumi.String("03:00-04:00"),
		MaintenanceWindow:                  pulumi.String("sun:05:00-sun:06:00"),
		CopyTagsToSnapshot:                 pulumi.Bool(true),
		DeleteAutomatedBackups:             pulumi.Bool(!args.DeletionProtection),
		DeletionProtection:                 pulumi.Bool(args.DeletionProtection),
		SkipFinalSnapshot:                  pulumi.Bool(!args.FinalSnapshot),
		AutoMinorVersionUpgrade:            pulumi.Bool(true),
		EnabledCloudwatchLogsExports:       pulumi.ToStringArray(LogExports),
		MonitoringInterval:                 pulumi.Int(60),
		MonitoringRoleArn:                  monitoring.Arn,
		PerformanceInsightsEnabled:         pulumi.Bool(true),
		PerformanceInsightsKmsKeyId:        args.Primary.DataKeyArn,
		PerformanceInsightsRetentionPeriod: pulumi.Int(7),
	}
	if args.FinalSnapshot {
		primaryArgs.FinalSnapshotIdentifier = pulumi.String(id + "-final")
	}
	primary, err := rds.NewInstance(ctx, name+"-"+args.Primary.Name, primaryArgs, append(child, pulumi.DependsOn(logs))...)
	if err != nil {
		return nil, fmt.Errorf("database %s: primary: %w", name, err)
	}
	d.Primary = Instance{Identifier: id, Region: args.Primary.Name, Arn: primary.Arn, Address: primary.Address}
	d.MasterSecretArn = primary.MasterUserSecrets.ApplyT(func(ss []rds.InstanceMasterUserSecret) string {
		for _, s := range ss {
			if s.SecretArn != nil {
				return *s.SecretArn
			}
		}
		return ""
	}).(pulumi.StringOutput)

	for i := 1; i <= args.ReadReplicas; i++ {
		rid := Identifier(args.Environment, args.Primary.Name, i)
		rlogs, err := newLogGroups(ctx, fmt.Sprintf("%s-%s-r%d", name, args.Primary.Name, i), rid, args, args.Primary, d)
		if err != nil {
			return nil, err
		}
		r, err := rds.NewInstance(ctx, fmt.Sprintf("%s-%s-r%d", name, args.Primary.Name, i),
			// A replica that names its own subnet group refers to its
			// source by ARN, even in the same region.
			replicaArgs(rid, primary.Arn, args, args.Primary, primaryNet, monitoring.Arn, false),
			append(child, pulumi.IgnoreChanges(ReplicaOwned), pulumi.DependsOn(rlogs))...)
		if err != nil {
			return nil, fmt.Errorf("database %s: read replica %d: %w", name, i, err)
		}
		d.Replicas = append(d.Replicas, Instance{Identifier: rid, Region: args.Primary.Name, Arn: r.Arn, Address: r.Address})
	}

	if sec := args.Secondary; sec != nil {
		secNet, err := newRegion(ctx, name+"-"+sec.Name, args, *sec, family, d)
		if err != nil {
			return nil, err
		}
		xid := Identifier(args.Environment, sec.Name, 0)
		xlogs, err := newLogGroups(ctx, name+"-"+sec.Name, xid, args, *sec, d)
		if err != nil {
			return nil, err
		}
		// A replica in another region names its source by ARN and is
		// encrypted with its own region's key; it is created through the
		// secondary region's provider. Multi-AZ like the primary, so that
		// it is highly available the moment it is promoted.
		x, err := rds.NewInstance(ctx, name+"-"+sec.Name,
			replicaArgs(xid, primary.Arn, args, *sec, secNet, monitoring.Arn, args.MultiAZ),
			pulumi.Parent(d), pulumi.Provider(sec.Provider), protect,
			pulumi.IgnoreChanges(ReplicaOwned), pulumi.DependsOn(xlogs))
		if err != nil {
			return nil, fmt.Errorf("database %s: cross-region replica in %s: %w", name, sec.Name, err)
		}
		d.CrossRegion = &Instance{Identifier: xid, Region: sec.Name, Arn: x.Arn, Address: x.Address}
	}

	outputs := pulumi.Map{"primaryArn": d.Primary.Arn, "primaryAddress": d.Primary.Address}
	if d.CrossRegion != nil {
		outputs["crossRegionArn"] = d.CrossRegion.Arn
	}
	if err := ctx.RegisterResourceOutputs(d, outputs); err != nil {
		return nil, err
	}
	return d, nil
}

// replicaArgs are a read replica's arguments. Replicas inherit the
// engine, storage and master user from their source; they are encrypted
// with their own region's key.
func replicaArgs(id string, source pulumi.StringInput, args *Args, region Region, net *regionNet, monitoringRole pulumi.StringInput, multiAZ bool) *rds.InstanceArgs {
	return &rds.InstanceArgs{
		Identifier:                         pulumi.String(id),
		ReplicateSourceDb:                  source,
		InstanceClass:                      pulumi.String(args.InstanceClass),
		StorageType:                        pulumi.String("gp3"),
		StorageEncrypted:                   pulumi.Bool(true),
		KmsKeyId:                           region.DataKeyArn,
		MultiAz:                            pulumi.Bool(multiAZ),
		DbSubnetGroupName:                  net.subnetGroup,
		VpcSecurityGroupIds:                pulumi.StringArray{net.securityGroup},
		ParameterGroupName:                 net.parameterGroup,
		PubliclyAccessible:                 pulumi.Bool(false),
		IamDatabaseAuthenticationEnabled:   pulumi.Bool(true),
		DeletionProtection:                 pulumi.Bool(args.DeletionProtection),
		SkipFinalSnapshot:                  pulumi.Bool(true),
		AutoMinorVersionUpgrade:            pulumi.Bool(true),
		EnabledCloudwatchLogsExports:       pulumi.ToStringArray(LogExports),
		MonitoringInterval:                 pulumi.Int(60),
		MonitoringRoleArn:                  monitoringRole,
		PerformanceInsightsEnabled:         pulumi.Bool(true),
		PerformanceInsightsKmsKeyId:        region.DataKeyArn,
		PerformanceInsightsRetentionPeriod: pulumi.Int(7),
	}
}

// regionNet is what instances of one region share.
type regionNet struct {
	subnetGroup    pulumi.StringOutput
	securityGroup  pulumi.StringOutput
	parameterGroup pulumi.StringOutput
}

// newRegion declares a region's subnet group (its isolated subnets), the
// security group that admits the service tasks only, and the parameter
// group that refuses unencrypted connections.
func newRegion(ctx *pulumi.Context, name string, args *Args, region Region, family string, parent pulumi.Resource) (*regionNet, error) {
	opts := []pulumi.ResourceOption{pulumi.Parent(parent), pulumi.Provider(region.Provider)}
	sg, err := ec2.NewSecurityGroup(ctx, name, &ec2.SecurityGroupArgs{
		VpcId:       region.VpcID,
		Description: pulumi.String("tandem PostgreSQL: from the service tasks only"),
		Ingress: ec2.SecurityGroupIngressArray{&ec2.SecurityGroupIngressArgs{
			Description:    pulumi.String("PostgreSQL from the service tasks"),
			Protocol:       pulumi.String("tcp"),
			FromPort:       pulumi.Int(Port),
			ToPort:         pulumi.Int(Port),
			SecurityGroups: pulumi.StringArray{region.ClientSecurityGroupID},
		}},
		Tags: pulumi.StringMap{"Name": pulumi.String(name)},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("database %s: security group: %w", name, err)
	}
	subnets, err := rds.NewSubnetGroup(ctx, name, &rds.SubnetGroupArgs{
		Description: pulumi.String("tandem PostgreSQL in the isolated subnets"),
		SubnetIds:   region.SubnetIDs,
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("database %s: subnet group: %w", name, err)
	}
	params, err := rds.NewParameterGroup(ctx, name, &rds.ParameterGroupArgs{
		Family:      pulumi.String(family),
		Description: pulumi.String("tandem PostgreSQL: TLS required"),
		Parameters: rds.ParameterGroupParameterArray{
			&rds.ParameterGroupParameterArgs{Name: pulumi.String("rds.force_ssl"), Value: pulumi.String("1"), ApplyMethod: pulumi.String("pending-reboot")},
			&rds.ParameterGroupParameterArgs{Name: pulumi.String("log_min_duration_statement"), Value: pulumi.String("1000")},
		},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("database %s: parameter group: %w", name, err)
	}
	return &regionNet{subnetGroup: subnets.Name, securityGroup: sg.ID().ToStringOutput(), parameterGroup: params.Name}, nil
}

// newLogGroups declares the log groups RDS exports an instance's logs to,
// before the instance exists, so that they are encrypted and expire; RDS
// would otherwise create them unencrypted and kept forever.
func newLogGroups(ctx *pulumi.Context, name, identifier string, args *Args, region Region, parent pulumi.Resource) ([]pulumi.Resource, error) {
	var out []pulumi.Resource
	for _, export := range LogExports {
		g, err := cloudwatch.NewLogGroup(ctx, name+"-"+export, &cloudwatch.LogGroupArgs{
			Name:            pulumi.String("/aws/rds/instance/" + identifier + "/" + export),
			KmsKeyId:        region.TelemetryKeyArn,
			RetentionInDays: pulumi.Int(args.LogRetentionDays),
		}, pulumi.Parent(parent), pulumi.Provider(region.Provider))
		if err != nil {
			return nil, fmt.Errorf("database %s: %s log group: %w", name, export, err)
		}
		out = append(out, g)
	}
	return out, nil
}
