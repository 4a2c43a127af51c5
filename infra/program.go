package main

import (
	"errors"
	"fmt"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"

	"github.com/tandemhq/tandem/infra/cluster"
	"github.com/tandemhq/tandem/infra/network"
	"github.com/tandemhq/tandem/stacks"
)

// defaultVPCCIDR is the VPC block of a region whose spec sets no vpcCidr.
const defaultVPCCIDR = "10.0.0.0/16"

// program declares the platform of the current stack. Everything that can be
// wrong with the spec is found before the first resource is declared, so a
// bad stack file fails `pulumi preview` without a partial plan.
func program(ctx *pulumi.Context) error {
	spec, err := readSpec(ctx)
	if err != nil {
		return fmt.Errorf("stack %s: %w", ctx.Stack(), err)
	}
	idx, region := primaryRegion(spec)
	if idx < 0 {
		return fmt.Errorf("stack %s: invalid platform spec: regions: no region has role %q", ctx.Stack(), stacks.RolePrimary)
	}
	cidr := region.VPCCIDR
	if cidr == "" {
		cidr = defaultVPCCIDR
	}
	layout, err := network.PlanLayout(cidr, spec.Network.AZCount)
	if err != nil {
		return fmt.Errorf("stack %s: invalid platform spec: regions[%d].vpcCidr: %w", ctx.Stack(), idx, err)
	}

	// Resources are named after environment and region so that two stacks
	// sharing an account, or two regions of one stack, never collide.
	name := spec.Environment + "-" + region.Name
	provider, err := aws.NewProvider(ctx, "aws-"+region.Name, &aws.ProviderArgs{
		Region: pulumi.String(region.Name),
		DefaultTags: &aws.ProviderDefaultTagsArgs{Tags: pulumi.StringMap{
			"tandem:environment": pulumi.String(spec.Environment),
			"tandem:region":      pulumi.String(region.Name),
		}},
	})
	if err != nil {
		return fmt.Errorf("provider for %s: %w", region.Name, err)
	}
	netw, err := network.New(ctx, name, &network.Args{
		Provider: provider,
		Region:   region.Name,
		Layout:   layout,
	})
	if err != nil {
		return err
	}
	cl, err := cluster.New(ctx, name, &cluster.Args{Provider: provider})
	if err != nil {
		return err
	}

	ctx.Export("primaryRegion", pulumi.String(region.Name))
	ctx.Export("vpcId", netw.VpcID)
	ctx.Export("publicSubnetIds", netw.PublicSubnetIDs)
	ctx.Export("privateSubnetIds", netw.PrivateSubnetIDs)
	ctx.Export("clusterArn", cl.Arn)
	ctx.Export("clusterName", cl.Name)
	return nil
}

// readSpec decodes and validates the stack's platform spec with the same
// code the local platform uses, so both targets accept the same files.
func readSpec(ctx *pulumi.Context) (*stacks.Spec, error) {
	raw := config.Get(ctx, stacks.ConfigKey)
	if raw == "" {
		return nil, errors.New(stacks.ConfigKey + ": missing from the stack's config; add the platform spec under config: in stacks/Pulumi." + ctx.Stack() + ".yaml (see stacks/Pulumi.local.yaml)")
	}
	return stacks.Decode([]byte(raw))
}

// primaryRegion returns the spec's primary region and its index in regions.
// A validated spec has exactly one.
func primaryRegion(spec *stacks.Spec) (int, stacks.Region) {
	for i, r := range spec.Regions {
		if r.Role == stacks.RolePrimary {
			return i, r
		}
	}
	return -1, stacks.Region{}
}
