// Package network declares the network of one tandem region: a VPC with a
// public, a private and an isolated subnet in each availability zone; an
// internet gateway for the public tier; NAT gateways (one per zone, or one
// for the region) for the private tier; no route out of the isolated tier,
// where the database and cache live; flow logs; the VPC's default security
// group locked down; and VPC endpoints so that image pulls, logs, secrets
// and parameters never leave the AWS network.
package network

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/cloudwatch"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/iam"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"github.com/tandemhq/tandem/infra/awsenv"
	"github.com/tandemhq/tandem/infra/policy"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Network"

// InterfaceEndpoints are the AWS services the private subnets reach through
// interface endpoints: pulling images (ecr.api, ecr.dkr; the layers come
// from S3 through the gateway endpoint), shipping logs, reading secrets and
// parameters.
var InterfaceEndpoints = []string{"ecr.api", "ecr.dkr", "logs", "secretsmanager", "ssm"}

// Args configures a Network.
type Args struct {
	// Provider is the AWS provider of the region; every child uses it, so a
	// region's resources can never land in the default provider's region.
	Provider *aws.Provider
	Account  awsenv.Account
	// Region names the provider's region.
	Region string
	// Layout is the address plan, checked before anything is declared.
	Layout Layout
	// NATPerZone gives every zone its own NAT gateway, so losing a zone
	// costs only that zone's outbound traffic; otherwise one NAT gateway in
	// the first zone serves the region.
	NATPerZone bool
	// TelemetryKeyArn encrypts the flow log group.
	TelemetryKeyArn pulumi.StringInput
	// LogRetentionDays is how long flow logs are kept.
	LogRetentionDays int
}

// Network is the network of one region.
type Network struct {
	pulumi.ResourceState

	VpcID pulumi.IDOutput
	// VpcCIDR is the VPC's block, known before deployment.
	VpcCIDR                 string
	PublicSubnetIDs         pulumi.StringArrayOutput
	PrivateSubnetIDs        pulumi.StringArrayOutput
	IsolatedSubnetIDs       pulumi.StringArrayOutput
	DefaultSecurityGroupID  pulumi.IDOutput
	EndpointSecurityGroupID pulumi.IDOutput
}

// New declares the network of a region.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Network, error) {
	if args == nil || args.Provider == nil {
		return nil, errors.New("network: a region provider is required")
	}
	if args.Layout.Zones() == 0 {
		return nil, errors.New("network: the layout has no zones; plan it with PlanLayout")
	}
	if args.TelemetryKeyArn == nil {
		return nil, errors.New("network: a telemetry key is required to encrypt flow logs")
	}
	n := &Network{VpcCIDR: args.Layout.VPC.String()}
	if err := ctx.RegisterComponentResource(TypeToken, name, n, opts...); err != nil {
		return nil, err
	}
	zones, err := pickZones(ctx, args.Provider, args.Region, args.Layout.Zones())
	if err != nil {
		return nil, err
	}
	child := []pulumi.ResourceOption{pulumi.Parent(n), pulumi.Provider(args.Provider)}

	vpc, err := ec2.NewVpc(ctx, name+"-vpc", &ec2.VpcArgs{
		CidrBlock: pulumi.String(args.Layout.VPC.String()),
		// Both are needed for interface endpoints and for RDS and ElastiCache
		// endpoints to resolve inside the VPC.
		EnableDnsSupport:   pulumi.Bool(true),
		EnableDnsHostnames: pulumi.Bool(true),
		Tags:               nameTag(name),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("network %s: vpc: %w", name, err)
	}

	// Adopting the default security group with no rules removes the
	// allow-all rules AWS puts in it, so nothing that falls back to the
	// default group is reachable or can reach out; every workload gets a
	// group of its own.
	defaultSG, err := ec2.NewDefaultSecurityGroup(ctx, name+"-default", &ec2.DefaultSecurityGroupArgs{
		VpcId: vpc.ID(),
		Tags:  nameTag(name + "-default"),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("network %s: default security group: %w", name, err)
	}

	igw, err := ec2.NewInternetGateway(ctx, name+"-igw", &ec2.InternetGatewayArgs{
		VpcId: vpc.ID(),
		Tags:  nameTag(name),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("network %s: internet gateway: %w", name, err)
	}
	publicRT, err := ec2.NewRouteTable(ctx, name+"-public", &ec2.RouteTableArgs{
		VpcId: vpc.ID(),
		Tags:  nameTag(name + "-public"),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("network %s: public route table: %w", name, err)
	}
	if _, err := ec2.NewRoute(ctx, name+"-public-internet", &ec2.RouteArgs{
		RouteTableId:         publicRT.ID(),
		DestinationCidrBlock: pulumi.String("0.0.0.0/0"),
		GatewayId:            igw.ID(),
	}, child...); err != nil {
		return nil, fmt.Errorf("network %s: public default route: %w", name, err)
	}
	// The isolated tier shares one route table with only the VPC's local
	// route: nothing there can reach, or be reached from, the internet.
	isolatedRT, err := ec2.NewRouteTable(ctx, name+"-isolated", &ec2.RouteTableArgs{
		VpcId: vpc.ID(),
		Tags:  nameTag(name + "-isolated"),
	}, child...)
	if err != nil {
		return nil, fmt.Errorf("network %s: isolated route table: %w", name, err)
	}

	var public, private, isolated pulumi.StringArray
	var publicSubnets []*ec2.Subnet
	for i, zone := range zones {
		pub, err := newSubnet(ctx, name, "public", zone, args.Layout.Public[i].String(), vpc, publicRT.ID(), child)
		if err != nil {
			return nil, err
		}
		publicSubnets = append(publicSubnets, pub)
		public = append(public, pub.ID().ToStringOutput())
		iso, err := newSubnet(ctx, name, "isolated", zone, args.Layout.Isolated[i].String(), vpc, isolatedRT.ID(), child)
		if err != nil {
			return nil, err
		}
		isolated = append(isolated, iso.ID().ToStringOutput())
	}

	// NAT gateways live in public subnets; each private subnet's default
	// route goes to its own zone's gateway, or to the region's only one.
	natCount := 1
	if args.NATPerZone {
		natCount = len(zones)
	}
	var nats []*ec2.NatGateway
	for i := range natCount {
		zone := zones[i]
		eip, err := ec2.NewEip(ctx, name+"-nat-"+zone, &ec2.EipArgs{
			Domain: pulumi.String("vpc"),
			Tags:   nameTag(name + "-nat-" + zone),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("network %s: NAT address in %s: %w", name, zone, err)
		}
		nat, err := ec2.NewNatGateway(ctx, name+"-nat-"+zone, &ec2.NatGatewayArgs{
			AllocationId: eip.ID(),
			SubnetId:     publicSubnets[i].ID(),
			Tags:         nameTag(name + "-nat-" + zone),
		}, append(child, pulumi.DependsOn([]pulumi.Resource{igw}))...)
		if err != nil {
			return nil, fmt.Errorf("network %s: NAT gateway in %s: %w", name, zone, err)
		}
		nats = append(nats, nat)
	}
	var privateRTs pulumi.StringArray
	for i, zone := range zones {
		// Each private subnet gets its own route table so that a NAT gateway
		// per zone (network.natPerAz) is only a route away.
		rt, err := ec2.NewRouteTable(ctx, name+"-private-"+zone, &ec2.RouteTableArgs{
			VpcId: vpc.ID(),
			Tags:  nameTag(name + "-private-" + zone),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("network %s: private route table in %s: %w", name, zone, err)
		}
		nat := nats[min(i, len(nats)-1)]
		if _, err := ec2.NewRoute(ctx, name+"-private-"+zone+"-nat", &ec2.RouteArgs{
			RouteTableId:         rt.ID(),
			DestinationCidrBlock: pulumi.String("0.0.0.0/0"),
			NatGatewayId:         nat.ID(),
		}, child...); err != nil {
			return nil, fmt.Errorf("network %s: private default route in %s: %w", name, zone, err)
		}
		priv, err := newSubnet(ctx, name, "private", zone, args.Layout.Private[i].String(), vpc, rt.ID(), child)
		if err != nil {
			return nil, err
		}
		private = append(private, priv.ID().ToStringOutput())
		privateRTs = append(privateRTs, rt.ID().ToStringOutput())
	}

	if err := newFlowLog(ctx, name, args, vpc, child); err != nil {
		return nil, err
	}
	endpointSG, err := newEndpoints(ctx, name, args, vpc, private, privateRTs, child)
	if err != nil {
		return nil, err
	}

	n.VpcID = vpc.ID()
	n.PublicSubnetIDs = public.ToStringArrayOutput()
	n.PrivateSubnetIDs = private.ToStringArrayOutput()
	n.IsolatedSubnetIDs = isolated.ToStringArrayOutput()
	n.DefaultSecurityGroupID = defaultSG.ID()
	n.EndpointSecurityGroupID = endpointSG.ID()
	if err := ctx.RegisterResourceOutputs(n, pulumi.Map{
		"vpcId":                   n.VpcID,
		"publicSubnetIds":         n.PublicSubnetIDs,
		"privateSubnetIds":        n.PrivateSubnetIDs,
		"isolatedSubnetIds":       n.IsolatedSubnetIDs,
		"defaultSecurityGroupId":  n.DefaultSecurityGroupID,
		"endpointSecurityGroupId": n.EndpointSecurityGroupID,
	}); err != nil {
		return nil, err
	}
	return n, nil
}

// newFlowLog records every accepted and rejected flow of the VPC in an
// encrypted log group, written by the flow logs service through a role
// that may only write to that group.
func newFlowLog(ctx *pulumi.Context, name string, args *Args, vpc *ec2.Vpc, opts []pulumi.ResourceOption) error {
	group, err := cloudwatch.NewLogGroup(ctx, name+"-flow-logs", &cloudwatch.LogGroupArgs{
		KmsKeyId:        args.TelemetryKeyArn,
		RetentionInDays: pulumi.Int(args.LogRetentionDays),
	}, opts...)
	if err != nil {
		return fmt.Errorf("network %s: flow log group: %w", name, err)
	}
	acct := args.Account
	trust, err := policy.AssumeRole(policy.Service, policy.Strings(acct.ServicePrincipal("vpc-flow-logs")),
		policy.Condition{Test: "StringEquals", Variable: "aws:SourceAccount", Values: policy.Strings(acct.ID)})
	if err != nil {
		return fmt.Errorf("network %s: flow log trust policy: %w", name, err)
	}
	role, err := iam.NewRole(ctx, name+"-flow-logs", &iam.RoleArgs{
		Description:      pulumi.String("VPC flow logs of " + name + " write to their log group"),
		AssumeRolePolicy: trust,
	}, opts...)
	if err != nil {
		return fmt.Errorf("network %s: flow log role: %w", name, err)
	}
	write, err := policy.Document(
		policy.Statement{
			Sid:       "WriteFlowLogs",
			Actions:   []string{"logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"},
			Resources: policy.Inputs(group.Arn, pulumi.Sprintf("%s:*", group.Arn)),
		},
		policy.Statement{
			// The service checks the group exists; describing groups cannot
			// be limited to one group.
			Sid:       "FindLogGroup",
			Actions:   []string{"logs:DescribeLogGroups"},
			Resources: policy.Strings(acct.ARN("logs", args.Region, "log-group:*")),
		},
	)
	if err != nil {
		return fmt.Errorf("network %s: flow log role policy: %w", name, err)
	}
	if _, err := iam.NewRolePolicy(ctx, name+"-flow-logs", &iam.RolePolicyArgs{
		Role:   role.Name,
		Policy: write,
	}, opts...); err != nil {
		return fmt.Errorf("network %s: flow log role policy: %w", name, err)
	}
	if _, err := ec2.NewFlowLog(ctx, name, &ec2.FlowLogArgs{
		VpcId:                  vpc.ID(),
		TrafficType:            pulumi.String("ALL"),
		LogDestinationType:     pulumi.String("cloud-watch-logs"),
		LogDestination:         group.Arn,
		IamRoleArn:             role.Arn,
		MaxAggregationInterval: pulumi.Int(60),
		Tags:                   nameTag(name),
	}, opts...); err != nil {
		return fmt.Errorf("network %s: flow log: %w", name, err)
	}
	return nil
}

// newEndpoints declares the interface endpoints in the private subnets,
// reachable on 443 from inside the VPC only, and the S3 gateway endpoint on
// the private route tables.
func newEndpoints(ctx *pulumi.Context, name string, args *Args, vpc *ec2.Vpc, private, privateRTs pulumi.StringArray, opts []pulumi.ResourceOption) (*ec2.SecurityGroup, error) {
	sg, err := ec2.NewSecurityGroup(ctx, name+"-endpoints", &ec2.SecurityGroupArgs{
		VpcId:       vpc.ID(),
		Description: pulumi.String("HTTPS from inside the VPC to the AWS service endpoints"),
		Ingress: ec2.SecurityGroupIngressArray{&ec2.SecurityGroupIngressArgs{
			Description: pulumi.String("HTTPS from the VPC"),
			Protocol:    pulumi.String("tcp"),
			FromPort:    pulumi.Int(443),
			ToPort:      pulumi.Int(443),
			CidrBlocks:  pulumi.StringArray{pulumi.String(args.Layout.VPC.String())},
		}},
		Tags: nameTag(name + "-endpoints"),
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("network %s: endpoint security group: %w", name, err)
	}
	for _, svc := range InterfaceEndpoints {
		if _, err := ec2.NewVpcEndpoint(ctx, name+"-"+svc, &ec2.VpcEndpointArgs{
			VpcId:             vpc.ID(),
			ServiceName:       pulumi.String(args.Account.EndpointService(args.Region, svc)),
			VpcEndpointType:   pulumi.String("Interface"),
			PrivateDnsEnabled: pulumi.Bool(true),
			SubnetIds:         private,
			SecurityGroupIds:  pulumi.StringArray{sg.ID()},
			Tags:              nameTag(name + "-" + svc),
		}, opts...); err != nil {
			return nil, fmt.Errorf("network %s: %s endpoint: %w", name, svc, err)
		}
	}
	if _, err := ec2.NewVpcEndpoint(ctx, name+"-s3", &ec2.VpcEndpointArgs{
		VpcId:           vpc.ID(),
		ServiceName:     pulumi.String(args.Account.EndpointService(args.Region, "s3")),
		VpcEndpointType: pulumi.String("Gateway"),
		RouteTableIds:   privateRTs,
		Tags:            nameTag(name + "-s3"),
	}, opts...); err != nil {
		return nil, fmt.Errorf("network %s: s3 endpoint: %w", name, err)
	}
	return sg, nil
}

// newSubnet declares one subnet of a tier in a zone and associates it with
// the tier's route table.
func newSubnet(ctx *pulumi.Context, name, tier, zone, cidr string, vpc *ec2.Vpc, routeTable pulumi.IDOutput, opts []pulumi.ResourceOption) (*ec2.Subnet, error) {
	subnetName := fmt.Sprintf("%s-%s-%s", name, tier, zone)
	s, err := ec2.NewSubnet(ctx, subnetName, &ec2.SubnetArgs{
		VpcId:            vpc.ID(),
		CidrBlock:        pulumi.String(cidr),
		AvailabilityZone: pulumi.String(zone),
		// Load balancers and NAT gateways get their addresses explicitly;
		// nothing should get one by accident, in any tier.
		MapPublicIpOnLaunch: pulumi.Bool(false),
		Tags: pulumi.StringMap{
			"Name":        pulumi.String(subnetName),
			"tandem:tier": pulumi.String(tier),
		},
	}, opts...)
	if err != nil {
		return nil, fmt.Errorf("network %s: %s subnet in %s: %w", name, tier, zone, err)
	}
	if _, err := ec2.NewRouteTableAssociation(ctx, subnetName, &ec2.RouteTableAssociationArgs{
		SubnetId:     s.ID(),
		RouteTableId: routeTable,
	}, opts...); err != nil {
		return nil, fmt.Errorf("network %s: route table of %s subnet in %s: %w", name, tier, zone, err)
	}
	return s, nil
}

// pickZones asks the region, through its provider, which availability zones
// it offers and takes the first count of them in name order.
//
// Asking rather than assuming the suffixes a, b, c matters because zone
// letters are not contiguous everywhere (some regions and accounts lack an
// "a" or a "b"), and a region may have fewer zones than network.azCount.
// Local and Wavelength Zones are left out: they are opt-in, lack many
// services and would break the Multi-AZ database and cache.
func pickZones(ctx *pulumi.Context, provider *aws.Provider, region string, count int) ([]string, error) {
	res, err := aws.GetAvailabilityZones(ctx, &aws.GetAvailabilityZonesArgs{
		State: pulumi.StringRef("available"),
		Filters: []aws.GetAvailabilityZonesFilter{
			{Name: "opt-in-status", Values: []string{"opt-in-not-required"}},
		},
	}, pulumi.Provider(provider))
	if err != nil {
		return nil, fmt.Errorf("network: list availability zones of %s: %w", region, err)
	}
	names := slices.Clone(res.Names)
	slices.Sort(names)
	if len(names) < count {
		return nil, fmt.Errorf("network.azCount: %d zones wanted but %s offers %d (%s); lower azCount to %d",
			count, region, len(names), strings.Join(names, ", "), len(names))
	}
	return names[:count], nil
}

func nameTag(name string) pulumi.StringMap {
	return pulumi.StringMap{"Name": pulumi.String(name)}
}
