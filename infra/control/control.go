// Package control declares what the tandem operator itself needs in AWS:
// its state table (a DynamoDB global table for leases, journals and the
// audit trail, replicated to every region so that a failover never depends
// on the region it leaves), the topology document in SSM Parameter Store
// of every region, and the IAM role the operator assumes, allowed to act
// on this stack's resources only.
package control

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/dynamodb"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ssm"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:OperatorResources"

// TableName is the operator's state table of an environment.
func TableName(environment string) string { return awsenv.Fit("tandem-"+environment+"-operator", 255) }

// TopologyParameter is the SSM parameter that holds the topology document.
func TopologyParameter(environment string) string { return "/tandem/" + environment + "/topology" }

// Region is one region of the stack.
type Region struct {
	Provider   *aws.Provider
	Name       string
	DataKeyArn pulumi.StringInput
	// Topology is the topology document (JSON) published in the region.
	Topology pulumi.StringInput
}

// Access lists what the operator acts on. Every ARN is one of this
// stack's; where the operator needs a family of resources (the services of
// a cluster, the rules of a listener) the family is scoped by this stack's
// parent resource.
type Access struct {
	ClusterArns        []pulumi.StringOutput
	ListenerArns       []pulumi.StringOutput
	ScalableTargetArns []pulumi.StringOutput
	ExecutionRoleArns  []pulumi.StringOutput
	DatabaseArns       []pulumi.StringOutput
	CacheArns          []pulumi.StringOutput
	HealthCheckArns    []pulumi.StringOutput
	// HostedZoneID and RecordNames are the zone and the names within it
	// the operator may change.
	HostedZoneID string
	RecordNames  []string
}

// Args configures the operator's resources.
type Args struct {
	Account     awsenv.Account
	Environment string
	Primary     Region
	Secondary   *Region
	// Protect turns on deletion protection of the state table, in AWS and
	// in Pulumi.
	Protect bool
	// TrustedPrincipals may assume the operator role besides the account's
	// own principals.
	TrustedPrincipals []string
	Access            Access
}

// Resources are the operator's resources.
type Resources struct {
	pulumi.ResourceState

	TableName     string
	TableArn      pulumi.StringOutput
	ParameterName string
	ParameterArns []pulumi.StringOutput
	RoleArn       pulumi.StringOutput
}

// New declares the operator's resources.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Resources, error) {
	if args == nil || args.Primary.Provider == nil {
		return nil, errors.New("operator resources: the primary region's provider is required")
	}
	if args.Secondary != nil && args.Secondary.Provider == nil {
		return nil, errors.New("operator resources: the secondary region's provider is required")
	}
	r := &Resources{TableName: TableName(args.Environment), ParameterName: TopologyParameter(args.Environment)}
	if err := ctx.RegisterComponentResource(TypeToken, name, r, opts...); err != nil {
		return nil, err
	}
	regions := []Region{args.Primary}
	if args.Secondary != nil {
		regions = append(regions, *args.Secondary)
	}

	var replicas dynamodb.TableReplicaTypeArray
	for _, reg := range regions[1:] {
		replicas = append(replicas, &dynamodb.TableReplicaTypeArgs{
			RegionName:          pulumi.String(reg.Name),
			KmsKeyArn:           reg.DataKeyArn,
			PointInTimeRecovery: pulumi.Bool(true),
			PropagateTags:       pulumi.Bool(true),
		})
	}
	table, err := dynamodb.NewTable(ctx, name+"-state", &dynamodb.TableArgs{
		Name:        pulumi.String(r.TableName),
		BillingMode: pulumi.String("PAY_PER_REQUEST"),
		HashKey:     pulumi.String("pk"),
		RangeKey:    pulumi.String("sk"),
		Attributes: dynamodb.TableAttributeArray{
			&dynamodb.TableAttributeArgs{Name: pulumi.String("pk"), Type: pulumi.String("S")},
			&dynamodb.TableAttributeArgs{Name: pulumi.String("sk"), Type: pulumi.String("S")},
		},
		// Expired leases and old journal entries leave on their own.
		Ttl:                       &dynamodb.TableTtlArgs{AttributeName: pulumi.String("expiresAt"), Enabled: pulumi.Bool(true)},
		PointInTimeRecovery:       &dynamodb.TablePointInTimeRecoveryArgs{Enabled: pulumi.Bool(true)},
		ServerSideEncryption:      &dynamodb.TableServerSideEncryptionArgs{Enabled: pulumi.Bool(true), KmsKeyArn: args.Primary.DataKeyArn},
		DeletionProtectionEnabled: pulumi.Bool(args.Protect),
		// Global tables replicate through the stream.
		StreamEnabled:  pulumi.Bool(true),
		StreamViewType: pulumi.String("NEW_AND_OLD_IMAGES"),
		Replicas:       replicas,
	}, pulumi.Parent(r), pulumi.Provider(args.Primary.Provider), pulumi.Protect(args.Protect))
	if err != nil {
		return nil, fmt.Errorf("operator resources %s: state table: %w", name, err)
	}
	r.TableArn = table.Arn

	for _, reg := range regions {
		p, err := ssm.NewParameter(ctx, name+"-topology-"+reg.Name, &ssm.ParameterArgs{
			Name:        pulumi.String(r.ParameterName),
			Description: pulumi.String("tandem " + args.Environment + " topology: what exists where, for the operator"),
			Type:        pulumi.String("String"),
			// The document grows with services; past 4 KB the parameter
			// moves to the advanced tier by itself.
			Tier:  pulumi.String("Intelligent-Tiering"),
			Value: reg.Topology,
		}, pulumi.Parent(r), pulumi.Provider(reg.Provider))
		if err != nil {
			return nil, fmt.Errorf("operator resources %s: topology parameter in %s: %w", name, reg.Name, err)
		}
		r.ParameterArns = append(r.ParameterArns, p.Arn)
	}

	role, err := newRole(ctx, name, args, regions, table.Arn, r.ParameterArns, r)
	if err != nil {
		return nil, err
	}
	r.RoleArn = role.Arn
	if err := ctx.RegisterResourceOutputs(r, pulumi.Map{
		"tableName":     pulumi.String(r.TableName),
		"tableArn":      r.TableArn,
		"parameterName": pulumi.String(r.ParameterName),
		"roleArn":       r.RoleArn,
	}); err != nil {
		return nil, err
	}
	return r, nil
}

// Unscoped are the operator's calls that AWS does not scope to a resource;
// they are the only ones granted on "*". All but one only read.
// Registering a task definition runs nothing: running it takes
// ecs:UpdateService on this stack's services and iam:PassRole on this
// stack's execution roles, both scoped.
var Unscoped = []string{
	"ecs:RegisterTaskDefinition",
	"elasticloadbalancing:DescribeRules",
	"elasticloadbalancing:DescribeTargetGroups",
	"elasticloadbalancing:DescribeTargetHealth",
	"elasticloadbalancing:DescribeListeners",
	"elasticloadbalancing:DescribeLoadBalancers",
	"application-autoscaling:DescribeScalableTargets",
	"cloudwatch:GetMetricData",
	"ecs:DescribeTaskDefinition",
}

// newRole declares the operator role and its policies, one per concern.
func newRole(ctx *pulumi.Context, name string, args *Args, regions []Region, tableArn pulumi.StringOutput, parameterArns []pulumi.StringOutput, parent pulumi.Resource) (*iam.Role, error) {
	acct := args.Account
	a := args.Access
	principals := append([]string{acct.Root()}, args.TrustedPrincipals...)
	trust, err := policy.AssumeRole(policy.AWS, policy.Strings(principals...))
	if err != nil {
		return nil, fmt.Errorf("operator resources %s: role trust: %w", name, err)
	}
	opts := []pulumi.ResourceOption{pulumi.Parent(parent), pulumi.Provider(args.Primary.Provider)}
	role, err := iam.NewRole(ctx, name+"-operator", &iam.RoleArgs{
		Description:        pulumi.String("The tandem operator: deploys and failovers of " + args.Environment),
		AssumeRolePolicy:   trust,
		MaxSessionDuration: pulumi.Int(3600),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("operator resources %s: role: %w", name, err)
	}

	derive := func(arns []pulumi.StringOutput, from, to string) []pulumi.StringInput {
		var out []pulumi.StringInput
		for _, arn := range arns {
			out = append(out, arn.ApplyT(func(s string) string {
				return strings.Replace(s, from, to, 1) + "/*"
			}).(pulumi.StringOutput))
		}
		return out
	}
	var tableArns []pulumi.StringInput
	tableArns = append(tableArns, tableArn)
	var viaDynamo []string
	var dataKeys []pulumi.StringInput
	for _, reg := range regions {
		viaDynamo = append(viaDynamo, acct.RegionalServicePrincipal("dynamodb", reg.Name))
		dataKeys = append(dataKeys, reg.DataKeyArn)
	}
	for _, reg := range regions[1:] {
		region := reg.Name
		tableArns = append(tableArns, tableArn.ApplyT(func(arn string) (string, error) {
			return awsenv.SwapRegion(arn, region)
		}).(pulumi.StringOutput))
	}

	traffic := []policy.Statement{
		{
			Sid:       "ShiftWeights",
			Actions:   []string{"elasticloadbalancing:ModifyRule"},
			Resources: derive(a.ListenerArns, ":listener/", ":listener-rule/"),
		},
		{
			Sid:       "ScaleAndDeployFleets",
			Actions:   []string{"ecs:UpdateService", "ecs:DescribeServices"},
			Resources: derive(a.ClusterArns, ":cluster/", ":service/"),
		},
		{
			Sid:       "WatchTasks",
			Actions:   []string{"ecs:DescribeTasks", "ecs:StopTask"},
			Resources: derive(a.ClusterArns, ":cluster/", ":task/"),
		},
		{
			Sid:       "PassExecutionRoles",
			Actions:   []string{"iam:PassRole"},
			Resources: policy.Inputs(a.ExecutionRoleArns...),
			Conditions: []policy.Condition{{
				Test: "StringEquals", Variable: "iam:PassedToService",
				Values: policy.Strings(acct.ServicePrincipal("ecs-tasks")),
			}},
		},
		{
			Sid:       "SetScalingBounds",
			Actions:   []string{"application-autoscaling:RegisterScalableTarget"},
			Resources: policy.Inputs(a.ScalableTargetArns...),
		},
		{
			Sid:       "CallsWithoutResourceScope",
			Actions:   Unscoped,
			Resources: policy.Strings(policy.AnyResource),
		},
	}
	data := []policy.Statement{
		{
			Sid: "FenceAndPromoteDatabase",
			Actions: []string{
				"rds:DescribeDBInstances", "rds:ModifyDBInstance", "rds:PromoteReadReplica", "rds:RebootDBInstance",
			},
			Resources: policy.Inputs(a.DatabaseArns...),
		},
		{
			Sid: "FenceAndPromoteCache",
			Actions: []string{
				"elasticache:DescribeReplicationGroups", "elasticache:ModifyReplicationGroup",
				"elasticache:DescribeGlobalReplicationGroups", "elasticache:FailoverGlobalReplicationGroup",
				"elasticache:DisassociateGlobalReplicationGroup",
			},
			Resources: policy.Inputs(a.CacheArns...),
		},
	}
	state := []policy.Statement{
		{
			Sid: "StateTable",
			Actions: []string{
				"dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
				"dynamodb:DeleteItem", "dynamodb:Query", "dynamodb:ConditionCheckItem",
			},
			Resources: tableArns,
		},
		{
			Sid:       "StateTableKey",
			Actions:   []string{"kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"},
			Resources: dataKeys,
			Conditions: []policy.Condition{{
				Test: "StringEquals", Variable: "kms:ViaService", Values: policy.Strings(viaDynamo...),
			}},
		},
		{
			Sid:       "TopologyDocument",
			Actions:   []string{"ssm:GetParameter", "ssm:PutParameter"},
			Resources: policy.Inputs(parameterArns...),
		},
	}
	if a.HostedZoneID != "" {
		state = append(state,
			policy.Statement{
				Sid:       "MoveGlobalRouting",
				Actions:   []string{"route53:ChangeResourceRecordSets", "route53:ListResourceRecordSets"},
				Resources: policy.Strings(acct.GlobalARN("route53", "hostedzone/"+a.HostedZoneID)),
				Conditions: []policy.Condition{{
					Test: "ForAllValues:StringEquals", Variable: "route53:ChangeResourceRecordSetsNormalizedRecordNames",
					Values: policy.Strings(a.RecordNames...),
				}},
			},
			policy.Statement{
				Sid:       "FenceRegions",
				Actions:   []string{"route53:GetHealthCheck", "route53:GetHealthCheckStatus", "route53:UpdateHealthCheck"},
				Resources: policy.Inputs(a.HealthCheckArns...),
			},
		)
	}
	for _, p := range []struct {
		name  string
		stmts []policy.Statement
	}{{"traffic", traffic}, {"data", data}, {"state", state}} {
		doc, err := policy.Document(p.stmts...)
		if err != nil {
			return nil, fmt.Errorf("operator resources %s: %s policy: %w", name, p.name, err)
		}
		if _, err := iam.NewRolePolicy(ctx, name+"-operator-"+p.name, &iam.RolePolicyArgs{
			Role:   role.Name,
			Policy: doc,
		}, opts...); err != nil {
			return nil, fmt.Errorf("operator resources %s: %s policy: %w", name, p.name, err)
		}
	}
	return role, nil
}
