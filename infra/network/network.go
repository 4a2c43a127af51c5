// Package network declares the network of one tandem region: a VPC with a
// public and a private subnet in each availability zone, an internet gateway
// for the public tier, and the VPC's default security group locked down.
package network

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// TypeToken is the component's Pulumi type.
const TypeToken = "tandem:infra:Network"

// Args configures a Network.
type Args struct {
	// Provider is the AWS provider of the region; every child uses it, so a
	// region's resources can never land in the default provider's region.
	Provider *aws.Provider
	// Region names the provider's region in error messages.
	Region string
	// Layout is the address plan, checked before anything is declared.
	Layout Layout
}

// Network is the network of one region.
type Network struct {
	pulumi.ResourceState

	VpcID                  pulumi.IDOutput
	PublicSubnetIDs        pulumi.StringArrayOutput
	PrivateSubnetIDs       pulumi.StringArrayOutput
	DefaultSecurityGroupID pulumi.IDOutput
}

// New declares the network of a region.
func New(ctx *pulumi.Context, name string, args *Args, opts ...pulumi.ResourceOption) (*Network, error) {
	if args == nil || args.Provider == nil {
		return nil, errors.New("network: a region provider is required")
	}
	if args.Layout.Zones() == 0 {
		return nil, errors.New("network: the layout has no zones; plan it with PlanLayout")
	}
	n := &Network{}
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

	var public, private pulumi.StringArray
	for i, zone := range zones {
		pub, err := newSubnet(ctx, name, "public", zone, args.Layout.Public[i].String(), vpc, publicRT.ID(), child)
		if err != nil {
			return nil, err
		}
		public = append(public, pub.ID().ToStringOutput())

		// Each private subnet gets its own route table so that a NAT gateway
		// per zone (network.natPerAz) is only a route away.
		rt, err := ec2.NewRouteTable(ctx, name+"-private-"+zone, &ec2.RouteTableArgs{
			VpcId: vpc.ID(),
			Tags:  nameTag(name + "-private-" + zone),
		}, child...)
		if err != nil {
			return nil, fmt.Errorf("network %s: private route table in %s: %w", name, zone, err)
		}
		priv, err := newSubnet(ctx, name, "private", zone, args.Layout.Private[i].String(), vpc, rt.ID(), child)
		if err != nil {
			return nil, err
		}
		private = append(private, priv.ID().ToStringOutput())
	}

	n.VpcID = vpc.ID()
	n.PublicSubnetIDs = public.ToStringArrayOutput()
	n.PrivateSubnetIDs = private.ToStringArrayOutput()
	n.DefaultSecurityGroupID = defaultSG.ID()
	if err := ctx.RegisterResourceOutputs(n, pulumi.Map{
		"vpcId":                  n.VpcID,
		"publicSubnetIds":        n.PublicSubnetIDs,
		"privateSubnetIds":       n.PrivateSubnetIDs,
		"defaultSecurityGroupId": n.DefaultSecurityGroupID,
	}); err != nil {
		return nil, err
	}
	return n, nil
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
		// nothing else in a public subnet should get one by accident.
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
